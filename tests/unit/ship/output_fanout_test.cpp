// The pipeline's output fan-out: records and events reach every output; with shipping on, events
// are numbered 1, 2, … before any output sees them, so the JSON lines and the shipper agree.
#include <catch2/catch.hpp>
#include <vector>

#include "pathsentry/probe/attribution/pipeline.h"

using namespace pathsentry;
using namespace pathsentry::probe;

namespace {

struct Capture final : RecordOutput {
  std::vector<ProbeRecord> records;
  std::vector<PathEvent> events;
  int flushes = 0;
  void write(const ProbeRecord& r) override { records.push_back(r); }
  void write(const PathEvent& e) override { events.push_back(e); }
  void flush() override { ++flushes; }
};

}  // namespace

TEST_CASE("output fan-out: every output, the same event ids", "[unit]") {
  Capture a;
  Capture b;
  OutputFanout out(true);
  CHECK(out.empty());
  out.add(a);
  out.add(b);
  CHECK_FALSE(out.empty());
  ProbeRecord r;
  r.seq = 5;
  out.write(r);
  PathEvent e;
  out.write(e);
  out.write(e);
  PathEvent preset;
  preset.event_id = 42;
  out.write(preset);
  out.flush();
  for (const Capture* c : {&a, &b}) {
    REQUIRE(c->records.size() == 1);
    CHECK(c->records[0].seq == 5);
    REQUIRE(c->events.size() == 3);
    CHECK(c->events[0].event_id == 1);
    CHECK(c->events[1].event_id == 2);
    CHECK(c->events[2].event_id == 42);
    CHECK(c->flushes == 1);
  }
  // Without shipping the events stay unnumbered (the JSON lines as before).
  Capture plain;
  OutputFanout unnumbered;
  unnumbered.add(plain);
  unnumbered.write(e);
  CHECK(plain.events.at(0).event_id == 0);
}
