#include "netns/netns.h"

#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

using pathsentry::test::NetnsPair;

// The fixture's namespaces reach each other over v4 and v6 and vanish when it is destroyed.
TEST_CASE("netns pair is connected and removed", "[privileged][netns]") {
  REQUIRE(geteuid() == 0);
  std::string a;
  {
    NetnsPair pair;
    a = pair.a();
    REQUIRE(NetnsPair::exec(pair.a(), "ping -c1 -W2 198.18.0.2 >/dev/null") == 0);
    REQUIRE(NetnsPair::exec(pair.a(), "ping -6 -c1 -W2 fd53::2 >/dev/null") == 0);
    int fd = -1;
    NetnsPair::in_ns(pair.b(), [&] { fd = socket(AF_INET, SOCK_DGRAM, 0); });
    REQUIRE(fd >= 0);
    close(fd);
  }
  REQUIRE(std::system(("ip netns pids " + a + " >/dev/null 2>&1").c_str()) != 0);
}
