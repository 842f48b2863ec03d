#pragma once

#include <charconv>
#include <optional>
#include <string_view>

namespace pathsentry {

/// Parses the whole of `text` as a number of type T (integer or floating point); nullopt when
/// it is empty, has any trailing character or is out of T's range. Never throws: callers that
/// read configuration turn nullopt into a ConfigError naming file, key and value.
template <class T>
[[nodiscard]] std::optional<T> parse_number(std::string_view text) {
  T v{};
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc{} || ptr != end) return std::nullopt;
  return v;
}

}  // namespace pathsentry
