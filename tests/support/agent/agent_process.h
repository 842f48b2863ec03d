#pragma once
// Helpers for tests that run the pathsentry-probe binary (probe_cli_test, tap_down_netns_test).

#include <stdlib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace pathsentry::test {

/// The binary next to this test executable's build tree (<build>/probe/pathsentry-probe).
inline std::string probe_binary() {
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe");
  return (self.parent_path().parent_path() / "probe" / "pathsentry-probe").string();
}

/// A whole file as text ("" when it cannot be read).
inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// A temporary directory `/tmp/<prefix>XXXXXX`, removed with everything in it.
struct ScratchDir {
  std::string path;
  explicit ScratchDir(const std::string& prefix) {
    std::string t = "/tmp/" + prefix + "XXXXXX";
    REQUIRE(mkdtemp(t.data()) != nullptr);
    path = t;
  }
  ~ScratchDir() { std::filesystem::remove_all(path); }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  [[nodiscard]] std::string file(const std::string& name) const { return path + "/" + name; }
};

}  // namespace pathsentry::test
