#pragma once
// The listener address of the collector's server (private to the collector): parsed apart
// from the server so that the configuration's parser, which checks it, is built without
// Beast (fuzz/CMakeLists.txt).

#include <boost/asio/ip/tcp.hpp>
#include <string>
#include <tl/expected.hpp>

namespace pathsentry::collector {

/// An endpoint "ADDR:PORT" / "[V6]:PORT" (IP literals only: no name lookups at start); the
/// error says which form is taken.
[[nodiscard]] tl::expected<boost::asio::ip::tcp::endpoint, std::string> parse_listen(
    const std::string& text);

}  // namespace pathsentry::collector
