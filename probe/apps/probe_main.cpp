// pathsentry-probe: the agent's probing core (docs/probe.md).
#include "pathsentry/probe/agent/agent.h"

int main(int argc, char** argv) {
  return pathsentry::probe::agent_main(argc, argv);
}
