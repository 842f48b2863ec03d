#pragma once
// A small JSON writer for the API's answers: keys in the order written, no allocation beyond
// the output string, commas handled by a stack of "first element" flags.

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pathsentry/common/record_json.h"

namespace pathsentry::collector {

/// JSON strings are written by common's writer (record_json.h), as the agent writes them.
using probe::append_json_string;

class JsonOut {
 public:
  explicit JsonOut(std::string& out) : out_(out) {}

  JsonOut& begin_object() {
    sep();
    out_.push_back('{');
    first_.push_back(true);
    return *this;
  }
  JsonOut& end_object() {
    out_.push_back('}');
    first_.pop_back();
    return *this;
  }
  JsonOut& begin_array() {
    sep();
    out_.push_back('[');
    first_.push_back(true);
    return *this;
  }
  JsonOut& end_array() {
    out_.push_back(']');
    first_.pop_back();
    return *this;
  }
  /// The next value belongs to key `k`.
  JsonOut& key(std::string_view k) {
    sep();
    append_json_string(out_, k);
    out_.push_back(':');
    after_key_ = true;
    return *this;
  }
  JsonOut& str(std::string_view v) {
    sep();
    append_json_string(out_, v);
    return *this;
  }
  JsonOut& num(std::int64_t v) {
    sep();
    char b[24];
    const auto r = std::to_chars(b, b + sizeof b, v);
    out_.append(b, static_cast<std::size_t>(r.ptr - b));
    return *this;
  }
  JsonOut& unum(std::uint64_t v) {
    sep();
    char b[24];
    const auto r = std::to_chars(b, b + sizeof b, v);
    out_.append(b, static_cast<std::size_t>(r.ptr - b));
    return *this;
  }
  JsonOut& opt(const std::optional<std::int64_t>& v) { return v ? num(*v) : null(); }
  JsonOut& boolean(bool v) {
    sep();
    out_.append(v ? "true" : "false");
    return *this;
  }
  JsonOut& null() {
    sep();
    out_.append("null");
    return *this;
  }
  /// A value already encoded as JSON.
  JsonOut& raw(std::string_view json) {
    sep();
    out_.append(json);
    return *this;
  }
  JsonOut& kv(std::string_view k, std::string_view v) { return key(k).str(v); }
  JsonOut& kv(std::string_view k, const char* v) { return key(k).str(v); }
  JsonOut& kv_num(std::string_view k, std::int64_t v) { return key(k).num(v); }
  JsonOut& kv_unum(std::string_view k, std::uint64_t v) { return key(k).unum(v); }

 private:
  void sep() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (first_.empty()) return;
    if (first_.back()) {
      first_.back() = false;
    } else {
      out_.push_back(',');
    }
  }

  std::string& out_;
  std::vector<bool> first_;
  bool after_key_ = false;
};

}  // namespace pathsentry::collector
