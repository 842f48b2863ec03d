#pragma once
// Query strings and the values the GET endpoints take (private to the collector; tested in
// tests/unit/collector/query_test.cpp).

#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <tl/expected.hpp>

namespace pathsentry::collector {

/// Decoded parameters of one query string, by name.
using QueryParams = std::map<std::string, std::string, std::less<>>;

/// Splits and percent-decodes `query` ("a=1&b=x%20y"). '+' stays '+' (send a time zone
/// offset as "+01:00" or %2B01:00 alike). Errors: a name not in `allowed` ("unknown query
/// parameter 'x' (this endpoint takes: a, b)"), a name given twice, bad percent-encoding.
[[nodiscard]] tl::expected<QueryParams, std::string> parse_query(
    std::string_view query, std::initializer_list<std::string_view> allowed);

/// A time as integer ns since the epoch, or RFC 3339 ("2026-01-02T03:04:05.123Z",
/// "…+01:00"); the error says which forms are taken.
[[nodiscard]] tl::expected<std::int64_t, std::string> parse_time_ns(std::string_view text);

/// An unsigned integer in [lo, hi].
[[nodiscard]] tl::expected<std::uint64_t, std::string> parse_unsigned(std::string_view text,
                                                                      std::uint64_t lo,
                                                                      std::uint64_t hi);

}  // namespace pathsentry::collector
