#pragma once

#include <optional>
#include <string_view>

namespace pathsentry::web {

/// One file of the status page, embedded in the binary at build time (docs/web.md): the bundle
/// esbuild made from web/src. The views point at static storage: they live as long as the
/// program.
struct Asset {
  std::string_view body;
  std::string_view content_type;  ///< e.g. "text/html; charset=utf-8"
  std::string_view etag;          ///< strong ETag, quoted as HTTP sends it: "\"3f…\""
};

/// The page's file served at the URL path `path` ("/" and "/index.html" → index.html,
/// "/assets/app.js", "/assets/app.css"); a query or fragment is ignored. nullopt when no such
/// file is embedded (the caller answers 404).
[[nodiscard]] std::optional<Asset> find_asset(std::string_view path);

}  // namespace pathsentry::web
