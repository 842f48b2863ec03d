// Frames a tap captures (probe/capture decode_frame, decode_echo): first byte picks the link
// type and the tap's encapsulation, the rest is the frame.

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "pathsentry/probe/capture/echo.h"
#include "pathsentry/probe/capture/tap.h"

using namespace pathsentry;
using namespace pathsentry::probe;

namespace {

IpAddress v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  IpAddress x;
  x.family = AF_INET;
  x.bytes[0] = a;
  x.bytes[1] = b;
  x.bytes[2] = c;
  x.bytes[3] = d;
  return x;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  static constexpr int kLinks[] = {
      linktype::kEthernet, linktype::kLinuxSll, linktype::kLinuxSll2, linktype::kRaw,
      linktype::kNull,     linktype::kRawFile,  linktype::kRawBsd,    -1};
  const int link = kLinks[data[0] & 7];
  TapSpec tap;
  tap.interface = "fuzz";
  tap.path = "p";
  if ((data[0] & 0x08) != 0) {
    tap.encap = Encap::Esp;
    tap.local_endpoint = v4(10, 0, 0, 1);
    tap.remote_endpoint = v4(10, 0, 0, 2);
  }
  const DecodeContext ctx{1, 862};
  const std::span<const std::uint8_t> frame(data + 1, size - 1);
  const auto o = decode_frame(tap, ctx, 1, link, frame);
  if (o) {
    // What a decoded frame says must come from the frame.
    if (o->kind == ObsKind::Esp && tap.encap != Encap::Esp) __builtin_trap();
    if (o->kind != ObsKind::Esp && tap.encap == Encap::Esp) __builtin_trap();
  } else if (static_cast<std::size_t>(o.error()) >= kDropReasonCount) {
    __builtin_trap();
  }
  (void)decode_echo(1, link, frame);
  return 0;
}
