#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pathsentry::collector {

class Subscription;

/// One HTTP request as the handler sees it: what the server read, without the socket (so the
/// handler is a function of its request and the tests build requests by hand). Header names
/// are the few the handler reads; the server copies them from the wire.
struct Request {
  std::string method;         ///< "GET", "POST", …
  std::string target;         ///< path and query as sent: "/api/v1/events?since=…"
  std::string authorization;  ///< the Authorization header ("" when absent)
  std::string last_event_id;  ///< the Last-Event-ID header (SSE resume)
  std::string content_type;
  std::string body;
  std::string source;  ///< the peer's address over TCP ("" over a Unix socket)
};

/// The handler's answer. A normal answer is status + headers + body. A stream answer (the
/// SSE endpoint) carries `stream`: the server writes the head, then `body` (the first
/// messages: catch-up and current states), then what the subscription receives, until the
/// client goes or the subscription is dropped.
struct Response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  ///< extra: Retry-After, Allow, …
  std::shared_ptr<Subscription> stream;                      ///< set for text/event-stream

  /// `{"error":"<message>"}` with this status.
  [[nodiscard]] static Response error(unsigned status, std::string_view message);
  /// A JSON body with status 200.
  [[nodiscard]] static Response json(std::string body);
};

/// One route's handler: any thread, must not block on the socket (there is none).
using RouteFn = std::function<Response(const Request&)>;

/// The path of a request target (before '?').
[[nodiscard]] std::string_view path_of(std::string_view target);
/// The query of a request target (after '?', "" when none).
[[nodiscard]] std::string_view query_of(std::string_view target);

}  // namespace pathsentry::collector
