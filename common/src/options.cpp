#include "pathsentry/common/options.h"

#include <cmath>
#include <optional>
#include <sstream>

#include "pathsentry/common/config_error.h"
#include "pathsentry/common/parse.h"

namespace pathsentry::options {

void Value::fail(const std::string& why) const {
  throw ConfigError(file, where, text, why);
}

std::int64_t Value::integer(std::int64_t lo, std::int64_t hi) const {
  if (type != Type::Text && type != Type::Integer) fail("must be an integer");
  const auto v = parse_number<std::int64_t>(text);
  if (!v) fail("must be an integer");
  if (*v < lo || *v > hi) {
    fail("must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  }
  return *v;
}

double Value::number(double lo, double hi) const {
  if (type != Type::Text && type != Type::Integer && type != Type::Float) fail("must be a number");
  const auto v = parse_number<double>(text);
  if (!v || !std::isfinite(*v)) fail("must be a number");
  if (*v < lo || *v > hi) {
    std::ostringstream why;
    why << "must be between " << lo << " and " << hi;
    fail(why.str());
  }
  return *v;
}

bool Value::boolean() const {
  if (type != Type::Text && type != Type::Bool) fail("must be true or false");
  if (text == "true") return true;
  if (text == "false") return false;
  fail("must be true or false");
}

const std::string& Value::string() const {
  if (type != Type::Text && type != Type::String) fail("must be a string");
  return text;
}

std::vector<Value> Value::list() const {
  if (type == Type::Array) return items;
  if (type != Type::Text && type != Type::String) fail("must be a string or an array of strings");
  return {*this};
}

const std::string& Value::one_of(std::initializer_list<std::string_view> choices) const {
  const std::string& s = string();
  std::string names;
  for (auto c : choices) {
    if (s == c) return s;
    names += (names.empty() ? "" : ", ") + std::string(c);
  }
  fail("must be one of " + names);
}

namespace detail {

std::string usage(std::string_view header, std::span<const Row> rows) {
  constexpr std::size_t kColumn = 25;  // where the help text starts
  std::string out(header);
  if (!out.empty() && out.back() != '\n') out += '\n';
  out += '\n';
  for (const Row& r : rows) {
    if (r.flag.empty()) continue;  // file-only setting
    std::string left = "  ";       // appended piece by piece: GCC 12 -O3 -Wrestrict false positive
    left += r.flag;
    if (r.arg != Arg::None) {
      left += ' ';
      left += r.metavar;
    }
    std::string_view help = r.help;
    bool first = true;
    while (!help.empty() || first) {
      const auto nl = help.find('\n');
      const std::string_view line = help.substr(0, nl);
      std::string lead = first ? left : std::string();
      if (lead.size() + 1 > kColumn) {
        out += lead + '\n';
        lead.clear();
      }
      lead.resize(kColumn, ' ');
      out += lead + std::string(line) + '\n';
      first = false;
      help = nl == std::string_view::npos ? std::string_view() : help.substr(nl + 1);
    }
  }
  return out;
}

std::vector<std::pair<std::size_t, Value>> parse_args(std::span<const Row> rows,
                                                      std::span<const std::string_view> args) {
  std::vector<std::pair<std::size_t, Value>> out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string flag(args[i]);
    std::optional<std::string> inline_value;
    if (const auto eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = flag.substr(eq + 1);
      flag.resize(eq);
    }
    std::size_t row = rows.size();
    for (std::size_t r = 0; r < rows.size(); ++r) {
      if (!rows[r].flag.empty() && rows[r].flag == flag) row = r;
    }
    if (row == rows.size()) {
      throw ConfigError("", std::string(args[i]), "", "is not a known option (see --help)");
    }
    Value v;
    v.text = "true";
    v.where = flag;
    if (rows[row].arg == Arg::None) {
      if (inline_value) throw ConfigError("", flag, *inline_value, "takes no value");
    } else if (inline_value) {
      v.text = *inline_value;
    } else {
      if (i + 1 >= args.size()) throw ConfigError("", flag, "", "needs a value");
      v.text = std::string(args[++i]);
    }
    out.emplace_back(row, std::move(v));
  }
  return out;
}

std::string key_pattern(std::string_view key_path) {
  std::string out;
  out.reserve(key_path.size());
  bool in_index = false;
  for (char c : key_path) {
    if (c == '[') {
      in_index = true;
      out += "[]";
    } else if (c == ']') {
      in_index = false;
    } else if (!in_index) {
      out += c;
    }
  }
  return out;
}

std::size_t find_key(std::span<const Row> rows, std::string_view key_path) {
  const std::string pattern = key_pattern(key_path);
  for (std::size_t r = 0; r < rows.size(); ++r) {
    for (auto k : rows[r].keys) {
      if (k == pattern) return r;
      if (k.ends_with(".*") && pattern.size() > k.size() - 1 &&
          pattern.starts_with(k.substr(0, k.size() - 1))) {
        return r;
      }
    }
  }
  return rows.size();
}

std::string unknown_key_why(std::span<const Row> rows, std::string_view key_path) {
  const std::string pattern = key_pattern(key_path);
  for (const Row& r : rows) {
    for (auto k : r.keys) {
      if (k.starts_with(pattern + "[].")) return "must be an array of tables ([[" + pattern + "]])";
      if (k.starts_with(pattern + ".")) return "must be a table ([" + pattern + "])";
    }
  }
  return "is not a known key";
}

}  // namespace detail
}  // namespace pathsentry::options
