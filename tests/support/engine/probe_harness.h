#pragma once

#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "pathsentry/common/clock.h"
#include "pathsentry/common/record.h"
#include "pathsentry/probe/engine/probe_session.h"
#include "pathsentry/probe/io/probe_sockets.h"
#include "pathsentry/reflector/reflector.h"

namespace pathsentry::test {

/// What one engine run produced.
struct EngineRun {
  std::vector<probe::SessionConfig> configs;
  std::vector<probe::SessionSummary> summaries;
  std::vector<ProbeRecord> records;  ///< every record of every session, in emission order
  /// Records of session `i` for sequence `seq`.
  [[nodiscard]] std::vector<ProbeRecord> of(std::size_t i, std::uint64_t seq) const;
};

/// Opens real sockets for `sessions` inside network namespace `ns` and runs the probe engine
/// there for `duration_ns` (then it waits out the timeout). Throws on socket errors.
EngineRun run_engine_in(const std::string& ns, std::vector<probe::SessionConfig> sessions,
                        std::int64_t duration_ns,
                        probe::io::IcmpSocketMode mode = probe::io::IcmpSocketMode::Raw);

/// The teammate's STAMP reflector (probe/reflector.h) serving inside `ns` on a free port,
/// allowing 198.18.0.0/24 and fd53::/64, until destroyed.
class ReflectorInNs {
 public:
  explicit ReflectorInNs(const std::string& ns);
  ~ReflectorInNs();
  ReflectorInNs(const ReflectorInNs&) = delete;
  ReflectorInNs& operator=(const ReflectorInNs&) = delete;
  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] probe::ReflectorCounters counters() const { return server_->counters(); }

 private:
  SystemClock clock_;
  std::unique_ptr<probe::ReflectorServer> server_;
  std::uint16_t port_ = 0;
  std::promise<void> ready_;
  std::thread thread_;
};

/// Loads an nftables ruleset (nft -f syntax) into namespace `ns`; throws when nft fails.
void nft_in(const std::string& ns, const std::string& ruleset);

/// A session config for tests: 1000/s, 2 s timeout, agent 5, the given id.
probe::SessionConfig test_session(const std::string& target, Proto proto, std::uint32_t id);

}  // namespace pathsentry::test
