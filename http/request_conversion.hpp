#pragma once
/// What the server does with the bytes of one request before the gateway and the router see
/// it: the Beast parser with the server's limits, the answer to a request that failed to
/// parse, and the conversion of a parsed Beast request into the handlers' plain `request`.
/// Beast's HTTP parser only (no sockets, no Asio executors), so that http/session.cpp and the
/// HTTP request fuzzer (fuzz/http_request_fuzzer.cpp) run the same code.

#include "config/settings.hpp"
#include "http/message.hpp"

#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace emporium::http {

using beast_request = boost::beast::http::request<boost::beast::http::string_body>;
using beast_request_parser = boost::beast::http::request_parser<boost::beast::http::string_body>;

/// Sets the server's limits on a fresh parser: http.header_limit for the header block,
/// http.body_limit for the body.
void apply_limits(beast_request_parser& parser, const config::http_settings& cfg);

/// Where a request stands after the bytes read so far.
enum class parse_step {
  done,      ///< complete: the parser holds it
  need_more, ///< incomplete: everything buffered was taken (or is a header still arriving)
  failed     ///< not a request within the limits: `ec` says why
};

/// Feeds what `buffer` holds to `parser`, as often as the parser takes more, and consumes what
/// it took: what the session does after each read from its socket (a request that arrived
/// whole costs one read and this call). What is left in the buffer past a complete request is
/// the next one, pipelined.
///
/// Once the header is read, what the parser leaves in the buffer is a chunk's size line or the
/// trailer, not yet whole. Beast limits neither (its header and body limits do not count them),
/// so a client could make the buffer grow without end with one endless chunk extension: more
/// than `pending_limit` bytes of it fail as bad_chunk.
parse_step feed_parser(beast_request_parser& parser, boost::beast::flat_buffer& buffer,
                       std::size_t pending_limit, boost::beast::error_code& ec);

/// The answer to a request that could not be read, when there is one: 431 for a header block
/// over the limit, 413 for a body over the limit, 400 for a chunked body that is malformed or
/// whose size line or trailer is over the header limit, 400 for anything else that is not HTTP/1.1
/// once a request has begun (`started`). nullopt when there is nothing to answer: the client
/// left, or idled or trickled past its timeout, or nothing of a request had arrived.
std::optional<response> read_error_answer(boost::beast::error_code ec, bool started,
                                          const config::http_settings& cfg);

/// Turns a parsed Beast request into the handlers' plain request: method and target as sent,
/// header names lower-case (a repeated header stays repeated, in order), the body, and the
/// peer address `remote`. Path and query are left to the gateway (parse_target).
request to_request(beast_request&& in, const std::string& remote);

/// The method as a metrics label: the known ones, else "other" (clients choose methods; the
/// label set must stay bounded).
std::string method_label(std::string_view method);

} // namespace emporium::http
