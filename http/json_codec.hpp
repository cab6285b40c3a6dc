#pragma once
/// JSON in and out for the HTTP API: decoding validates everything (types, ranges, unknown
/// fields, UTF-8) and reports every problem with the field it concerns; nothing invalid gets
/// past this point to an actor.

#include "core/model.hpp"

#include <nlohmann/json_fwd.hpp>

#include <optional>
#include <string>

namespace emporium::http::codec {

nlohmann::json to_json(const model::product& p);
std::string encode(const model::product& p);
std::string encode(const model::product_page& page);

/// The body of POST /products.
result<model::product_draft> decode_product_draft(const std::string& body);

/// The body of PATCH /products/{id}: at least one field.
result<model::product_patch> decode_product_patch(const std::string& body);

/// An opaque page cursor for "after this id", and back. Decoding fails on anything this server
/// did not produce.
std::string encode_cursor(const std::string& after_id);
std::optional<std::string> decode_cursor(const std::string& cursor, std::string_view id_prefix);

/// The ETag of a product version, and the version in an If-Match / If-None-Match value.
std::string etag(std::int64_t version);
std::optional<std::int64_t> version_of_etag(std::string_view tag);

} // namespace emporium::http::codec
