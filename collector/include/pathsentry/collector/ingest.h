#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <tl/expected.hpp>

#include "pathsentry/common/record.h"
#include "pathsentry/db/store.h"

namespace pathsentry::collector {

/// Parses an ingest body (NDJSON, docs/collector.md "Ingest"): line 1 a "batch" line, then
/// "probe", "rollup" and "event" lines. Untrusted input: never throws. The error names the
/// line: "line 3: field 'seq' is not an unsigned integer", "line 1: the first line must be
/// the batch header", "line 7: agent 'dc2' differs from the batch header's 'dc1'", "line 4:
/// an event without event_id". One trailing newline is fine; an empty line elsewhere is not.
[[nodiscard]] tl::expected<db::IngestBatch, std::string> parse_ingest_body(std::string_view body);

/// A probe line in exactly the layout record_json's append_json writes (no "agent" key), read
/// without a JSON DOM: the record, or nullopt for any other line (which the general parser then
/// takes). Where it gives a record, the general parser gives the same one.
[[nodiscard]] std::optional<ProbeRecord> parse_canonical_probe_line(std::string_view line);

/// Compares a presented secret with a configured one in time that depends only on the
/// presented one's length (not on where they differ, nor on the secret).
[[nodiscard]] bool constant_time_equal(std::string_view presented, std::string_view secret);

}  // namespace pathsentry::collector
