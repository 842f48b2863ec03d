#include "ttl_netns.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>

#include "netns/netns.h"

namespace pathsentry::test {
namespace {
std::atomic<int> g_chain_counter{0};
}

NetnsChain::NetnsChain(bool unlimited_icmp) {
  const std::string tag = std::to_string(getpid()) + "-" + std::to_string(g_chain_counter++);
  agent_ = "pstt-" + tag + "-a";
  router_ = "pstt-" + tag + "-r";
  target_ = "pstt-" + tag + "-t";
  try {
    for (const auto& ns : {agent_, router_, target_}) {
      run_or_throw("ip netns add " + ns);
      run_or_throw("ip -n " + ns + " link set lo up");
    }
    run_or_throw("ip -n " + agent_ + " link add va type veth peer name ra netns " + router_);
    run_or_throw("ip -n " + router_ + " link add rt type veth peer name vt netns " + target_);
    const struct {
      const std::string& ns;
      const char* dev;
      const char* addr;
    } ifs[] = {{agent_, "va", kAgent},
               {router_, "ra", kRouterAgentSide},
               {router_, "rt", kRouterTargetSide},
               {target_, "vt", kTarget}};
    for (const auto& i : ifs) {
      run_or_throw("ip -n " + i.ns + " addr add " + i.addr + "/24 dev " + i.dev);
      run_or_throw("ip -n " + i.ns + " link set " + i.dev + " up");
    }
    run_or_throw("ip -n " + agent_ + " route add default via " + kRouterAgentSide);
    run_or_throw("ip -n " + target_ + " route add default via " + kRouterTargetSide);
    run_or_throw("ip netns exec " + router_ + " sysctl -qw net.ipv4.ip_forward=1");
    if (unlimited_icmp) {
      run_or_throw("ip netns exec " + router_ + " sysctl -qw net.ipv4.icmp_ratelimit=0");
    }
  } catch (...) {
    for (const auto& ns : {target_, router_, agent_}) {
      std::system(("ip netns del " + ns + " 2>/dev/null").c_str());
    }
    throw;
  }
}

NetnsChain::~NetnsChain() {
  for (const auto& ns : {target_, router_, agent_}) {
    std::system(("ip netns del " + ns + " 2>/dev/null").c_str());
  }
}

}  // namespace pathsentry::test
