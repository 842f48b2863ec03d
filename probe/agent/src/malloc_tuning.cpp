#include "malloc_tuning.h"

#include <malloc.h>

#include <cstdlib>
#include <cstring>

namespace pathsentry::probe {

namespace {

bool env_sets(const char* name, const char* tunable) {
  if (std::getenv(name) != nullptr) return true;
  const char* t = std::getenv("GLIBC_TUNABLES");
  return t != nullptr && std::strstr(t, tunable) != nullptr;
}

}  // namespace

std::string tune_malloc_for_agent() {
  std::string done;
  if (!env_sets("MALLOC_ARENA_MAX", "glibc.malloc.arena_max") &&
      mallopt(M_ARENA_MAX, kAgentMallocArenas) == 1) {
    done += "arenas " + std::to_string(kAgentMallocArenas);
  }
  if (!env_sets("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold") &&
      mallopt(M_MMAP_THRESHOLD, static_cast<int>(kAgentMmapThreshold)) == 1) {
    if (!done.empty()) done += ", ";
    done += "mmap threshold " + std::to_string(kAgentMmapThreshold >> 10) + " KiB";
  }
  return done;
}

}  // namespace pathsentry::probe
