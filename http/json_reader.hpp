#pragma once
/// Reading validated fields out of a JSON object: every problem is collected with the field it
/// concerns, so one answer names them all. Shared by the codecs of http/.

#include "core/model.hpp"

#include <nlohmann/json.hpp>

#include <initializer_list>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace emporium::http {

using json = nlohmann::json;

/// `j` as compact text; invalid UTF-8 in strings is replaced, never thrown on.
inline std::string dump_json(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

/// True when `s` holds a C0 control character or DEL; with `multiline`, tab, line feed and
/// carriage return are allowed.
inline bool has_control_chars(std::string_view s, bool multiline = false) {
  for (unsigned char c : s) {
    if (c >= 0x20 && c != 0x7f)
      continue;
    if (multiline && (c == '\t' || c == '\n' || c == '\r'))
      continue;
    return true;
  }
  return false;
}

/// Collects field errors while reading one object.
class reader {
 public:
  explicit reader(const json& obj) : obj_(obj) {}

  std::vector<field_error>& errors() { return errors_; }

  explicit reader(const json& obj, std::string prefix) : obj_(obj), prefix_(std::move(prefix)) {}

  void reject_unknown(std::initializer_list<const char*> known) {
    std::set<std::string> allowed(known.begin(), known.end());
    for (auto it = obj_.begin(); it != obj_.end(); ++it)
      if (!allowed.count(it.key()))
        fail(it.key(), "is not a known field");
  }

  const json* find(const char* field) const {
    auto it = obj_.find(field);
    return it == obj_.end() ? nullptr : &*it;
  }

  /// A string field of `min` to `max` characters. Control characters (C0 and DEL) are refused:
  /// a NUL would cut the value in PostgreSQL and the others are never typed by a human; only a
  /// `multiline` field (a description) may hold tabs and line breaks.
  std::optional<std::string> text(const char* field, std::size_t min, std::size_t max,
                                  bool required, bool multiline = false) {
    auto* v = find(field);
    if (!v) {
      if (required)
        fail(field, "is required");
      return std::nullopt;
    }
    if (!v->is_string()) {
      fail(field, "must be a string");
      return std::nullopt;
    }
    auto s = v->get<std::string>();
    auto chars = utf8_length(s);
    if (chars < min || chars > max) {
      fail(field,
           "must be " + std::to_string(min) + " to " + std::to_string(max) + " characters long");
      return std::nullopt;
    }
    if (has_control_chars(s, multiline)) {
      fail(field, multiline ? "must not contain control characters other than tab and line breaks"
                            : "must not contain control characters");
      return std::nullopt;
    }
    if (min > 0 && s.find_first_not_of(" \t\r\n") == std::string::npos) {
      fail(field, "must not be blank");
      return std::nullopt;
    }
    return s;
  }

  std::optional<std::int64_t> integer(const char* field, std::int64_t min, std::int64_t max,
                                      bool required) {
    auto* v = find(field);
    if (!v) {
      if (required)
        fail(field, "is required");
      return std::nullopt;
    }
    if (!v->is_number_integer()) {
      fail(field, "must be an integer");
      return std::nullopt;
    }
    if (v->is_number_unsigned() && v->get<std::uint64_t>() > static_cast<std::uint64_t>(max)) {
      fail(field, "must be between " + std::to_string(min) + " and " + std::to_string(max));
      return std::nullopt;
    }
    auto x = v->get<std::int64_t>();
    if (x < min || x > max) {
      fail(field, "must be between " + std::to_string(min) + " and " + std::to_string(max));
      return std::nullopt;
    }
    return x;
  }

  void fail(std::string field, std::string message) {
    errors_.push_back({prefix_ + field, std::move(message)});
  }

  /// Errors found by a reader of a nested object (already prefixed).
  void absorb(std::vector<field_error> more) {
    for (auto& e : more)
      errors_.push_back(std::move(e));
  }

  static std::size_t utf8_length(const std::string& s) {
    std::size_t n = 0;
    for (unsigned char c : s)
      n += (c & 0xC0) != 0x80;
    return n;
  }

 private:
  const json& obj_;
  std::string prefix_;
  std::vector<field_error> errors_;
};

/// Parses `body` as a JSON object, or says why not.
inline std::optional<json> parse_object(const std::string& body, failure& f) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) {
    f = failure{errc::invalid_input, "the body is not valid JSON (UTF-8)", {}};
    return std::nullopt;
  }
  if (!j.is_object()) {
    f = failure{errc::invalid_input, "the body must be a JSON object", {}};
    return std::nullopt;
  }
  return j;
}

} // namespace emporium::http
