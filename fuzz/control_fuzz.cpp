// Control messages (ancillary data) the kernel hands with a datagram: the TTL socket's ICMP
// errors (probe/ttl parse_ttl_error_control), the reflector's TTL/TOS/destination
// (parse_rx_control), TX and RX timestamps (probe/io). The input is the control buffer, copied
// to a heap block of exactly its size so that AddressSanitizer sees any read past it; the first
// byte sets msg_flags' MSG_CTRUNC.

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "pathsentry/probe/io/timestamping.h"
#include "rx_control.h"
#include "ttl_control.h"

using namespace pathsentry::probe;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const bool ctrunc = (data[0] & 1) != 0;
  ++data;
  --size;
  // malloc's alignment is what a cmsghdr needs; a zero-sized buffer is still a distinct block.
  const std::unique_ptr<std::uint8_t[]> control(new std::uint8_t[size == 0 ? 1 : size]);
  if (size != 0) std::memcpy(control.get(), data, size);
  msghdr msg{};
  msg.msg_control = size == 0 ? nullptr : control.get();
  msg.msg_controllen = size;
  msg.msg_flags = ctrunc ? MSG_CTRUNC : 0;
  (void)parse_ttl_error_control(msg);
  (void)parse_rx_control(msg);
  (void)io::parse_tx_timestamp(msg);
  (void)io::rx_timestamp_ns(msg);
  return 0;
}
