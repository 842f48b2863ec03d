#include "pathsentry/common/thread_runner.h"

#include <pthread.h>

#include <catch2/catch.hpp>
#include <stdexcept>
#include <string>

using namespace pathsentry;

// A throwing body reaches the failure hook with its thread's name and the message.
TEST_CASE("thread runner hands a thread's exception to the hook with its name", "[unit]") {
  std::string name;
  std::string what;
  int calls = 0;
  auto hook = [&](std::string_view n, std::string_view w) {
    ++calls;
    name = n;
    what = w;
  };
  SECTION("std::exception") {
    std::thread t = start_thread(
        "capture tap-ec", [] { throw std::runtime_error("pcap: interface went away"); }, hook);
    t.join();
    CHECK(what == "pcap: interface went away");
  }
  SECTION("anything else") {
    std::thread t = start_thread(
        "capture tap-ec", [] { throw 42; }, hook);
    t.join();
    CHECK(what == "unknown exception");
  }
  CHECK(calls == 1);
  CHECK(name == "capture tap-ec");
}

// A body that returns normally never calls the hook; the thread carries the (truncated) name.
TEST_CASE("thread runner names the thread and stays quiet on success", "[unit]") {
  int calls = 0;
  std::string seen;
  std::thread t = start_thread(
      "a-very-long-thread-name",
      [&] {
        char buf[32] = {};
        pthread_getname_np(pthread_self(), buf, sizeof buf);
        seen = buf;
      },
      [&](std::string_view, std::string_view) { ++calls; });
  t.join();
  CHECK(calls == 0);
  CHECK(seen == "a-very-long-thr");  // 15 characters: the kernel's limit
}
