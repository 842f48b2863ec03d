#include "pathsentry/collector/ingest.h"

#include <nlohmann/json.hpp>
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

}  // namespace

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
