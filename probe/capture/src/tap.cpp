#include "pathsentry/probe/capture/tap.h"

#include <utility>

namespace pathsentry::probe {

std::string bpf_filter(const TapSpec& tap, std::span<const IpAddress> agent_addresses,
                       std::uint16_t stamp_port) {
  std::string core;
  if (tap.encap == Encap::Esp) {
    core = "host " + tap.local_endpoint.to_string() + " and host " +
           tap.remote_endpoint.to_string() + " and (ip proto 50 or ip6 proto 50 or udp port 4500)";
  } else {
    std::string hosts;
    for (const auto& a : agent_addresses) {
      hosts += hosts.empty() ? "(host " : " or host ";
      hosts += a.to_string();
    }
    if (!hosts.empty()) hosts += ") and ";
    // ICMPv6 echo is matched at a fixed offset: probes carry no extension headers.
    core = hosts +
           "((icmp and (icmp[icmptype] == icmp-echo or icmp[icmptype] == icmp-echoreply)) or "
           "(icmp6 and (ip6[40] == 128 or ip6[40] == 129)) or udp port " +
           std::to_string(stamp_port) + ")";
    if (tap.healthcheck_prefix) {
      // The cloud's health check of the line: its probes and the gateway's answers, whoever
      // the agent is (docs/healthcheck.md).
      const IpPrefix& p = *tap.healthcheck_prefix;
      core = "(" + core + ") or (" + (p.base.family == AF_INET ? "icmp" : "icmp6") + " and net " +
             p.to_string() + ")";
    }
  }
  // A SPAN session may keep 802.1Q tags; "vlan" shifts the offsets for the rest of the
  // expression, hence the repeated body.
  return "(" + core + ") or (vlan and (" + core + "))";
}

Tap::Tap(TapSpec spec, DecodeContext ctx, std::unique_ptr<PacketSource> source, std::size_t index)
    : spec_(std::move(spec)), ctx_(ctx), source_(std::move(source)), index_(index) {}

tl::expected<std::size_t, std::string> Tap::pump(ObservationSink& sink, std::size_t max_frames,
                                                 bool* end) {
  if (end != nullptr) *end = false;
  if (!source_) return tl::unexpected(std::string("capture closed"));
  const int link = source_->linktype();
  Frame frame;
  std::size_t n = 0;
  while (n < max_frames) {
    auto st = source_->next(frame);
    if (!st) return tl::unexpected(std::move(st.error()));
    if (*st == ReadStatus::Timeout) break;
    if (*st == ReadStatus::End) {
      if (end != nullptr) *end = true;
      break;
    }
    ++n;
    ++stats_.frames;
    const auto obs = decode_frame(spec_, ctx_, frame.ts_ns, link, frame.bytes);
    if (obs) {
      ++stats_.decoded;
      sink.on_observation(index_, *obs);
    } else if (const auto echo = health_check_echo(frame, link)) {
      ++stats_.echoes;
      sink.on_echo(index_, *echo);
    } else {
      ++stats_.dropped[static_cast<std::size_t>(obs.error())];
    }
  }
  return n;
}

std::optional<EchoFrame> Tap::health_check_echo(const Frame& frame, int link) const {
  if (!spec_.healthcheck_prefix || spec_.encap != Encap::Clear) return std::nullopt;
  auto echo = decode_echo(frame.ts_ns, link, frame.bytes);
  if (!echo) return std::nullopt;
  const IpPrefix& p = *spec_.healthcheck_prefix;
  if (!p.contains(echo->src) && !p.contains(echo->dst)) return std::nullopt;
  return echo;
}

const TapStats& Tap::stats() {
  stats_.source = closed_source_stats_;
  if (source_) {
    const SourceStats now = source_->stats();
    stats_.source.received += now.received;
    stats_.source.dropped += now.dropped;
    stats_.source.if_dropped += now.if_dropped;
  }
  return stats_;
}

void Tap::close_source() {
  if (!source_) return;
  const SourceStats last = source_->stats();
  closed_source_stats_.received += last.received;
  closed_source_stats_.dropped += last.dropped;
  closed_source_stats_.if_dropped += last.if_dropped;
  source_.reset();
}

void Tap::replace_source(std::unique_ptr<PacketSource> source) {
  close_source();
  source_ = std::move(source);
}

}  // namespace pathsentry::probe
