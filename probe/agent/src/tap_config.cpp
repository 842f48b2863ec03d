#include "pathsentry/probe/agent/tap_config.h"

#include <net/if.h>

#include "config_values.h"
#include "pathsentry/common/config_error.h"
#include "pathsentry/common/record.h"

namespace pathsentry::probe {
namespace {

using options::Value;

constexpr std::int64_t kMaxWindowUs = 10'000'000;  // 10 s either side
constexpr const char* kTransforms =
    "aes-gcm-8, aes-gcm-12, aes-gcm-16, aes-cbc-sha1, aes-cbc-sha256, aes-cbc-sha384, "
    "aes-cbc-sha512, null-sha256";

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

IpAddress address_of(const Value& v) {
  const auto a = IpAddress::parse(v.string());
  if (!a) v.fail("is not an IPv4 or IPv6 address");
  return *a;
}

std::string path_label_of(const Value& v) {
  const std::string& s = v.string();
  if (s.empty() || s == kPathNone || s == kPathUnknown) {
    v.fail("must be a path label other than \"none\" and \"unknown\"");
  }
  return s;
}

std::string tap_interface_of(const Value& v) {
  const std::string& s = v.string();
  if (s.empty() || s.size() >= IFNAMSIZ) v.fail("must be an interface name (1 to 15 characters)");
  return s;
}

Encap encap_of(const Value& v) {
  const std::string& s = v.string();
  if (s == "clear") return Encap::Clear;
  if (s == "esp") return Encap::Esp;
  v.fail("must be clear or esp");
}

EspTransform transform_of(const Value& v) {
  const auto t = EspTransform::preset(v.string());
  if (!t) v.fail(std::string("must be one of ") + kTransforms);
  return *t;
}

std::int64_t window_ns_of(const Value& v) {
  return v.integer(-kMaxWindowUs, kMaxWindowUs) * 1000;
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

TapSpec parse_tap_flag(const std::string& flag, const std::string& text) {
  const auto f = split_fields(flag, text);
  constexpr const char* kForm =
      "must be IFACE:PATH:clear or "
      "IFACE:PATH:esp:LOCAL:REMOTE[:TRANSFORM[:LO_US:HI_US[:REV_LO_US:REV_HI_US]]]";
  if (f.size() < 3) throw ConfigError("", flag, text, kForm);
  // Each field is read like the file's key of the same name; errors name the flag and the field.
  auto field = [&flag](const std::string& s) {
    Value v;
    v.text = s;
    v.where = flag;
    return v;
  };
  TapSpec spec;
  spec.interface = tap_interface_of(field(f[0]));
  spec.path = path_label_of(field(f[1]));
  spec.encap = encap_of(field(f[2]));
  if (spec.encap == Encap::Clear) {
    if (f.size() != 3) throw ConfigError("", flag, text, kForm);
    return spec;
  }
  if (f.size() != 5 && f.size() != 6 && f.size() != 8 && f.size() != 10) {
    throw ConfigError("", flag, text, kForm);
  }
  spec.local_endpoint = address_of(field(f[3]));
  spec.remote_endpoint = address_of(field(f[4]));
  if (f.size() >= 6 && !f[5].empty() && f[5] != "learn") spec.transform = transform_of(field(f[5]));
  if (f.size() >= 8) {
    spec.window_lo_ns = window_ns_of(field(f[6]));
    spec.window_hi_ns = window_ns_of(field(f[7]));
  }
  if (f.size() == 10) {
    spec.rev_window_lo_ns = window_ns_of(field(f[8]));
    spec.rev_window_hi_ns = window_ns_of(field(f[9]));
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

}  // namespace pathsentry::probe
