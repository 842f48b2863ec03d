#include "pathsentry/probe/ttl/ttl_config.h"

#include <algorithm>

#include "config_values.h"
#include "pathsentry/common/config_error.h"

namespace pathsentry::probe {

TtlHop ttl_hop_of_flag(const options::Value& v) {
  const std::string& text = v.string();
  const auto eq = text.rfind('=');
  if (eq == std::string::npos) v.fail("must be ADDR=PATH");
  std::string addr = text.substr(0, eq);
  if (addr.size() > 2 && addr.front() == '[' && addr.back() == ']') {
    addr = addr.substr(1, addr.size() - 2);
  }
  options::Value part = v;  // each part is read on its own; errors show that part
  TtlHop h;
  part.text = addr;
  h.address = address_of(part);
  part.text = text.substr(eq + 1);
  h.path = path_label_of(part);
  h.key = v.where;
  return h;
}

TtlHop ttl_hop_of_entry(const options::Value& v) {
  static constexpr std::string_view kPrefix = "ttl.hops.";
  options::Value addr = v;  // the address is the key's last part: an error shows it as the value
  addr.text = v.where.substr(kPrefix.size());
  addr.type = options::Value::Type::String;
  TtlHop h;
  h.address = address_of(addr);
  h.path = path_label_of(v);
  h.key = v.where;
  return h;
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

}  // namespace pathsentry::probe
