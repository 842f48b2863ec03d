#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <tl/expected.hpp>

#include "pathsentry/common/rollup.h"

namespace pathsentry::probe {

/// Where the spool is and how big it may grow.
struct SpoolOptions {
  std::string dir;
  std::uint64_t max_bytes = std::uint64_t{256} << 20;
  /// Log lines (rejected files, raw records dropped at the bound, the bound exceeded).
  std::function<void(const std::string&)> log;
};

/// Counters of a Spool (the shipper exposes them for the metrics).
struct SpoolStats {
  std::uint64_t files = 0;                ///< batch files waiting
  std::uint64_t bytes = 0;                ///< their size
  std::uint64_t written = 0;              ///< files written by this process
  std::uint64_t dropped_raw_records = 0;  ///< probe lines removed at the bound
  std::uint64_t rejected = 0;             ///< files moved to rejected/
  std::uint64_t over_bound = 0;           ///< times only rollups/events were left and still over
};

/// The agent's on-disk queue of batches (docs/probe.md "Shipping"). Each file is exactly one
/// ingest body (batch.h), named `<run>-<batch:012>.ndjson`, written under a temporary name
/// (`.tmp-<name>`), fsync'd and renamed, so a file under its final name is always complete.
///
/// Order: files found at start (any run: a previous process's) come first, oldest batch header
/// first (created_ns, then name), then the files this process adds, in the order added.
/// A file found at start that is not a complete batch (a temporary left by a crash, no batch
/// line, no final newline) is moved to `rejected/` with a log line.
///
/// Bound: after each add, while the files together exceed max_bytes, the oldest file that still
/// holds probe lines is rewritten without them (counted in dropped_raw_records); rollups and
/// events are never dropped: when only they are left and the spool is still over, it says so
/// loudly in the log and keeps them. Not thread-safe (the shipper's thread owns it).
class Spool {
 public:
  /// Creates the directory (and rejected/) if needed and loads the files already there. Throws
  /// std::runtime_error saying what failed (the caller names the config key).
  explicit Spool(SpoolOptions options);

  /// The file name of batch `batch` of run `run`.
  [[nodiscard]] static std::string file_name(const std::string& run, std::uint64_t batch);

  /// Writes one batch body as the next file, then enforces the bound. The error says what
  /// failed (nothing was queued then).
  tl::expected<void, std::string> add(const BatchHeader& header, const std::string& body);

  struct Entry {
    std::string name;
    std::uint64_t bytes = 0;
    bool has_raw = true;  // may still hold probe lines
  };
  [[nodiscard]] bool empty() const { return files_.empty(); }
  /// The oldest file (not empty()).
  [[nodiscard]] const Entry& front() const { return files_.front(); }
  /// The oldest file's content; an error (the file vanished or cannot be read) drops the entry
  /// from the queue after logging it.
  tl::expected<std::string, std::string> read_front();
  /// The oldest file was acknowledged: deletes it.
  void pop_front();
  /// The oldest file was refused for good: moves it to rejected/ and logs `why`.
  void reject_front(const std::string& why);

  [[nodiscard]] const SpoolStats& stats() const { return stats_; }
  [[nodiscard]] const std::string& dir() const { return opt_.dir; }
  [[nodiscard]] std::string rejected_dir() const { return opt_.dir + "/rejected"; }

 private:
  void load_existing();
  void reject_file(const std::string& name, const std::string& why);
  void enforce_bound();
  tl::expected<void, std::string> write_file(const std::string& name, const std::string& body);
  void log(const std::string& m) const;

  SpoolOptions opt_;
  std::deque<Entry> files_;
  SpoolStats stats_;
  bool over_logged_ = false;
};

}  // namespace pathsentry::probe
