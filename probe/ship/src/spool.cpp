#include "pathsentry/probe/ship/spool.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <tuple>
#include <variant>
#include <vector>

#include "pathsentry/common/record_json.h"
#include "pathsentry/probe/ship/batch.h"

namespace pathsentry::probe {
namespace fs = std::filesystem;
namespace {

constexpr std::string_view kTmpPrefix = ".tmp-";
constexpr std::string_view kSuffix = ".ndjson";

std::string errno_text() {
  return std::strerror(errno);
}

tl::expected<std::string, std::string> read_all(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return tl::unexpected(path + ": " + errno_text());
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string e = path + ": " + errno_text();
      ::close(fd);
      return tl::unexpected(e);
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

// What the start-up scan needs of a batch file without reading it all: its first line (at most
// 64 KiB), its size, whether it ends in a newline.
struct Head {
  std::string first_line;
  std::uint64_t size = 0;
  bool ends_in_newline = false;
};

tl::expected<Head, std::string> read_head(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return tl::unexpected(path + ": " + errno_text());
  Head h;
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const std::string e = path + ": " + errno_text();
    ::close(fd);
    return tl::unexpected(e);
  }
  h.size = static_cast<std::uint64_t>(st.st_size);
  std::string buf(std::min<std::uint64_t>(h.size, 65536), '\0');
  const ssize_t n = ::pread(fd, buf.data(), buf.size(), 0);
  char last = 0;
  const ssize_t m = h.size > 0 ? ::pread(fd, &last, 1, static_cast<off_t>(h.size - 1)) : 0;
  ::close(fd);
  if (n < 0 || m < 0) return tl::unexpected(path + ": " + errno_text());
  buf.resize(static_cast<std::size_t>(n));
  h.first_line = buf.substr(0, buf.find('\n'));
  h.ends_in_newline = m == 1 && last == '\n';
  return h;
}

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

Spool::Spool(SpoolOptions options) : opt_(std::move(options)) {
  if (opt_.dir.empty()) throw std::runtime_error("no spool directory given");
  std::error_code ec;
  fs::create_directories(opt_.dir, ec);
  if (ec) throw std::runtime_error("cannot create " + opt_.dir + ": " + ec.message());
  fs::create_directories(rejected_dir(), ec);
  if (ec) throw std::runtime_error("cannot create " + rejected_dir() + ": " + ec.message());
  if (::access(opt_.dir.c_str(), W_OK | X_OK) != 0) {
    throw std::runtime_error("cannot write to " + opt_.dir + ": " + errno_text());
  }
  load_existing();
}

std::string Spool::file_name(const std::string& run, std::uint64_t batch) {
  char b[32];
  std::snprintf(b, sizeof b, "-%012llu", static_cast<unsigned long long>(batch));
  return run + b + std::string(kSuffix);
}

void Spool::log(const std::string& m) const {
  if (opt_.log) opt_.log("spool " + opt_.dir + ": " + m);
}

void Spool::load_existing() {
  struct Found {
    std::int64_t created_ns;
    std::string name;
    std::uint64_t bytes;
  };
  std::vector<Found> found;
  std::error_code ec;
  for (const auto& de : fs::directory_iterator(opt_.dir, ec)) {
    if (!de.is_regular_file()) continue;
    const std::string name = de.path().filename().string();
    if (name.starts_with(kTmpPrefix)) {
      reject_file(name, "an unfinished write (the agent stopped before renaming it)");
      continue;
    }
    if (!name.ends_with(kSuffix)) continue;
    auto head = read_head(de.path().string());
    if (!head) {
      log("cannot read " + head.error() + "; left in place");
      continue;
    }
    if (head->size == 0 || !head->ends_in_newline) {
      reject_file(name, "incomplete (no final newline)");
      continue;
    }
    auto first = parse_json_line(head->first_line);
    if (!first || !std::holds_alternative<BatchHeader>(*first)) {
      reject_file(name, "not a batch: line 1 " +
                            (first ? std::string("is not a batch line") : first.error()));
      continue;
    }
    found.push_back(Found{std::get<BatchHeader>(*first).created_ns, name, head->size});
  }
  if (ec) throw std::runtime_error("cannot list " + opt_.dir + ": " + ec.message());
  std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) {
    return std::tie(a.created_ns, a.name) < std::tie(b.created_ns, b.name);
  });
  for (const Found& f : found) {
    files_.push_back(Entry{f.name, f.bytes, true});
    stats_.bytes += f.bytes;
  }
  stats_.files = files_.size();
  if (!files_.empty()) {
    log(std::to_string(files_.size()) + " batch file(s), " + std::to_string(stats_.bytes) +
        " bytes, left by an earlier run: sent first");
  }
}

