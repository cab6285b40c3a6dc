#pragma once
/// The live page's files (http/web/), embedded in the binary at build time (http/embed_web.cmake
/// generates their byte arrays), and the answers that serve them: `GET /` (index.html) and
/// `GET /assets/{name}`. No file is read at run time. No CAF and no Beast here.

#include "http/message.hpp"

#include <string_view>
#include <vector>

namespace emporium::http::web {

/// One embedded file.
struct asset {
  std::string_view name;         ///< its file name under http/web/, e.g. "app.js"
  std::string_view content_type; ///< from the extension, e.g. "text/javascript; charset=utf-8"
  std::string_view etag;         ///< strong, quoted: the first 32 hex digits of its SHA-256
  std::string_view bytes;
};

/// Every embedded file, sorted by name (generated).
const std::vector<asset>& assets();

/// The file named `name`, or nullptr.
const asset* find(std::string_view name);

/// The page's document; its scripts and styles are under /assets/.
inline constexpr std::string_view index_name = "index.html";

/// What the HTML says the browser may load: only this origin's scripts, styles, images (and
/// data: images), connections (fetch, WebSocket, EventSource); no plugins, no framing, no forms
/// posted anywhere, no <base>.
inline constexpr std::string_view content_security_policy =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
  "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The names are not fingerprinted (app.js stays app.js across releases), so a browser may keep
/// a copy but must revalidate it on every use: with the ETag that costs one 304, and a new
/// release is picked up at once, never an old module next to a new one.
inline constexpr std::string_view cache_control = "no-cache";

/// True when the If-None-Match value `list` names `etag` (or is `*`). Weak comparison, as
/// RFC 9110 asks for If-None-Match: W/"x" matches "x".
bool etag_matches(std::string_view list, std::string_view etag);

/// The answer to a GET or HEAD of `a` (the router drops the body of a HEAD): 200 with the bytes,
/// or 304 when `if_none_match` names its ETag; both with ETag, Cache-Control and, on HTML, the
/// Content-Security-Policy; always X-Content-Type-Options and Referrer-Policy.
response serve(const asset& a, std::string_view if_none_match);

} // namespace emporium::http::web
