#pragma once

#include <string>

namespace pathsentry::test {

/// Three network namespaces in a row, for TTL tests: an agent, a router that forwards between
/// two veth pairs (and so answers TTL expiry with ICMP time exceeded), and a target. Created by
/// the constructor, removed by name by the destructor; names carry the PID and a counter, and
/// nothing is connected to the root namespace. Needs root; throws std::runtime_error when a
/// setup command fails.
///
///   agent  va 198.18.1.2/24 ── ra 198.18.1.1/24  router  rt 198.18.2.1/24 ── vt 198.18.2.2/24
///   target
///
/// The router's ICMP error policing is lifted (net.ipv4.icmp_ratelimit=0, in its namespace)
/// when `unlimited_icmp` is set, else left at the kernel default (1000 ms per destination).
class NetnsChain {
 public:
  explicit NetnsChain(bool unlimited_icmp = true);
  ~NetnsChain();
  NetnsChain(const NetnsChain&) = delete;
  NetnsChain& operator=(const NetnsChain&) = delete;

  [[nodiscard]] const std::string& agent() const { return agent_; }
  [[nodiscard]] const std::string& router() const { return router_; }
  [[nodiscard]] const std::string& target() const { return target_; }
  static constexpr const char* kAgent = "198.18.1.2";
  static constexpr const char* kRouterAgentSide = "198.18.1.1";
  static constexpr const char* kRouterTargetSide = "198.18.2.1";
  static constexpr const char* kTarget = "198.18.2.2";

 private:
  std::string agent_;
  std::string router_;
  std::string target_;
};

}  // namespace pathsentry::test
