#include "pathsentry/web/assets.h"

#include "embedded.h"

namespace pathsentry::web {

std::optional<Asset> find_asset(std::string_view path) {
  if (const auto cut = path.find_first_of("?#"); cut != std::string_view::npos) {
    path = path.substr(0, cut);
  }
  if (path.empty() || path == "/") path = "/index.html";
  for (const auto& f : detail::embedded_files()) {
    if (f.path == path) return f.asset;
  }
  return std::nullopt;
}

}  // namespace pathsentry::web
