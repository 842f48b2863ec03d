#pragma once
// The agent's malloc settings (issue 14 goal 6: RSS at 100 000 probes/s with taps).

#include <cstddef>
#include <string>

namespace pathsentry::probe {

/// glibc gives each new thread its own arena (up to 8 per core); memory a thread freed stays in
/// its arena. The agent's threads hand buffers to each other (capture -> pipeline -> writer), so
/// under a backlog each arena kept 10-16 MB of freed chunks. Two arenas are enough for the
/// agent's few allocating threads.
inline constexpr int kAgentMallocArenas = 2;
/// Blocks at least this large are mmapped and go back to the kernel when freed. glibc's own
/// threshold starts at 128 KiB but rises to the size of any mmapped block freed (up to 32 MiB),
/// after which a hand-off vector that grew in a burst stays resident in an arena once freed;
/// setting it fixes it.
inline constexpr std::size_t kAgentMmapThreshold = std::size_t{256} << 10;

/// Applies the two settings with mallopt(), unless the environment sets them already
/// (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_, or GLIBC_TUNABLES naming glibc.malloc.*), which
/// then wins. Returns what it did, for the agent's log ("" when nothing).
std::string tune_malloc_for_agent();

}  // namespace pathsentry::probe
