#include "pathsentry/probe/ship/batch.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string_view>

#include "pathsentry/common/record_json.h"

namespace pathsentry::probe {

std::string encode_batch(const BatchHeader& header, std::span<const Rollup> rollups,
                         std::span<const PathEvent> events, std::span<const ProbeRecord> records) {
  std::string out;
  out.reserve(256 + rollups.size() * 400 + events.size() * 600 + records.size() * 400);
  append_json(header, out);
  for (const Rollup& r : rollups) append_json(r, out);
  for (const PathEvent& e : events) append_json(e, out);
  for (const ProbeRecord& r : records) append_json(r, out);
  return out;
}

std::string strip_probe_lines(const std::string& body, std::uint64_t& dropped) {
  constexpr std::string_view kProbe = R"({"type":"probe")";
  std::string out;
  dropped = 0;
  std::size_t pos = 0;
  while (pos < body.size()) {
    std::size_t end = body.find('\n', pos);
    end = end == std::string::npos ? body.size() : end + 1;
    const std::string_view line(body.data() + pos, end - pos);
    if (line.starts_with(kProbe)) {
      ++dropped;
    } else {
      out.append(line);
    }
    pos = end;
  }
  return out;
}

std::string new_run_id() {
  unsigned char b[8];
  std::size_t got = 0;
  while (got < sizeof b) {
    const ssize_t n = getrandom(b + got, sizeof b - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("getrandom: ") + std::strerror(errno));
    }
    got += static_cast<std::size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (unsigned char c : b) {
    id += kHex[c >> 4];
    id += kHex[c & 0xF];
  }
  return id;
}

}  // namespace pathsentry::probe
