#include "pathsentry/collector/ingest.h"

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <variant>

#include "pathsentry/common/record_json.h"

namespace pathsentry::collector {
namespace {

std::string at_line(std::size_t n, const std::string& what) {
  return "line " + std::to_string(n) + ": " + what;
}

// Lines carry no "agent" key when shipped (the header names the agent); when one does, it
// must be the header's. Only lines that mention the key at all pay for a second parse.
std::optional<std::string> agent_mismatch(std::string_view line, const std::string& agent) {
  if (line.find("\"agent\"") == std::string_view::npos) return std::nullopt;
  const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;  // the record parser accepted it: cannot happen
  const auto it = j.find("agent");
  if (it == j.end()) return std::nullopt;
  if (!it->is_string()) return std::string("field 'agent' is not a string");
  if (it->get_ref<const std::string&>() != agent) {
    return "agent '" + it->get<std::string>() + "' differs from the batch header's '" + agent + "'";
  }
  return std::nullopt;
}

// The fast path for probe lines, the bulk of every batch (a profile of the collector under
// `bench-ingest --http` put ~55 % of its CPU in nlohmann's DOM parse and its allocations). It
// reads only the exact layout record_json's append_json writes for a probe without "agent"
// (its keys in its order, no whitespace, strings of printable ASCII without escapes, integers
// in range, known enum values) and builds the ProbeRecord parse_probe would. Anything else — a
// line in another key order, an extra key, an escape, a number it would have to think about, a
// value parse_probe refuses — gives nullopt and goes through the general parser, which accepts
// it or names the error. tests/unit/collector/ingest_fast_test.cpp compares both.
class Cursor {
 public:
  explicit Cursor(std::string_view s) : s_(s) {}
  bool lit(std::string_view l) {
    if (s_.substr(i_, l.size()) != l) return false;
    i_ += l.size();
    return true;
  }
  [[nodiscard]] bool at_end() const { return i_ == s_.size(); }
  // A string of printable ASCII other than '"' and '\'.
  bool str(std::string& out) {
    if (!lit("\"")) return false;
    const std::size_t start = i_;
    while (i_ < s_.size()) {
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        out.assign(s_.data() + start, i_ - start);
        ++i_;
        return true;
      }
      if (c == '\\' || c < 0x20 || c >= 0x80) return false;
      ++i_;
    }
    return false;
  }
  // JSON's integer grammar without sign (0, or no leading zero), up to UINT64_MAX.
  bool u64(std::uint64_t& v) {
    const std::size_t start = i_;
    v = 0;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      const auto d = static_cast<std::uint64_t>(s_[i_] - '0');
      if (v > (UINT64_MAX - d) / 10) return false;
      v = v * 10 + d;
      ++i_;
    }
    if (i_ == start) return false;
    return !(s_[start] == '0' && i_ - start > 1);
  }
  bool u32(std::uint32_t& v) {
    std::uint64_t x = 0;
    if (!u64(x) || x > 0xFFFFFFFFu) return false;
    v = static_cast<std::uint32_t>(x);
    return true;
  }
  bool i64(std::int64_t& v) {
    const bool neg = lit("-");
    std::uint64_t m = 0;
    if (!u64(m)) return false;
    constexpr auto kMax = static_cast<std::uint64_t>(INT64_MAX);
    if (neg) {
      if (m > kMax + 1) return false;
      v = m == kMax + 1 ? INT64_MIN : -static_cast<std::int64_t>(m);
    } else {
      if (m > kMax) return false;
      v = static_cast<std::int64_t>(m);
    }
    return true;
  }
  bool opt_i64(std::optional<std::int64_t>& v) {
    if (lit("null")) {
      v.reset();
      return true;
    }
    std::int64_t x = 0;
    if (!i64(x)) return false;
    v = x;
    return true;
  }
  bool boolean(bool& v) {
    if (lit("true")) {
      v = true;
      return true;
    }
    if (lit("false")) {
      v = false;
      return true;
    }
    return false;
  }

 private:
  std::string_view s_;
  std::size_t i_ = 0;
};

template <class E>
bool enum_of(const std::string& s, std::initializer_list<E> all, E& out) {
  for (const E e : all) {
    if (s == probe::to_string(e)) {
      out = e;
      return true;
    }
  }
  return false;
}

}  // namespace

