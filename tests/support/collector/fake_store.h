#pragma once
// An in-memory db::Store for the collector's tests: the identities of store.h (a resend never
// doubles), row ids in ingest order, and failures on demand for each ErrorKind.

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "pathsentry/db/store.h"

namespace pathsentry::test {

class FakeStore final : public db::Store {
 public:
  std::future<tl::expected<db::IngestCounts, db::StoreError>> ingest(
      db::IngestBatch batch) override;
  tl::expected<std::vector<db::AgentRow>, db::StoreError> agents() override;
  tl::expected<std::vector<db::TargetRow>, db::StoreError> targets() override;
  tl::expected<std::vector<db::EventRow>, db::StoreError> events(const db::EventQuery& q) override;
  tl::expected<std::vector<db::EventRow>, db::StoreError> events_after(std::int64_t after_id,
                                                                       std::size_t limit) override;
  tl::expected<std::vector<db::SeriesPoint>, db::StoreError> series(
      const db::SeriesQuery& q) override;
  tl::expected<std::vector<db::ProbeRow>, db::StoreError> probes(const db::ProbeQuery& q) override;
  tl::expected<db::RetentionReport, db::StoreError> apply_retention(std::int64_t now_ns) override;
  db::StoreStats stats() override;

  /// While set, every ingest fails with this error (nothing written).
  void fail_ingest(std::optional<db::StoreError> e);
  /// While held, ingest() waits (as a caller waits for the writer's commit) until released.
  void hold_ingest(bool hold);
  /// While set, every query fails with this error.
  void fail_reads(std::optional<db::StoreError> e);

  /// What is stored, for the tests' checks.
  [[nodiscard]] std::size_t probe_rows() const;
  [[nodiscard]] std::size_t rollup_rows() const;
  [[nodiscard]] std::size_t event_rows() const;
  [[nodiscard]] std::uint64_t ingest_calls() const;
  [[nodiscard]] std::vector<std::int64_t> retention_calls() const;
  /// The last query each method received.
  [[nodiscard]] std::optional<db::EventQuery> last_event_query() const;
  [[nodiscard]] std::optional<db::SeriesQuery> last_series_query() const;
  [[nodiscard]] std::optional<db::ProbeQuery> last_probe_query() const;

  /// A ready-made ingest batch header.
  static BatchHeader header(const std::string& agent = "dc1", std::uint64_t batch = 1);

 private:
  mutable std::mutex mutex_;
  std::condition_variable released_;
  bool held_ = false;
  std::optional<db::StoreError> ingest_error_, read_error_;
  std::vector<db::ProbeRow> probes_;
  std::set<std::tuple<std::string, std::string, std::uint32_t, std::uint64_t>> probe_ids_;
  struct RollupRow {
    std::string agent, run;
    Rollup r;
  };
  std::vector<RollupRow> rollups_;
  std::set<std::tuple<std::string, std::string, std::uint32_t, std::int64_t, int, std::string>>
      rollup_ids_;
  std::vector<db::EventRow> events_;
  std::set<std::tuple<std::string, std::string, std::uint64_t>> event_ids_;
  std::map<std::string, db::AgentRow> agents_;
  std::uint64_t ingest_calls_ = 0;
  std::uint64_t committed_ = 0, failed_ = 0;
  std::vector<std::int64_t> retention_calls_;
  std::optional<db::EventQuery> last_event_query_;
  std::optional<db::SeriesQuery> last_series_query_;
  std::optional<db::ProbeQuery> last_probe_query_;
};

}  // namespace pathsentry::test