tl::expected<void, std::string> Spool::write_file(const std::string& name,
                                                  const std::string& body) {
  const std::string tmp = opt_.dir + "/" + std::string(kTmpPrefix) + name;
  const std::string final_path = opt_.dir + "/" + name;
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return tl::unexpected("cannot create " + tmp + ": " + errno_text());
  std::size_t done = 0;
  while (done < body.size()) {
    const ssize_t n = ::write(fd, body.data() + done, body.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string e = "cannot write " + tmp + ": " + errno_text();
      ::close(fd);
      ::unlink(tmp.c_str());
      return tl::unexpected(e);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const std::string e = "cannot fsync " + tmp + ": " + errno_text();
    ::close(fd);
    ::unlink(tmp.c_str());
    return tl::unexpected(e);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
    const std::string e = "cannot rename " + tmp + ": " + errno_text();
    ::unlink(tmp.c_str());
    return tl::unexpected(e);
  }
  fsync_dir(opt_.dir);
  return {};
}

tl::expected<void, std::string> Spool::add(const BatchHeader& header, const std::string& body) {
  const std::string name = file_name(header.run, header.batch);
  if (auto w = write_file(name, body); !w) return w;
  files_.push_back(
      Entry{name, body.size(), body.find("\n{\"type\":\"probe\"") != std::string::npos});
  stats_.bytes += body.size();
  stats_.files = files_.size();
  ++stats_.written;
  enforce_bound();
  return {};
}

void Spool::enforce_bound() {
  if (stats_.bytes <= opt_.max_bytes) {
    over_logged_ = false;
    return;
  }
  for (Entry& e : files_) {
    if (stats_.bytes <= opt_.max_bytes) break;
    if (!e.has_raw) continue;
    const std::string path = opt_.dir + "/" + e.name;
    auto body = read_all(path);
    if (!body) {
      log("cannot read " + body.error() + " to drop its probe records");
      continue;
    }
    std::uint64_t dropped = 0;
    const std::string kept = strip_probe_lines(*body, dropped);
    e.has_raw = false;
    if (dropped == 0) continue;
    if (auto w = write_file(e.name, kept); !w) {
      log(w.error() + " (dropping the probe records of " + e.name + ")");
      continue;
    }
    stats_.bytes = stats_.bytes - e.bytes + kept.size();
    e.bytes = kept.size();
    stats_.dropped_raw_records += dropped;
    log("over its bound of " + std::to_string(opt_.max_bytes) + " bytes: dropped the " +
        std::to_string(dropped) + " raw probe record(s) of " + e.name +
        " (its rollups and events are kept; " + std::to_string(stats_.dropped_raw_records) +
        " dropped so far)");
  }
  if (stats_.bytes > opt_.max_bytes) {
    ++stats_.over_bound;
    if (!over_logged_) {
      log("STILL OVER ITS BOUND: " + std::to_string(stats_.bytes) + " bytes in " +
          std::to_string(files_.size()) + " file(s) hold only rollups and events now, which are " +
          "never dropped; the collector has been unreachable for long: fix it or raise "
          "collector.spool_max_mb");
      over_logged_ = true;
    }
  } else {
    over_logged_ = false;
  }
}

tl::expected<std::string, std::string> Spool::read_front() {
  auto body = read_all(opt_.dir + "/" + files_.front().name);
  if (!body) {
    log("cannot read " + body.error() + ": dropped from the queue");
    stats_.bytes -= files_.front().bytes;
    files_.pop_front();
    stats_.files = files_.size();
  }
  return body;
}

void Spool::pop_front() {
  const Entry& e = files_.front();
  const std::string path = opt_.dir + "/" + e.name;
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    log("cannot delete the acknowledged " + path + ": " + errno_text());
  }
  stats_.bytes -= e.bytes;
  files_.pop_front();
  stats_.files = files_.size();
}

void Spool::reject_front(const std::string& why) {
  const Entry e = files_.front();
  files_.pop_front();
  stats_.bytes -= e.bytes;
  stats_.files = files_.size();
  reject_file(e.name, why);
}

void Spool::reject_file(const std::string& name, const std::string& why) {
  std::string target = rejected_dir() + "/" + name;
  for (int i = 1; fs::exists(target); ++i) {
    target = rejected_dir() + "/" + name + "." + std::to_string(i);
  }
  const std::string from = opt_.dir + "/" + name;
  ++stats_.rejected;
  if (::rename(from.c_str(), target.c_str()) != 0) {
    log("REJECTED " + name + " (" + why + "), and cannot move it to " + target + ": " +
        errno_text() + "; left in place, out of the queue");
    return;
  }
  fsync_dir(opt_.dir);
  log("REJECTED " + name + ": " + why + "; moved to " + target);
}

}  // namespace pathsentry::probe
