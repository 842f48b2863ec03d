#pragma once
// Taps and helpers shared by the tap tests (unit and integration).

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "capture/pcap_builder.h"
#include "pathsentry/probe/capture/tap.h"

namespace pathsentry::test::tap_fixtures {

using namespace pathsentry::probe;
using pathsentry::test::addr;

constexpr std::uint32_t kAgent = 0xA6E17;
constexpr std::int64_t kT0 = 1'700'000'000'123'456'789;

inline TapSpec clear_tap() {
  TapSpec t;
  t.interface = "tap-ec";
  t.path = "express-connect";
  t.encap = Encap::Clear;
  return t;
}

inline TapSpec esp_tap() {
  TapSpec t;
  t.interface = "tap-inet";
  t.path = "ipsec";
  t.encap = Encap::Esp;
  t.local_endpoint = addr("203.0.113.68");
  t.remote_endpoint = addr("198.51.100.7");
  t.transform = EspTransform::preset("aes-gcm-16");
  return t;
}

inline DecodeContext ctx() {
  return DecodeContext{kAgent, 862};
}

struct Collect final : ObservationSink {
  std::vector<std::pair<std::size_t, Observation>> got;
  void on_observation(std::size_t tap, const Observation& o) override { got.emplace_back(tap, o); }
};

}  // namespace pathsentry::test::tap_fixtures
