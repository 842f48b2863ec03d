// The agent's config file (probe/agent agent_config.cpp, with its [[tap]], [ttl], [detector]
// and [collector] tables): the input is written to a private file and parsed as `--config
// FILE`. A bad file is a ConfigError naming it; any other exception or a crash is a bug.

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "pathsentry/common/config_error.h"
#include "pathsentry/probe/agent/agent_config.h"

using namespace pathsentry;
using namespace pathsentry::probe;

namespace {

// One file per process, in TMPDIR, removed at exit.
const std::string& config_path() {
  static const std::string path = [] {
    const char* dir = std::getenv("TMPDIR");
    std::string p = std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") +
                    "/pathsentry-fuzz-agent-" + std::to_string(::getpid()) + ".toml";
    std::atexit([] { std::remove(config_path().c_str()); });
    return p;
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& path = config_path();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) __builtin_trap();
  if (size != 0 && std::fwrite(data, 1, size, f) != size) __builtin_trap();
  std::fclose(f);
  const std::string_view args[] = {"--config", path};
  try {
    (void)parse_agent_config(args, 7);
  } catch (const ConfigError&) {
  }
  return 0;
}
