#include "listen.h"

#include <boost/asio/ip/address.hpp>
#include <charconv>

#include "pathsentry/collector/server.h"

namespace pathsentry::collector {

namespace net = boost::asio;
using tcp = net::ip::tcp;

tl::expected<tcp::endpoint, std::string> parse_listen(const std::string& text) {
  const std::string form = "must be ADDR:PORT or [V6ADDR]:PORT";
  std::string host;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return tl::unexpected(form);
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos) return tl::unexpected(form);
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  boost::system::error_code ec;
  const auto addr = net::ip::make_address(host, ec);
  if (ec) return tl::unexpected("'" + host + "' is not an IPv4 or IPv6 address");
  unsigned p = 0;
  const auto [ptr, perr] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (port.empty() || perr != std::errc{} || ptr != port.data() + port.size() || p > 65535) {
    return tl::unexpected(std::string("the port must be 0..65535"));
  }
  return tcp::endpoint{addr, static_cast<unsigned short>(p)};
}

std::optional<std::string> listen_error(const std::string& text) {
  auto e = parse_listen(text);
  if (e) return std::nullopt;
  return e.error();
}

}  // namespace pathsentry::collector
