#include "query.h"

#include <charconv>
#include <optional>

namespace pathsentry::collector {
namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

tl::expected<std::string, std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) {
      return tl::unexpected(std::string("bad percent-encoding in the query"));
    }
    const int hi = hex_digit(s[i + 1]);
    const int lo = hex_digit(s[i + 2]);
    if (hi < 0 || lo < 0) return tl::unexpected(std::string("bad percent-encoding in the query"));
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

std::string allowed_list(std::initializer_list<std::string_view> allowed) {
  if (allowed.size() == 0) return "none";
  std::string s;
  for (const auto a : allowed) {
    if (!s.empty()) s += ", ";
    s += a;
  }
  return s;
}

// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

bool digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  out = v;
  return true;
}

std::optional<std::int64_t> parse_rfc3339(std::string_view s) {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  if (!digits(s, 0, 4, y) || s.size() < 20 || s[4] != '-' || !digits(s, 5, 2, mo) || s[7] != '-' ||
      !digits(s, 8, 2, d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
      !digits(s, 11, 2, h) || s[13] != ':' || !digits(s, 14, 2, mi) || s[16] != ':' ||
      !digits(s, 17, 2, sec)) {
    return std::nullopt;
  }
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > kDays[mo - 1] || h > 23 || mi > 59 ||
      sec > 60) {
    return std::nullopt;
  }
  std::size_t pos = 19;
  std::int64_t frac = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    std::int64_t scale = 100'000'000;
    const std::size_t start = pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      frac += (s[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) return std::nullopt;
  }
  if (pos >= s.size()) return std::nullopt;
  std::int64_t offset_s = 0;
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
  } else if (s[pos] == '+' || s[pos] == '-') {
    int oh = 0, om = 0;
    if (!digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !digits(s, pos + 4, 2, om) || oh > 23 || om > 59) {
      return std::nullopt;
    }
    offset_s = (oh * 3600 + om * 60) * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  const std::int64_t days = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  const std::int64_t secs = days * 86'400 + h * 3600 + mi * 60 + sec - offset_s;
  constexpr std::int64_t kNs = 1'000'000'000;
  // Before 1970, or after 2262-04-11T23:47:16.854775807Z (the last time int64 ns hold).
  if (secs < 0 || secs > (INT64_MAX - frac) / kNs) return std::nullopt;
  return secs * kNs + frac;
}

}  // namespace

tl::expected<QueryParams, std::string> parse_query(
    std::string_view query, std::initializer_list<std::string_view> allowed) {
  QueryParams out;
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (part.empty()) continue;
    const std::size_t eq = part.find('=');
    auto name = percent_decode(part.substr(0, eq));
    if (!name) return tl::unexpected(name.error());
    auto value =
        percent_decode(eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1));
    if (!value) return tl::unexpected(value.error());
    bool known = false;
    for (const auto a : allowed) known = known || a == *name;
    if (!known) {
      return tl::unexpected("unknown query parameter '" + *name +
                            "' (this endpoint takes: " + allowed_list(allowed) + ")");
    }
    if (!out.emplace(*name, std::move(*value)).second) {
      return tl::unexpected("query parameter '" + *name + "' given twice");
    }
  }
  return out;
}

tl::expected<std::int64_t, std::string> parse_time_ns(std::string_view text) {
  std::int64_t v = 0;
  const char* end = text.data() + text.size();
  if (!text.empty() && text.front() != '-') {
    const auto [ptr, ec] = std::from_chars(text.data(), end, v);
    if (ec == std::errc{} && ptr == end) return v;
  }
  if (const auto t = parse_rfc3339(text)) return *t;
  return tl::unexpected(std::string(
      "is neither integer ns since the epoch nor an RFC 3339 time like 2026-01-02T03:04:05Z "
      "(1970 to 2262)"));
}

tl::expected<std::uint64_t, std::string> parse_unsigned(std::string_view text, std::uint64_t lo,
                                                        std::uint64_t hi) {
  std::uint64_t v = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc{} || ptr != end) {
    return tl::unexpected(std::string("is not an unsigned integer"));
  }
  if (v < lo || v > hi) {
    return tl::unexpected("is out of range " + std::to_string(lo) + ".." + std::to_string(hi));
  }
  return v;
}

}  // namespace pathsentry::collector
