#include "pathsentry/probe/ttl/ttl_config.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "pathsentry/common/config_error.h"
#include "pathsentry/common/parse.h"
#include "pathsentry/common/record.h"

namespace pathsentry::probe {
namespace {

constexpr double kMaxTtlRate = 10'000;

std::string text_of(const toml::node& n) {
  if (auto s = n.as_string()) return s->get();
  std::ostringstream os;
  n.visit([&os](auto&& v) { os << v; });
  return os.str();
}

std::uint8_t check_ttl_value(const std::string& file, const std::string& key,
                             const std::string& text, std::int64_t v) {
  if (v < 1 || v > 255) throw ConfigError(file, key, text, "must be a TTL between 1 and 255");
  return static_cast<std::uint8_t>(v);
}

double check_ttl_rate(const std::string& file, const std::string& key, const std::string& text,
                      double v) {
  if (!std::isfinite(v) || v < 0.001 || v > kMaxTtlRate) {
    throw ConfigError(file, key, text,
                      "must be a rate in probes per second between 0.001 and 10000");
  }
  return v;
}

std::string check_hop_path(const std::string& file, const std::string& key, const std::string& v) {
  if (v.empty() || v == kPathNone || v == kPathUnknown) {
    throw ConfigError(file, key, v, "must be a path label other than \"none\" and \"unknown\"");
  }
  return v;
}

IpAddress check_hop_address(const std::string& file, const std::string& key, const std::string& v) {
  auto a = IpAddress::parse(v);
  if (!a) throw ConfigError(file, key, v, "is not an IPv4 or IPv6 address");
  return *a;
}

// ADDR=PATH; an IPv6 address may be bracketed.
TtlHop parse_hop(const std::string& flag, const std::string& text) {
  const auto eq = text.rfind('=');
  if (eq == std::string::npos) throw ConfigError("", flag, text, "must be ADDR=PATH");
  std::string addr = text.substr(0, eq);
  if (addr.size() > 2 && addr.front() == '[' && addr.back() == ']') {
    addr = addr.substr(1, addr.size() - 2);
  }
  TtlHop h;
  h.address = check_hop_address("", flag, addr);
  h.path = check_hop_path("", flag, text.substr(eq + 1));
  h.key = flag;
  return h;
}

}  // namespace

void read_ttl_table(const toml::table& root, const std::string& file, TtlSettings& out) {
  const toml::node* tn = root.get("ttl");
  if (tn == nullptr) return;
  if (!tn->is_table()) throw ConfigError(file, "ttl", text_of(*tn), "must be a table ([ttl])");
  const toml::table& t = *tn->as_table();
  out.file = file;
  for (const auto& [k, v] : t) {
    const std::string key = "ttl." + std::string(k.str());
    const std::string text = text_of(v);
    if (k == "ttl") {
      auto n = v.value_exact<std::int64_t>();
      if (!n) throw ConfigError(file, key, text, "must be an integer");
      out.ttl = check_ttl_value(file, key, text, *n);
      out.ttl_key = key;
    } else if (k == "rate") {
      auto n = v.value<double>();
      if (!n || !(v.is_integer() || v.is_floating_point())) {
        throw ConfigError(file, key, text, "must be a number");
      }
      out.rate_pps = check_ttl_rate(file, key, text, *n);
    } else if (k == "port") {
      auto n = v.value_exact<std::int64_t>();
      if (!n || *n < 1 || *n > 65535) {
        throw ConfigError(file, key, text, "must be a UDP port between 1 and 65535");
      }
      out.port = static_cast<std::uint16_t>(*n);
    } else if (k == "timeout_ms") {
      auto n = v.value_exact<std::int64_t>();
      if (!n || *n < 1 || *n > 60'000) {
        throw ConfigError(file, key, text, "must be an integer between 1 and 60000");
      }
      out.timeout_ns = *n * 1'000'000;
    } else if (k == "hops") {
      const toml::table* hops = v.as_table();
      if (hops == nullptr) {
        throw ConfigError(file, key, text,
                          "must be a table of ADDRESS = PATH, e.g. hops = { \"10.1.0.1\" = "
                          "\"express-connect\" }");
      }
      out.hops.clear();
      for (const auto& [hk, hv] : *hops) {
        const std::string hkey = key + "." + std::string(hk.str());
        TtlHop h;
        h.address = check_hop_address(file, hkey, std::string(hk.str()));
        auto p = hv.value_exact<std::string>();
        if (!p) throw ConfigError(file, hkey, text_of(hv), "must be a path label (a string)");
        h.path = check_hop_path(file, hkey, *p);
        h.key = hkey;
        out.hops.push_back(std::move(h));
      }
    } else {
      throw ConfigError(file, key, text, "is not a known key");
    }
  }
}

bool is_ttl_flag(std::string_view flag) {
  return flag == "--ttl-probe" || flag == "--ttl-hop" || flag == "--ttl-rate" ||
         flag == "--ttl-port" || flag == "--ttl-timeout-ms";
}

TtlFlag parse_ttl_flag(const std::string& flag, const std::string& text) {
  if (flag == "--ttl-hop") {
    (void)parse_hop(flag, text);
  } else if (flag == "--ttl-rate") {
    const auto v = parse_number<double>(text);
    if (!v) throw ConfigError("", flag, text, "must be a number");
    (void)check_ttl_rate("", flag, text, *v);
  } else {
    const auto v = parse_number<std::int64_t>(text);
    if (!v) throw ConfigError("", flag, text, "must be an integer");
    if (flag == "--ttl-probe") {
      (void)check_ttl_value("", flag, text, *v);
    } else if (flag == "--ttl-port" && (*v < 1 || *v > 65535)) {
      throw ConfigError("", flag, text, "must be a UDP port between 1 and 65535");
    } else if (flag == "--ttl-timeout-ms" && (*v < 1 || *v > 60'000)) {
      throw ConfigError("", flag, text, "must be an integer between 1 and 60000");
    }
  }
  return TtlFlag{flag, text};
}

void apply_ttl_flag(TtlSettings& out, const TtlFlag& f) {
  // Values were checked by parse_ttl_flag.
  if (f.flag == "--ttl-hop") {
    if (!out.hops_from_flags) out.hops.clear();
    out.hops_from_flags = true;
    out.hops.push_back(parse_hop(f.flag, f.text));
  } else if (f.flag == "--ttl-rate") {
    out.rate_pps = *parse_number<double>(f.text);
  } else if (f.flag == "--ttl-probe") {
    out.ttl = static_cast<std::uint8_t>(*parse_number<std::int64_t>(f.text));
    out.ttl_key = f.flag;
  } else if (f.flag == "--ttl-port") {
    out.port = static_cast<std::uint16_t>(*parse_number<std::int64_t>(f.text));
  } else if (f.flag == "--ttl-timeout-ms") {
    out.timeout_ns = *parse_number<std::int64_t>(f.text) * 1'000'000;
  }
}

void check_ttl(const TtlSettings& s, const std::vector<std::string>& tap_paths) {
  const std::string hop_file = s.hops_from_flags ? std::string() : s.file;
  const std::string ttl_file = s.ttl_key == "--ttl-probe" ? std::string() : s.file;
  if (s.ttl == 0) {
    if (!s.hops.empty()) {
      throw ConfigError(hop_file, s.hops.front().key, s.hops.front().address.to_string(),
                        "a TTL hop needs a TTL to probe with (--ttl-probe TTL or ttl.ttl)");
    }
    return;
  }
  if (s.hops.empty()) {
    throw ConfigError(ttl_file, s.ttl_key, std::to_string(s.ttl),
                      "needs at least one hop address mapped to a path (--ttl-hop ADDR=PATH or "
                      "ttl.hops)");
  }
  for (std::size_t i = 0; i < s.hops.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (s.hops[i].address == s.hops[j].address) {
        throw ConfigError(hop_file, s.hops[i].key, s.hops[i].address.to_string(),
                          "is mapped twice (to " + s.hops[j].path + " and " + s.hops[i].path + ")");
      }
    }
    if (!tap_paths.empty() &&
        std::find(tap_paths.begin(), tap_paths.end(), s.hops[i].path) == tap_paths.end()) {
      std::string known;
      for (const auto& p : tap_paths) known += (known.empty() ? "" : ", ") + p;
      throw ConfigError(
          hop_file, s.hops[i].key, s.hops[i].path,
          "is not the path of any tap (" + known + "): the cross-check compares path labels");
    }
  }
}

std::string ttl_usage() {
  return R"(TTL-limited path probes (docs/ttl.md; no mirror port needed, forward direction only):
  --ttl-probe TTL        also probe each target with UDP datagrams of this IP TTL (1..255),
                         set so they expire at the first router past the DC gateway
  --ttl-hop ADDR=PATH    a router whose time-exceeded source is ADDR lies on PATH (repeatable;
                         replaces the file's ttl.hops)
  --ttl-rate PPS         TTL probes per second per target (default 1: routers rate-limit
                         time-exceeded messages, Linux to 1/s per destination)
  --ttl-port N           UDP destination port of the TTL probes (default 33434)
  --ttl-timeout-ms N     a TTL probe unanswered this long counts as lost (default 1000)
)";
}

}  // namespace pathsentry::probe
