#include "engine/fake_socket.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include "pathsentry/probe/wire/stamp.h"

namespace pathsentry::test {

FakeSocket::FakeSocket(const Clock& clock)
    : clock_(clock), event_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (event_fd_ < 0) throw std::system_error(errno, std::system_category(), "eventfd");
}

FakeSocket::~FakeSocket() {
  ::close(event_fd_);
}

void FakeSocket::update_readiness() {
  std::uint64_t v = 0;
  if (inbox_.empty() && tx_queue_.empty()) {
    (void)::read(event_fd_, &v, sizeof v);  // counter back to 0: not readable
  } else {
    v = 1;
    (void)::write(event_fd_, &v, sizeof v);  // counter > 0: readable
  }
}

std::size_t FakeSocket::pending() const {
  std::lock_guard lock(mu_);
  return inbox_.size();
}

void FakeSocket::deliver(std::vector<std::uint8_t> bytes, std::int64_t rx_ns) {
  std::lock_guard lock(mu_);
  inbox_.emplace_back(std::move(bytes), rx_ns);
  update_readiness();
}

tl::expected<std::size_t, std::error_code> FakeSocket::send(
    std::span<const probe::TxDatagram> batch) {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  for (const auto& d : batch) {
    if (fail_sends > 0) {
      --fail_sends;
      update_readiness();
      if (n == 0) return tl::unexpected(std::make_error_code(fail_code));
      return n;
    }
    Sent s;
    s.bytes.assign(d.bytes.begin(), d.bytes.end());
    s.ts_id = d.ts_id;
    s.tx_ns = clock_.system_ns() + tx_delay_ns;
    if (launch_enabled_ && d.launch_mono_ns > 0) {
      s.launch_mono_ns = d.launch_mono_ns;
      if (qdisc_holds)
        s.tx_ns += std::max<std::int64_t>(0, d.launch_mono_ns - clock_.monotonic_ns());
    }
    if (tx_timestamps) tx_queue_.push_back({d.ts_id, s.tx_ns});
    sent.push_back(std::move(s));
    ++n;
  }
  update_readiness();
  return n;
}

tl::expected<void, std::error_code> FakeSocket::enable_launch_time() {
  std::lock_guard lock(mu_);
  if (!launch_time) return tl::unexpected(std::make_error_code(std::errc::operation_not_supported));
  launch_enabled_ = true;
  return {};
}

tl::expected<std::size_t, std::error_code> FakeSocket::receive(std::span<probe::RxDatagram> b) {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  while (n < b.size() && !inbox_.empty()) {
    auto& [bytes, rx_ns] = inbox_.front();
    const std::size_t len = std::min(bytes.size(), b[n].buffer.size());
    std::copy_n(bytes.begin(), len, b[n].buffer.begin());
    b[n].size = len;
    b[n].truncated = len < bytes.size();
    b[n].rx_ns = rx_ns;
    inbox_.pop_front();
    ++n;
  }
  update_readiness();
  return n;
}

tl::expected<std::size_t, std::error_code> FakeSocket::read_tx_timestamps(
    std::span<probe::io::TxTimestamp> out) {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  while (n < out.size() && !tx_queue_.empty()) {
    out[n++] = tx_queue_.front();
    tx_queue_.pop_front();
  }
  update_readiness();
  return n;
}

std::vector<std::uint8_t> icmp_echo_reply(const probe::WireFormat& wf,
                                          std::span<const std::uint8_t> request) {
  std::vector<std::uint8_t> icmp(request.begin(), request.end());
  icmp[0] = wf.family == AF_INET ? 0 : 129;
  icmp[2] = icmp[3] = 0;
  if (wf.family == AF_INET) {
    const std::uint16_t c = probe::internet_checksum(icmp);
    icmp[2] = static_cast<std::uint8_t>(c >> 8);
    icmp[3] = static_cast<std::uint8_t>(c);
  }
  if (!(wf.family == AF_INET && wf.icmp_raw)) return icmp;
  std::vector<std::uint8_t> ip(20, 0);
  ip[0] = 0x45;
  const auto total = static_cast<std::uint16_t>(20 + icmp.size());
  ip[2] = static_cast<std::uint8_t>(total >> 8);
  ip[3] = static_cast<std::uint8_t>(total);
  ip[8] = 64;
  ip[9] = 1;  // ICMP
  ip.insert(ip.end(), icmp.begin(), icmp.end());
  return ip;
}

std::vector<std::uint8_t> stamp_reply(std::span<const std::uint8_t> request,
                                      std::uint32_t reflector_seq, std::int64_t t2_ns,
                                      std::int64_t t3_ns) {
  namespace st = probe::stamp;
  const auto req = st::decode_sender(request).value();
  st::ReflectorPacket p;
  p.sequence = reflector_seq;
  p.timestamp = st::ns_to_ntp(t3_ns);
  p.ssid = req.ssid;
  p.receive_timestamp = st::ns_to_ntp(t2_ns);
  p.sender_sequence = req.sequence;
  p.sender_timestamp = req.timestamp;
  p.sender_error = req.error;
  p.sender_ttl = 64;
  std::vector<std::uint8_t> out(request.size(), 0);
  st::encode(p, out);
  return out;
}

std::vector<ProbeRecord> CollectingSink::for_seq(std::uint64_t seq) const {
  std::vector<ProbeRecord> out;
  for (const auto& r : records) {
    if (r.seq == seq) out.push_back(r);
  }
  return out;
}

}  // namespace pathsentry::test
