// STAMP packets (probe/wire stamp.h): the reflector decodes Session-Sender packets, the agent
// Session-Reflector packets. Whatever decodes encodes back to the same packet.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "pathsentry/probe/wire/stamp.h"

using namespace pathsentry::probe;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> in(data, size);
  std::array<std::uint8_t, stamp::kBasePacketSize> buf{};
  if (const auto s = stamp::decode_sender(in)) {
    if (stamp::encode(*s, buf) != stamp::kBasePacketSize) __builtin_trap();
    const auto again = stamp::decode_sender(buf);
    if (!again || !(*again == *s)) __builtin_trap();
    (void)stamp::timestamp_to_ns(s->timestamp, s->error);
  } else if (size >= stamp::kBasePacketSize && s.error() == stamp::DecodeError::Truncated) {
    __builtin_trap();  // 44 bytes or more are never "truncated"
  }
  if (const auto r = stamp::decode_reflector(in)) {
    if (stamp::encode(*r, buf) != stamp::kBasePacketSize) __builtin_trap();
    const auto again = stamp::decode_reflector(buf);
    if (!again || !(*again == *r)) __builtin_trap();
    (void)stamp::timestamp_to_ns(r->timestamp, r->error);
    (void)stamp::timestamp_to_ns(r->receive_timestamp, r->error);
    (void)stamp::timestamp_to_ns(r->sender_timestamp, r->sender_error);
  }
  return 0;
}
