// pathsentry-collector as a program: --check-config, configuration errors (exit 2 naming file,
// key and value), the token file's mode warning, and a start/ingest/SIGTERM round on a real
// SQLite file.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "collector/ingest_bodies.h"

namespace {

std::string collector_binary() {
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe");
  return (self.parent_path().parent_path() / "probe" / "pathsentry-collector").string();
}

struct Run {
  int status = -1;
  std::string output;  // stdout and stderr
};

Run run(const std::string& args) {
  Run r;
  const std::string cmd = collector_binary() + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

void write_file(const std::string& path, const std::string& text, mode_t mode = 0600) {
  std::ofstream(path) << text;
  REQUIRE(::chmod(path.c_str(), mode) == 0);
}

}  // namespace

TEST_CASE("collector --check-config accepts a good file and names every setting", "[integration]") {
  pathsentry::test::TempDir d("collector-cli-");
  write_file(d.file("tokens"), "# agents\ns3cret-token-0123456789\n");
  write_file(d.file("c.toml"),
             "[collector]\nlisten = \"127.0.0.1:0\"\nmax_connections = 8\n"
             "[ingest]\ntoken_file = \"tokens\"\n[db]\npath = \"" +
                 d.file("c.db") + "\"\nraw_keep_s = 600\n");
  const auto r = run("--config " + d.file("c.toml") + " --check-config");
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output.find("config OK: listen=127.0.0.1:0") != std::string::npos);
  CHECK(r.output.find("max_connections=8") != std::string::npos);
  CHECK(r.output.find("tokens=1") != std::string::npos);
  CHECK(r.output.find("raw_keep_s=600") != std::string::npos);
  CHECK(r.output.find("s3cret") == std::string::npos);  // never the secret
  CHECK(r.output.find("warning") == std::string::npos);
  CHECK_FALSE(std::filesystem::exists(d.file("c.db")));  // checking opens nothing
}

TEST_CASE("collector: a world-readable token file is warned about", "[integration]") {
  pathsentry::test::TempDir d("collector-cli-");
  write_file(d.file("tokens"), "s3cret-token-0123456789\n", 0644);
  const auto r =
      run("--token-file " + d.file("tokens") + " --db " + d.file("c.db") + " --check-config");
  CHECK(r.status == 0);
  CHECK(r.output.find("is readable by every user (mode 0644): chmod 600 it") != std::string::npos);
}

TEST_CASE("collector: bad configuration exits 2 naming file, key and value", "[integration]") {
  pathsentry::test::TempDir d("collector-cli-");
  write_file(d.file("tokens"), "s3cret-token-0123456789\n");
  const std::string tok = " --token-file " + d.file("tokens") + " --db " + d.file("c.db");
  struct Case {
    std::string toml;  // "" = no file
    std::string args;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"[collector]\nmax_body_bytes = \"big\"\n", tok, "max_body_bytes"},
      {"[collector]\nmax_connections = 0\n", tok, "collector.max_connections"},
      {"[collector]\nlisten_port = 1\n", tok, "collector.listen_port"},
      {"[db]\nrollup_keep_days = -1\n", tok, "db.rollup_keep_days"},
      {"", "--db " + d.file("c.db"), "no ingest token"},
      {"", "--token-file " + d.file("missing") + " --db " + d.file("c.db"), "cannot be read"},
      {"", tok + " --listen localhost", "--listen = 'localhost': must be ADDR:PORT"},
      {"[collector]\nlisten = \"host:1\"\n", tok, "collector.listen"},
      {"", "--token-file " + d.file("tokens") + " --db /nonexistent/dir/c.db",
       "its directory /nonexistent/dir does not exist"},
      {"", tok + " --bogus", "--bogus"},
      {"", tok + " --listen off", "no listener"},
  };
  for (const auto& c : cases) {
    std::string args = c.args;
    if (!c.toml.empty()) {
      write_file(d.file("bad.toml"), c.toml);
      args += " --config " + d.file("bad.toml");
    }
    const auto r = run(args + " --check-config");
    INFO(args << "\n" << r.output);
    CHECK(r.status == 2);
    CHECK(r.output.find("pathsentry-collector: error:") != std::string::npos);
    CHECK(r.output.find(c.expect) != std::string::npos);
    if (!c.toml.empty()) CHECK(r.output.find(d.file("bad.toml")) != std::string::npos);
  }
  // A listen address that is not an IP literal is refused at start, also exit 2.
  const auto r = run(tok + " --listen localhost:9780");
  CHECK(r.status == 2);
  CHECK(r.output.find("is not an IPv4 or IPv6 address") != std::string::npos);
}

// A listen address not (yet) on this host is a runtime environment failure: exit 3, which the
// unit retries (RestartPreventExitStatus=2 only stops configuration errors). TEST-NET-1: bind
// only, nothing is sent.
TEST_CASE("collector: an address not on this host exits 3", "[integration]") {
  pathsentry::test::TempDir d("collector-cli-");
  write_file(d.file("tokens"), "s3cret-token-0123456789\n");
  const auto r = run("--token-file " + d.file("tokens") + " --db " + d.file("c.db") +
                     " --listen 192.0.2.1:19781");
  INFO(r.output);
  CHECK(r.status == 3);
  CHECK(r.output.find("cannot listen") != std::string::npos);
}

TEST_CASE("collector: --help lists the flags", "[integration]") {
  const auto r = run("--help");
  CHECK(r.status == 0);
  for (const char* f : {"--config", "--listen", "--listen-unix", "--db", "--token-file",
                        "--check-config", "--help"}) {
    CHECK(r.output.find(f) != std::string::npos);
  }
}

TEST_CASE("collector: serves on a real database and stops on SIGTERM", "[integration]") {
  pathsentry::test::TempDir d("collector-cli-");
  write_file(d.file("tokens"), std::string(pathsentry::test::kToken) + "\n");
  const std::string out = d.file("out");
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    FILE* f = std::freopen(out.c_str(), "w", stdout);
    (void)f;
    const std::string bin = collector_binary();
    const std::string db = d.file("c.db");
    const std::string tf = d.file("tokens");
    execl(bin.c_str(), bin.c_str(), "--listen", "127.0.0.1:0", "--db", db.c_str(), "--token-file",
          tf.c_str(), "--log-level", "warn", static_cast<char*>(nullptr));
    _exit(127);
  }
  std::string line;
  for (int i = 0; i < 500 && line.find("collector listening on") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::ifstream in(out);
    std::getline(in, line);
  }
  INFO(line);
  REQUIRE(line.starts_with("collector listening on 127.0.0.1:"));
  CHECK(std::filesystem::exists(d.file("c.db")));
  CHECK(::kill(pid, SIGTERM) == 0);
  int st = 0;
  REQUIRE(::waitpid(pid, &st, 0) == pid);
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);
}