std::optional<ProbeRecord> parse_canonical_probe_line(std::string_view line) {
  Cursor c(line);
  ProbeRecord r;
  std::string s;
  std::optional<std::int64_t> rtt;
  std::uint64_t seq = 0;
  if (!c.lit(R"({"type":"probe","target":)") || !c.str(r.target)) return std::nullopt;
  if (!c.lit(R"(,"proto":)") || !c.str(s) ||
      !enum_of(s, {Proto::Icmp, Proto::Stamp, Proto::Ttl}, r.proto)) {
    return std::nullopt;
  }
  if (!c.lit(R"(,"session_id":)") || !c.u32(r.session_id)) return std::nullopt;
  if (!c.lit(R"(,"seq":)") || !c.u64(seq)) return std::nullopt;
  r.seq = seq;
  if (!c.lit(R"(,"tx_ns":)") || !c.i64(r.tx_ns)) return std::nullopt;
  if (!c.lit(R"(,"rx_ns":)") || !c.opt_i64(r.rx_ns)) return std::nullopt;
  if (!c.lit(R"(,"rtt_ns":)") || !c.opt_i64(rtt)) return std::nullopt;
  r.rtt_ns = rtt.value_or(0);
  if (!c.lit(R"(,"tx_kernel_ts":)") || !c.boolean(r.tx_kernel_ts)) return std::nullopt;
  if (!c.lit(R"(,"fwd_path":)") || !c.str(r.fwd_path)) return std::nullopt;
  if (!c.lit(R"(,"rev_path":)") || !c.str(r.rev_path)) return std::nullopt;
  if (!c.lit(R"(,"loss":)")) return std::nullopt;
  if (!c.lit("null")) {
    if (!c.str(s) ||
        !enum_of(s, {LossDirection::Forward, LossDirection::Reverse, LossDirection::Undetermined},
                 r.loss)) {
      return std::nullopt;
    }
  }
  if (!c.lit(R"(,"late":)") || !c.boolean(r.late)) return std::nullopt;
  if (c.lit(R"(,"taps_down":[)")) {
    if (!c.lit("]")) {
      do {
        if (!c.str(s)) return std::nullopt;
        r.taps_down.push_back(s);
      } while (c.lit(","));
      if (!c.lit("]")) return std::nullopt;
    }
  }
  if (!c.lit(R"(,"reflector":)")) return std::nullopt;
  if (!c.lit("null")) {
    std::uint32_t rseq = 0;
    std::int64_t rx = 0, tx = 0;
    if (!c.lit(R"({"seq":)") || !c.u32(rseq) || !c.lit(R"(,"rx_ns":)") || !c.i64(rx) ||
        !c.lit(R"(,"tx_ns":)") || !c.i64(tx) || !c.lit(R"(,"clock_synced":)") ||
        !c.boolean(r.reflector_clock_synced) || !c.lit("}")) {
      return std::nullopt;
    }
    r.reflector_seq = rseq;
    r.reflector_rx_ns = rx;
    r.reflector_tx_ns = tx;
  }
  if (!c.lit("}") || !c.at_end()) return std::nullopt;
  return r;
}

namespace {}  // namespace

tl::expected<db::IngestBatch, std::string> parse_ingest_body(std::string_view body) {
  db::IngestBatch batch;
  std::size_t line_no = 0;
  bool have_header = false;
  while (!body.empty()) {
    ++line_no;
    const std::size_t nl = body.find('\n');
    std::string_view line = body.substr(0, nl);
    body = nl == std::string_view::npos ? std::string_view{} : body.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) return tl::unexpected(at_line(line_no, "empty line"));
    if (have_header) {
      if (auto p = parse_canonical_probe_line(line)) {
        batch.probes.push_back(std::move(*p));
        continue;
      }
    }
    auto parsed = probe::parse_json_line(line);
    if (!parsed) return tl::unexpected(at_line(line_no, parsed.error()));
    if (!have_header) {
      auto* h = std::get_if<BatchHeader>(&*parsed);
      if (h == nullptr) {
        return tl::unexpected(at_line(line_no, "the first line must be the \"batch\" header"));
      }
      batch.header = std::move(*h);
      have_header = true;
      continue;
    }
    if (std::holds_alternative<BatchHeader>(*parsed)) {
      return tl::unexpected(at_line(line_no, "a second \"batch\" header"));
    }
    if (auto bad = agent_mismatch(line, batch.header.agent)) {
      return tl::unexpected(at_line(line_no, *bad));
    }
    if (auto* p = std::get_if<ProbeRecord>(&*parsed)) {
      batch.probes.push_back(std::move(*p));
    } else if (auto* r = std::get_if<Rollup>(&*parsed)) {
      if (r->second_ns % 1'000'000'000 != 0) {
        return tl::unexpected(at_line(line_no, "field 'second_ns' is not a whole second"));
      }
      batch.rollups.push_back(std::move(*r));
    } else if (auto* e = std::get_if<PathEvent>(&*parsed)) {
      if (e->event_id == 0) {
        return tl::unexpected(at_line(line_no, "an event without \"event_id\" (or with 0)"));
      }
      batch.events.push_back(std::move(*e));
    }
  }
  if (!have_header) return tl::unexpected(std::string("empty body: no \"batch\" header"));
  return batch;
}

bool constant_time_equal(std::string_view presented, std::string_view secret) {
  // Every byte of the presented value is compared (against the secret's byte at that index,
  // or its first byte past its end), with no early exit; the length difference is folded in.
  volatile unsigned char diff = presented.size() == secret.size() ? 0 : 1;
  if (secret.empty()) return false;
  for (std::size_t i = 0; i < presented.size(); ++i) {
    const char s = i < secret.size() ? secret[i] : secret[0];
    diff = static_cast<unsigned char>(diff | static_cast<unsigned char>(presented[i] ^ s));
  }
  return diff == 0;
}

}  // namespace pathsentry::collector
