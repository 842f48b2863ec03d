#include "pathsentry/reflector/reflector.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "pathsentry/common/config_error.h"

namespace pathsentry::probe {
namespace {

// Reflector packet offsets (RFC 8762 Figure 3); the rest is done by stamp::encode().
constexpr std::size_t kTimestampOffset = 4;
// In a reflected packet, bytes 16..23 hold the receive timestamp; a Session-Sender packet in
// unauthenticated mode has zeros there (MBZ).
constexpr std::size_t kReceiveTimestampOffset = 16;

bool unicast_source(const IpAddress& a) {
  if (a.family == AF_INET) {
    const std::uint8_t first = a.bytes[0];
    const bool zero = first == 0;                    // 0.0.0.0/8: "this network"
    const bool multicast_or_class_e = first >= 224;  // includes 255.255.255.255
    return !zero && !multicast_or_class_e;
  }
  const bool unspecified = std::all_of(a.bytes.begin(), a.bytes.end(), [](auto b) { return !b; });
  return !unspecified && a.bytes[0] != 0xFF;
}

bool looks_reflected(std::span<const std::uint8_t> b) {
  for (std::size_t i = kReceiveTimestampOffset; i < kReceiveTimestampOffset + 8; ++i) {
    if (b[i] != 0) return true;
  }
  return false;
}

}  // namespace

std::string ReflectorCounters::to_string() const {
  return "received=" + std::to_string(received) + " replied=" + std::to_string(replied) +
         " dropped_not_allowed=" + std::to_string(dropped_not_allowed) +
         " dropped_rate_limited=" + std::to_string(dropped_rate_limited) +
         " dropped_global_rate_limited=" + std::to_string(dropped_global_rate_limited) +
         " dropped_low_port=" + std::to_string(dropped_low_port) +
         " malformed=" + std::to_string(malformed) +
         " refused_session_table_full=" + std::to_string(refused_session_table_full) +
         " refused_sessions_per_source=" + std::to_string(refused_sessions_per_source) +
         " send_errors=" + std::to_string(send_errors) +
         " send_denied=" + std::to_string(send_denied) +
         " source_evictions=" + std::to_string(source_evictions);
}

Reflector::Reflector(const ReflectorConfig& config, std::uint64_t hash_seed)
    : allow_(config.allow),
      reply_tos_(config.reply_tos),
      error_(error_estimate_for(config.clock_error_ns, config.clock_synchronized)),
      limiter_(config.rate_limit, config.max_sources, hash_seed),
      global_limit_(config.global_rate_limit),
      max_sessions_per_source_(config.max_sessions_per_source),
      sessions_(config.max_sessions, config.session_timeout_ns, hash_seed ^ 0x5e55'1045ULL),
      source_sessions_(config.max_sessions, config.session_timeout_ns, hash_seed ^ 0x50c3'5e55ULL) {
  if (allow_.empty()) {
    throw ConfigError("", "allow", "",
                      "the allowlist is empty, so the reflector would answer "
                      "nobody; give --allow CIDR");
  }
}

Reflector::Session* Reflector::session_for(const SessionKey& key, std::int64_t now_ns) {
  // Every request of a source keeps its entry alive: the entry expires only when all of the
  // source's sessions have.
  const auto src = source_sessions_.find_or_claim(key.address, now_ns);
  if (src.value != nullptr && src.fresh) src.value->since_ns = now_ns;
  if (sessions_.peek(key, now_ns) != nullptr) return sessions_.find_or_insert(key, now_ns).value;
  // A new session (or one idle past the timeout: it restarts at 0).
  if (src.value == nullptr) {
    table_full_.add();
    return nullptr;
  }
  if (src.value->count >= max_sessions_per_source_) {
    per_source_.add();
    return nullptr;
  }
  auto claim = sessions_.find_or_claim(key, now_ns);
  if (claim.value == nullptr) {
    table_full_.add();
    return nullptr;
  }
  if (claim.replaced) {  // an expired session gave its slot: its source has one fewer
    uncount(claim.old_key, claim.old_value, claim.old_last_ns, now_ns);
  }
  ++src.value->count;
  claim.value->counted = true;
  return claim.value;
}

void Reflector::uncount(const SessionKey& key, Session& s, std::int64_t last_ns,
                        std::int64_t now_ns) {
  if (!s.counted) return;
  s.counted = false;
  // A source entry started after the session was last used never counted it.
  SourceSessions* src = source_sessions_.peek(key.address, now_ns);
  if (src != nullptr && last_ns >= src->since_ns && src->count > 0) --src->count;
}

void Reflector::expire_sessions(std::int64_t now_ns) {
  sessions_.for_each_stale(now_ns, [&](const SessionKey& key, Session& s, std::int64_t last_ns) {
    uncount(key, s, last_ns, now_ns);
  });
}

std::optional<Reply> Reflector::handle(const Request& req, std::int64_t now_ns,
                                       std::span<std::uint8_t> out) {
  received_.add();
  const bool allowed = std::any_of(allow_.begin(), allow_.end(),
                                   [&](const IpPrefix& p) { return p.contains(req.source); });
  if (!allowed) {
    not_allowed_.add();
    return std::nullopt;
  }
  if (req.source_port != 0 && req.source_port < 1024) {
    low_port_.add();
    return std::nullopt;
  }
  const std::size_t size = req.bytes.size();
  if (req.truncated || size < stamp::kBasePacketSize || out.size() < size || req.source_port == 0 ||
      !req.to_unicast || !unicast_source(req.source) || looks_reflected(req.bytes)) {
    malformed_.add();
    return std::nullopt;
  }
  if (!limiter_.allow(req.source, now_ns)) {
    rate_limited_.add();
    source_evictions_.store(limiter_.evictions(), std::memory_order_relaxed);
    return std::nullopt;
  }
  source_evictions_.store(limiter_.evictions(), std::memory_order_relaxed);

  const auto sender = stamp::decode_sender(req.bytes);
  if (!sender) {  // cannot happen after the size check; counted rather than trusted
    malformed_.add();
    return std::nullopt;
  }
  Session* session = session_for(SessionKey{req.source, req.source_port, sender->ssid}, now_ns);
  if (session == nullptr) return std::nullopt;
  // Last: a request dropped here has not advanced its session's sequence, like one lost on
  // the way in.
  if (!global_bucket_.try_take(global_limit_, now_ns)) {
    global_limited_.add();
    return std::nullopt;
  }
  const std::uint32_t sequence = session->next_sequence++;

  stamp::ReflectorPacket p;
  p.sequence = sequence;
  p.timestamp = stamp::ns_to_ntp(req.rx_ns);  // placeholder until set_tx_timestamp()
  p.error = error_;
  p.ssid = sender->ssid;
  p.receive_timestamp = stamp::ns_to_ntp(req.rx_ns);
  p.sender_sequence = sender->sequence;
  p.sender_timestamp = sender->timestamp;
  p.sender_error = sender->error;
  p.sender_ttl = req.ttl.value_or(0);
  stamp::encode(p, out);
  // Same size as the request; the padding is not echoed but zero-filled (RFC 8762 §4.3).
  std::memset(out.data() + stamp::kBasePacketSize, 0, size - stamp::kBasePacketSize);

  Reply r;
  r.size = size;
  r.sequence = sequence;
  // Copy the DSCP, never the ECN bits: a CE mark on the request says nothing of the reply.
  r.tos = reply_tos_ ? *reply_tos_ : static_cast<std::uint8_t>(req.tos.value_or(0) & 0xFC);
  return r;
}

void Reflector::set_tx_timestamp(std::span<std::uint8_t> reply, std::int64_t tx_ns) {
  if (reply.size() < stamp::kBasePacketSize) return;
  const std::uint64_t v = stamp::ns_to_ntp(tx_ns);
  for (int i = 0; i < 8; ++i) {
    reply[kTimestampOffset + static_cast<std::size_t>(i)] =
        static_cast<std::uint8_t>(v >> (56 - 8 * i));
  }
}

void Reflector::count_sent(std::uint64_t sent, std::uint64_t failed, std::uint64_t denied) {
  replied_.add(sent);
  send_errors_.add(failed);
  send_denied_.add(denied);
}

ReflectorCounters Reflector::counters() const {
  ReflectorCounters c;
  c.received = received_.get();
  c.replied = replied_.get();
  c.dropped_not_allowed = not_allowed_.get();
  c.dropped_rate_limited = rate_limited_.get();
  c.dropped_global_rate_limited = global_limited_.get();
  c.refused_session_table_full = table_full_.get();
  c.refused_sessions_per_source = per_source_.get();
  c.send_denied = send_denied_.get();
  c.malformed = malformed_.get();
  c.dropped_low_port = low_port_.get();
  c.send_errors = send_errors_.get();
  c.source_evictions = source_evictions_.load(std::memory_order_relaxed);
  return c;
}

std::size_t Reflector::active_sessions(std::int64_t now_ns) const {
  return sessions_.live(now_ns);
}

stamp::ErrorEstimate Reflector::error_estimate_for(std::int64_t error_ns, bool synchronized) {
  // Estimate = Multiplier * 2^(Scale - 32) s. In units of 2^-32 s the error is
  // error_ns * 2^32 / 1e9; take the smallest Scale whose Multiplier (rounded up) fits 8 bits.
  const long double units =
      static_cast<long double>(std::max<std::int64_t>(error_ns, 1)) * 4294967296.0L / 1e9L;
  stamp::ErrorEstimate e;
  e.synchronized = synchronized;
  e.ptp = false;
  for (int scale = 0; scale < 64; ++scale) {
    const long double m = std::ceil(units / std::ldexp(1.0L, scale));
    if (m <= 255) {
      e.scale = static_cast<std::uint8_t>(scale);
      e.multiplier = static_cast<std::uint8_t>(std::max<long double>(m, 1));
      return e;
    }
  }
  e.scale = 63;
  e.multiplier = 255;
  return e;
}

}  // namespace pathsentry::probe
