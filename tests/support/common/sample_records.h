#pragma once
// Sample records and events for the record model's tests (unit and integration).

#include "pathsentry/common/record.h"

namespace pathsentry::test::sample_records {

inline ProbeRecord stamp_record() {
  ProbeRecord r;
  r.target = "192.168.20.161";
  r.proto = Proto::Stamp;
  r.session_id = 131074;
  r.seq = 17;
  r.tx_ns = 1'700'000'000'000'000'123;
  r.rx_ns = 1'700'000'000'008'000'456;
  r.rtt_ns = 8'000'333;
  r.tx_kernel_ts = true;
  r.reflector_seq = 3;
  r.reflector_rx_ns = 1'700'000'000'004'000'000;
  r.reflector_tx_ns = 1'700'000'000'004'010'000;
  r.reflector_clock_synced = true;
  r.fwd_path = "ipsec";
  r.rev_path = "express-connect";
  return r;
}

inline ProbeRecord lost_icmp() {
  ProbeRecord r;
  r.target = "fd01::161";
  r.proto = Proto::Icmp;
  r.session_id = 1;
  r.seq = 0xFFFF'FFFF'FFFF'FFFEull;
  r.tx_ns = 5;
  r.fwd_path = "express-connect";
  r.rev_path = "none";
  r.loss = LossDirection::Undetermined;
  r.late = false;
  return r;
}

inline PathEvent switchover() {
  PathEvent e;
  e.type = EventType::Switchover;
  e.target = "192.168.20.161";
  e.proto = Proto::Stamp;
  e.session_id = 131074;
  e.direction = Direction::Reverse;
  e.ts_ns = 1'700'000'016'000'000'000;
  e.seq = 16017;
  e.detected_ns = 1'700'000'016'030'000'000;
  e.from = "express-connect";
  e.to = "ipsec";
  e.last_ok_on_old_ns = 1'700'000'000'009'000'000;
  e.first_ok_on_new_ns = 1'700'000'016'015'000'000;
  e.outage_ns = e.first_ok_on_new_ns - e.last_ok_on_old_ns;
  e.probes_lost = 16005;
  e.probes_lost_undetermined = 7;
  e.outage_kind = OutageKind::Measured;
  e.resolution_ns = 1'000'000;
  e.failback = true;
  return e;
}

}  // namespace pathsentry::test::sample_records
