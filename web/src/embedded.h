#pragma once

#include <span>
#include <string_view>

#include "pathsentry/web/assets.h"

namespace pathsentry::web::detail {

/// A file of the bundle and the URL path it is served at ("/index.html", "/assets/app.js").
struct EmbeddedFile {
  std::string_view path;
  Asset asset;
};

/// Every embedded file, sorted by path; defined in the source web/cmake/embed.cmake generates.
[[nodiscard]] std::span<const EmbeddedFile> embedded_files();

}  // namespace pathsentry::web::detail
