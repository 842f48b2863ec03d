// The agent's malloc settings (malloc_tuning.h): each case runs in a forked child, so the
// settings and the arenas it creates stay out of the test process.
#include "malloc_tuning.h"

#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <string>
#include <thread>
#include <vector>

using pathsentry::probe::kAgentMallocArenas;
using pathsentry::probe::tune_malloc_for_agent;

namespace {

void* volatile g_keep = nullptr;  // keeps the allocations from being optimised away

void clear_env() {
  unsetenv("MALLOC_ARENA_MAX");
  unsetenv("MALLOC_MMAP_THRESHOLD_");
  unsetenv("GLIBC_TUNABLES");
}

// Runs body in a forked child; its return value is the child's exit status.
int in_child(int (*body)()) {
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) _exit(body());
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
}

// The malloc arenas in use (malloc_info lists one <heap> per arena).
int arenas() {
  char* buf = nullptr;
  std::size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  malloc_info(0, f);
  std::fclose(f);
  int n = 0;
  for (const char* p = buf; (p = std::strstr(p, "<heap nr=")) != nullptr; ++p) ++n;
  std::free(buf);
  return n;
}

// A large block freed after it was mmapped must not raise the threshold: the next large block
// (a hand-off vector grown in the next burst) is mmapped too, so freeing it returns it.
int large_blocks_mmapped() {
  clear_env();
  if (tune_malloc_for_agent().empty()) return 2;
  constexpr std::size_t kBig = std::size_t{8} << 20;
  constexpr std::size_t kNext = std::size_t{4} << 20;
  void* a = std::malloc(kBig);
  std::memset(a, 1, kBig);
  g_keep = a;
  std::free(g_keep);  // glibc's own rule would now take blocks below 8 MiB from the heap
  const std::size_t before = mallinfo2().hblkhd;
  void* b = std::malloc(kNext);
  g_keep = b;
  const std::size_t after = mallinfo2().hblkhd;
  std::free(g_keep);
  return after >= before + kNext ? 0 : 1;
}

// New threads share the agent's few arenas instead of getting one each.
int threads_share_arenas() {
  clear_env();
  if (tune_malloc_for_agent().empty()) return 2;
  const int before = arenas();
  constexpr int kThreads = 4;
  std::latch allocated(kThreads + 1);
  std::latch done(1);
  std::vector<std::thread> ts;
  ts.reserve(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    ts.emplace_back([&] {
      void* p = std::malloc(1024);
      g_keep = p;
      allocated.count_down();
      done.wait();  // alive while the arenas are counted: an exited thread frees its arena
      std::free(p);
    });
  }
  allocated.arrive_and_wait();
  const int after = arenas();
  done.count_down();
  for (auto& t : ts) t.join();
  return after <= std::max(before, kAgentMallocArenas) ? 0 : 1;
}

int env_wins() {
  clear_env();
  setenv("MALLOC_ARENA_MAX", "8", 1);
  setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=1048576", 1);
  return tune_malloc_for_agent().empty() ? 0 : 1;
}

// Under AddressSanitizer malloc is the sanitizer's: mallopt() does nothing and says so (0), so
// the agent applies nothing and says nothing; the glibc behaviour cannot be observed there.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitizerMalloc = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitizerMalloc = true;
#else
constexpr bool kSanitizerMalloc = false;
#endif
#else
constexpr bool kSanitizerMalloc = false;
#endif

int nothing_applied() {
  clear_env();
  return tune_malloc_for_agent().empty() ? 0 : 1;
}

// glibc's behaviour in a child; under AddressSanitizer, that the agent applies nothing.
int glibc_case(int (*body)()) {
  if (!kSanitizerMalloc) return in_child(body);
  WARN(
      "AddressSanitizer's malloc: glibc's behaviour not observable; checked that the agent "
      "applies nothing");
  return in_child(nothing_applied);
}

}  // namespace

TEST_CASE("malloc tuning: a large block freed does not keep the next one in an arena", "[unit]") {
  REQUIRE(glibc_case(large_blocks_mmapped) == 0);
}

TEST_CASE("malloc tuning: the agent's threads share at most two arenas", "[unit]") {
  REQUIRE(glibc_case(threads_share_arenas) == 0);
}

TEST_CASE("malloc tuning: settings from the environment win", "[unit]") {
  REQUIRE(in_child(env_wins) == 0);
}
