#include "http/request_conversion.hpp"

#include "http/problem.hpp"

#include <boost/asio/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>

namespace emporium::http {

namespace bhttp = boost::beast::http;

void apply_limits(beast_request_parser& parser, const config::http_settings& cfg) {
  parser.header_limit(static_cast<std::uint32_t>(cfg.header_limit));
  parser.body_limit(cfg.body_limit);
}

parse_step feed_parser(beast_request_parser& parser, boost::beast::flat_buffer& buffer,
                       std::size_t pending_limit, boost::beast::error_code& ec) {
  ec = {};
  while (buffer.size() > 0 && !parser.is_done()) {
    auto used = parser.put(buffer.data(), ec);
    buffer.consume(used);
    if (ec == bhttp::error::need_more) {
      ec = {};
      break;
    }
    if (ec)
      return parse_step::failed;
    if (used == 0)
      break; // nothing taken and nothing wrong: wait for more bytes
  }
  if (parser.is_done())
    return parse_step::done;
  if (parser.is_header_done() && buffer.size() > pending_limit) {
    ec = bhttp::error::bad_chunk;
    return parse_step::failed;
  }
  return parse_step::need_more;
}

std::optional<response> read_error_answer(boost::beast::error_code ec, bool started,
                                          const config::http_settings& cfg) {
  namespace asio_error = boost::asio::error;
  if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow)
    return problem(
      431, "the request header block exceeds " + std::to_string(cfg.header_limit) + " bytes");
  if (ec == bhttp::error::body_limit)
    return problem(413, "the request body exceeds " + std::to_string(cfg.body_limit) + " bytes");
  if (ec == bhttp::error::bad_chunk)
    return problem(400,
                   "the chunked body is not valid: each chunk's size line and the trailer "
                   "must be well formed and at most "
                     + std::to_string(cfg.header_limit) + " bytes");
  if (ec == boost::beast::error::timeout || ec == bhttp::error::end_of_stream
      || ec == asio_error::operation_aborted || ec == asio_error::connection_reset
      || ec == asio_error::eof || !started)
    return std::nullopt;
  return problem(400, "the request is not valid HTTP/1.1: " + ec.message());
}

request to_request(beast_request&& in, const std::string& remote) {
  request out;
  out.method = std::string{in.method_string()};
  out.target = std::string{in.target()};
  for (const auto& field : in) {
    std::string name{field.name_string()};
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    out.headers.emplace(std::move(name), std::string{field.value()});
  }
  out.body = std::move(in.body());
  out.remote = remote;
  return out;
}

std::string method_label(std::string_view method) {
  for (std::string_view known : {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
    if (method == known)
      return std::string{method};
  return "other";
}

} // namespace emporium::http
