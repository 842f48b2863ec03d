#include <catch2/catch.hpp>
#include <memory>

#include "engine/fake_socket.h"
#include "pathsentry/common/clock.h"
#include "pathsentry/probe/engine/engine.h"
#include "pathsentry/probe/wire/probe_wire.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using pathsentry::test::CollectingSink;
using pathsentry::test::FakeSocket;

// The engine's threads wait on a fake socket as on a real one (its eventfd): a short run over
// a fake that never answers sends, reads every TX timestamp, declares every probe lost at its
// timeout and returns.
TEST_CASE("engine runs over the fake socket's descriptor", "[integration][engine]") {
  SystemClock clock;
  CollectingSink sink;
  EngineOptions eo;
  eo.duration_ns = 100'000'000;
  Engine engine(clock, eo);
  SessionConfig c;
  c.target = *IpAddress::parse("198.18.0.2");
  c.proto = Proto::Icmp;
  c.rate_pps = 100;
  c.timeout_ns = 20'000'000;
  c.agent_id = 7;
  c.session_id = 0x12340001;
  WireFormat wf;
  wf.proto = c.proto;
  wf.family = AF_INET;
  wf.agent_id = c.agent_id;
  wf.session_id = c.session_id;
  wf.datagram_size = datagram_size_for(c.proto, c.size);
  auto fs = std::make_unique<FakeSocket>(clock);
  FakeSocket* sock = fs.get();
  engine.add_session(std::make_unique<ProbeSession>(c, wf, std::move(fs), sink));
  engine.run();
  const SessionSummary s = engine.sessions()[0]->summary();
  CHECK(s.counters.sent == sock->sent.size());
  CHECK(s.counters.sent >= 5);
  CHECK(s.counters.lost == s.counters.sent);
  CHECK(sink.records.size() == s.counters.sent);
  CHECK(sink.sent.size() == s.counters.sent);
}
