#include "pathsentry/probe/agent/tap_config.h"

#include <net/if.h>

#include <charconv>
#include <sstream>

#include "pathsentry/common/config_error.h"
#include "pathsentry/common/parse.h"

namespace pathsentry::probe {
namespace {

constexpr std::int64_t kEspUdpPort = 4500;
constexpr std::int64_t kMaxWindowUs = 10'000'000;  // 10 s either side
constexpr const char* kTransforms =
    "aes-gcm-8, aes-gcm-12, aes-gcm-16, aes-cbc-sha1, aes-cbc-sha256, aes-cbc-sha384, "
    "aes-cbc-sha512, null-sha256";

std::string text_of(const toml::node& n) {
  if (auto s = n.as_string()) return s->get();
  std::ostringstream os;
  n.visit([&os](auto&& v) { os << v; });
  return os.str();
}

std::string check_iface(const std::string& file, const std::string& key, const std::string& v) {
  if (v.empty() || v.size() >= IFNAMSIZ) {
    throw ConfigError(file, key, v, "must be an interface name (1 to 15 characters)");
  }
  return v;
}

std::string check_path(const std::string& file, const std::string& key, const std::string& v) {
  if (v.empty() || v == kPathNone || v == kPathUnknown) {
    throw ConfigError(file, key, v, "must be a path label other than \"none\" and \"unknown\"");
  }
  return v;
}

Encap check_encap(const std::string& file, const std::string& key, const std::string& v) {
  if (v == "clear") return Encap::Clear;
  if (v == "esp") return Encap::Esp;
  throw ConfigError(file, key, v, "must be clear or esp");
}

IpAddress check_endpoint(const std::string& file, const std::string& key, const std::string& v) {
  auto a = IpAddress::parse(v);
  if (!a) throw ConfigError(file, key, v, "is not an IPv4 or IPv6 address");
  return *a;
}

EspTransform check_transform(const std::string& file, const std::string& key,
                             const std::string& v) {
  auto t = EspTransform::preset(v);
  if (!t) throw ConfigError(file, key, v, std::string("must be one of ") + kTransforms);
  return *t;
}

std::int64_t parse_us(const std::string& file, const std::string& key, const std::string& v) {
  const auto parsed = parse_number<std::int64_t>(v);
  if (!parsed) throw ConfigError(file, key, v, "must be an integer number of microseconds");
  const std::int64_t n = *parsed;
  if (n < -kMaxWindowUs || n > kMaxWindowUs) {
    throw ConfigError(file, key, v, "must be between -10000000 and 10000000 microseconds");
  }
  return n;
}

void check_esp(const std::string& file, const std::string& key, const TapSpec& t) {
  if (t.local_endpoint.family != t.remote_endpoint.family) {
    throw ConfigError(file, key, t.remote_endpoint.to_string(),
                      "the tunnel endpoints must have the same address family");
  }
  if (t.local_endpoint == t.remote_endpoint) {
    throw ConfigError(file, key, t.remote_endpoint.to_string(), "the tunnel endpoints must differ");
  }
  for (Direction d : {Direction::Forward, Direction::Reverse}) {
    if (t.lo_ns(d) >= t.hi_ns(d)) {
      throw ConfigError(file, key, std::to_string(t.hi_ns(d) / 1000),
                        std::string("the ") + (d == Direction::Forward ? "" : "reverse ") +
                            "window's high end must be above its low end");
    }
  }
}

// Splits on ':' except inside [brackets] (IPv6 endpoints); the brackets are removed.
std::vector<std::string> split_fields(const std::string& flag, const std::string& text) {
  std::vector<std::string> out(1);
  bool in_bracket = false;
  for (char c : text) {
    if (c == '[' && !in_bracket) {
      in_bracket = true;
    } else if (c == ']' && in_bracket) {
      in_bracket = false;
    } else if (c == ':' && !in_bracket) {
      out.emplace_back();
    } else {
      out.back().push_back(c);
    }
  }
  if (in_bracket) throw ConfigError("", flag, text, "has an unclosed '['");
  return out;
}

}  // namespace

void read_tap_tables(const toml::table& root, const std::string& file, TapSettings& out) {
  read_ttl_table(root, file, out.ttl);
  if (const toml::node* tn = root.get("tap")) {
    const toml::array* arr = tn->as_array();
    if (arr == nullptr || !arr->is_array_of_tables()) {
      throw ConfigError(file, "tap", text_of(*tn), "must be an array of tables ([[tap]])");
    }
    for (std::size_t i = 0; i < arr->size(); ++i) {
      const toml::table& t = *arr->get(i)->as_table();
      const std::string prefix = "tap[" + std::to_string(i) + "]";
      auto key = [&](std::string_view k) { return prefix + "." + std::string(k); };
      for (const auto& [k, v] : t) {
        static constexpr std::string_view kKnown[] = {
            "interface",       "path",      "encap",        "local",        "remote",
            "udp_port",        "transform", "window_lo_us", "window_hi_us", "rev_window_lo_us",
            "rev_window_hi_us"};
        bool ok = false;
        for (auto n : kKnown) ok = ok || k.str() == n;
        if (!ok) throw ConfigError(file, key(k.str()), text_of(v), "is not a known key");
      }
      auto str = [&](std::string_view k, bool required) -> std::optional<std::string> {
        const toml::node* n = t.get(k);
        if (n == nullptr) {
          if (required) throw ConfigError(file, key(k), "", "is required");
          return std::nullopt;
        }
        if (!n->is_string()) throw ConfigError(file, key(k), text_of(*n), "must be a string");
        return n->as_string()->get();
      };
      auto integer = [&](std::string_view k) -> std::optional<std::int64_t> {
        const toml::node* n = t.get(k);
        if (n == nullptr) return std::nullopt;
        if (!n->is_integer()) throw ConfigError(file, key(k), text_of(*n), "must be an integer");
        return n->as_integer()->get();
      };
      TapSpec spec;
      spec.interface = check_iface(file, key("interface"), *str("interface", true));
      spec.path = check_path(file, key("path"), *str("path", true));
      spec.encap = check_encap(file, key("encap"), str("encap", false).value_or("clear"));
      if (spec.encap == Encap::Esp) {
        spec.local_endpoint = check_endpoint(file, key("local"), *str("local", true));
        spec.remote_endpoint = check_endpoint(file, key("remote"), *str("remote", true));
        if (auto p = integer("udp_port"); p && *p != kEspUdpPort) {
          throw ConfigError(file, key("udp_port"), std::to_string(*p),
                            "only 4500 (ESP-in-UDP, RFC 3948) is supported; raw ESP (protocol "
                            "50) is always captured");
        }
        if (auto tr = str("transform", false)) {
          spec.transform = check_transform(file, key("transform"), *tr);
        }
        if (auto lo = integer("window_lo_us")) {
          spec.window_lo_ns = parse_us(file, key("window_lo_us"), std::to_string(*lo)) * 1000;
        }
        if (auto hi = integer("window_hi_us")) {
          spec.window_hi_ns = parse_us(file, key("window_hi_us"), std::to_string(*hi)) * 1000;
        }
        if (auto lo = integer("rev_window_lo_us")) {
          spec.rev_window_lo_ns =
              parse_us(file, key("rev_window_lo_us"), std::to_string(*lo)) * 1000;
        }
        if (auto hi = integer("rev_window_hi_us")) {
          spec.rev_window_hi_ns =
              parse_us(file, key("rev_window_hi_us"), std::to_string(*hi)) * 1000;
        }
        check_esp(file, key("window_hi_us"), spec);
      } else {
        for (std::string_view k : {"local", "remote", "udp_port", "transform", "window_lo_us",
                                   "window_hi_us", "rev_window_lo_us", "rev_window_hi_us"}) {
          if (const toml::node* n = t.get(k)) {
            throw ConfigError(file, key(k), text_of(*n), "only applies to encap = \"esp\"");
          }
        }
      }
      out.taps.push_back(std::move(spec));
      out.tap_keys.push_back(prefix);
    }
  }
  if (const toml::node* dn = root.get("detector")) {
    const toml::table* d = dn->as_table();
    if (d == nullptr) throw ConfigError(file, "detector", text_of(*dn), "must be a table");
    for (const auto& [k, v] : *d) {
      const std::string name(k.str());
      if (name != "confirm_probes" && name != "outage_losses") {
        throw ConfigError(file, "detector." + name, text_of(v), "is not a known key");
      }
      const auto n = v.as_integer();
      if (n == nullptr || n->get() < 1 || n->get() > 1'000'000) {
        throw ConfigError(file, "detector." + name, text_of(v),
                          "must be an integer between 1 and 1000000");
      }
      (name == "confirm_probes" ? out.detector.confirm_probes : out.detector.outage_losses) =
          static_cast<std::uint32_t>(n->get());
    }
  }
  check_taps(file, out);
}

TapSpec parse_tap_flag(const std::string& flag, const std::string& text) {
  const auto f = split_fields(flag, text);
  constexpr const char* kForm =
      "must be IFACE:PATH:clear or "
      "IFACE:PATH:esp:LOCAL:REMOTE[:TRANSFORM[:LO_US:HI_US[:REV_LO_US:REV_HI_US]]]";
  if (f.size() < 3) throw ConfigError("", flag, text, kForm);
  TapSpec spec;
  spec.interface = check_iface("", flag, f[0]);
  spec.path = check_path("", flag, f[1]);
  spec.encap = check_encap("", flag, f[2]);
  if (spec.encap == Encap::Clear) {
    if (f.size() != 3) throw ConfigError("", flag, text, kForm);
    return spec;
  }
  if (f.size() != 5 && f.size() != 6 && f.size() != 8 && f.size() != 10) {
    throw ConfigError("", flag, text, kForm);
  }
  spec.local_endpoint = check_endpoint("", flag, f[3]);
  spec.remote_endpoint = check_endpoint("", flag, f[4]);
  if (f.size() >= 6 && !f[5].empty() && f[5] != "learn") {
    spec.transform = check_transform("", flag, f[5]);
  }
  if (f.size() >= 8) {
    spec.window_lo_ns = parse_us("", flag, f[6]) * 1000;
    spec.window_hi_ns = parse_us("", flag, f[7]) * 1000;
  }
  if (f.size() == 10) {
    spec.rev_window_lo_ns = parse_us("", flag, f[8]) * 1000;
    spec.rev_window_hi_ns = parse_us("", flag, f[9]) * 1000;
  }
  check_esp("", flag, spec);
  return spec;
}

void check_taps(const std::string& file, const TapSettings& settings) {
  for (std::size_t i = 0; i < settings.taps.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (settings.taps[i].interface == settings.taps[j].interface) {
        const std::string key =
            i < settings.tap_keys.size() ? settings.tap_keys[i] : std::string("--tap");
        throw ConfigError(file, key + (key == "--tap" ? "" : ".interface"),
                          settings.taps[i].interface, "is already another tap's interface");
      }
    }
  }
}

std::string tap_usage() {
  return R"(  --tap IFACE:PATH:clear
                         a tap seeing PATH's probes in clear (repeatable; replaces the file's
                         [[tap]] tables): e.g. tap-ec:express-connect:clear
  --tap IFACE:PATH:esp:LOCAL:REMOTE[:TRANSFORM[:LO_US:HI_US[:REV_LO_US:REV_HI_US]]]
                         a tap seeing PATH as ESP (protocol 50 or UDP 4500) between the tunnel
                         endpoints LOCAL (DC side) and REMOTE ([v6] in brackets); TRANSFORM one
                         of aes-gcm-8|12|16, aes-cbc-sha1|256|384|512, null-sha256 or learn
                         (default); LO_US:HI_US the correlation window (default -200:5000),
                         REV_LO_US:REV_HI_US the reverse one (default: the same)
  --confirm-probes N     probes on a new path that confirm a switchover (default 3)
  --outage-losses K      consecutive losses that make an outage (default 3)
)" + ttl_usage();
}

}  // namespace pathsentry::probe
