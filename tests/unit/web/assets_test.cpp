#include "pathsentry/web/assets.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>
#include <string>

// PS_WEB_DIST: the bundle this build embedded (<build>/web/dist), set by tests/CMakeLists.txt.
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

using pathsentry::web::find_asset;

// The embedded bytes are the bundle's, byte for byte (the HTML holds UTF-8: bytes ≥ 0x80).
TEST_CASE("every file of the bundle is embedded byte for byte", "[unit][web]") {
  const std::string dist = PS_WEB_DIST;
  for (const char* f : {"index.html", "assets/app.js", "assets/app.css"}) {
    INFO(f);
    const auto a = find_asset(std::string("/") + f);
    REQUIRE(a.has_value());
    CHECK(a->body == slurp(dist + "/" + f));
  }
  const auto html = find_asset("/index.html");
  REQUIRE(html.has_value());
  CHECK(html->body.find("\xE2\x80\xA6") != std::string_view::npos);  // "…"
}

TEST_CASE("/ is the page, with content types and ETags", "[unit][web]") {
  const auto root = find_asset("/");
  const auto index = find_asset("/index.html");
  REQUIRE(root.has_value());
  REQUIRE(index.has_value());
  CHECK(root->body == index->body);
  CHECK(root->content_type == "text/html; charset=utf-8");
  CHECK(root->body.find("<title>pathsentry</title>") != std::string_view::npos);
  CHECK(find_asset("/assets/app.js")->content_type == "text/javascript; charset=utf-8");
  CHECK(find_asset("/assets/app.css")->content_type == "text/css; charset=utf-8");
  // Strong ETags, quoted, one per content.
  std::set<std::string_view> tags;
  for (const char* p : {"/", "/assets/app.js", "/assets/app.css"}) {
    const auto a = find_asset(p);
    REQUIRE(a.has_value());
    CHECK(std::regex_match(std::string(a->etag), std::regex("\"[0-9a-f]{20}\"")));
    tags.insert(a->etag);
  }
  CHECK(tags.size() == 3);
  // A query or fragment does not change the file.
  CHECK(find_asset("/?since=1")->body == root->body);
  CHECK(find_asset("/assets/app.js?v=2")->etag == find_asset("/assets/app.js")->etag);
  CHECK(find_asset("#x")->body == root->body);
}

// What the page loads is embedded: every assets/… the HTML names.
TEST_CASE("the page's references resolve to embedded files", "[unit][web]") {
  const auto index = find_asset("/");
  REQUIRE(index.has_value());
  const std::string html(index->body);
  const std::regex ref(R"re((?:src|href)="([^"]+)")re");
  int assets = 0;
  for (std::sregex_iterator it(html.begin(), html.end(), ref), end; it != end; ++it) {
    const std::string url = (*it)[1];
    INFO(url);
    if (url.rfind("data:", 0) == 0) continue;
    CHECK(url.find("//") == std::string::npos);  // nothing from another host
    CHECK(find_asset("/" + url).has_value());
    ++assets;
  }
  CHECK(assets == 2);
}

TEST_CASE("unknown paths are not found", "[unit][web]") {
  CHECK_FALSE(find_asset("/nope").has_value());
  CHECK_FALSE(find_asset("/assets/").has_value());
  CHECK_FALSE(find_asset("/assets/../index.html").has_value());
  CHECK_FALSE(find_asset("index.html").has_value());
  CHECK_FALSE(find_asset("/api/v1/targets").has_value());
  CHECK_FALSE(find_asset("/INDEX.HTML").has_value());
}
