#include "config/settings.hpp"

#include "config/net_address.hpp"

#include <toml++/toml.h>
#include <unistd.h>  // environ

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <string_view>
#include <type_traits>

namespace emporium::config {
namespace {

constexpr std::string_view env_prefix = "EMPORIUM_";
constexpr std::string_view test_env_prefix = "EMPORIUM_TEST_";

/// EMPORIUM_<SECTION>_ for every configuration section, and the short names of DESIGN.md.
bool in_config_namespace(std::string_view name) {
  for (std::string_view prefix :
       {"EMPORIUM_HTTP_", "EMPORIUM_POSTGRES_", "EMPORIUM_REDIS_", "EMPORIUM_AUTH_",
        "EMPORIUM_CLUSTER_", "EMPORIUM_RATE_", "EMPORIUM_ACTORS_", "EMPORIUM_LOG_",
        "EMPORIUM_ADMIN_", "EMPORIUM_NODE_", "EMPORIUM_PEERS", "EMPORIUM_PG_URL"})
    if (name.substr(0, prefix.size()) == prefix)
      return true;
  return false;
}

/// Why one value was rejected. The caller knows where the value came from and turns this into
/// a config_error that names the key and the origin.
class value_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// -- text helpers ------------------------------------------------------------------------------

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string_view trim(std::string_view v) {
  while (!v.empty() && is_space(v.front())) v.remove_prefix(1);
  while (!v.empty() && is_space(v.back())) v.remove_suffix(1);
  return v;
}

std::string lower(std::string_view v) {
  std::string out(v);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string upper(std::string_view v) {
  std::string out(v);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

/// A value echoed in an error message: quoted, kept on one line, and not too long. Only ever
/// used for values that are not secrets.
std::string shown(std::string_view v) {
  constexpr std::size_t max_shown = 60;
  std::string out = "'";
  for (std::size_t i = 0; i < v.size() && i < max_shown; ++i) {
    const auto c = static_cast<unsigned char>(v[i]);
    out += (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
  }
  if (v.size() > max_shown) out += "...";
  out += "'";
  return out;
}

/// Error messages are one line whatever a library put into its text.
std::string single_line(std::string_view v) {
  std::string out(v);
  for (char& c : out)
    if (c == '\n' || c == '\r') c = ' ';
  return out;
}

std::string format_number(double d) {
  std::ostringstream out;
  out << d;
  return out.str();
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// -- conversions: one per member type, from text (environment, command line) and from TOML -------

const char* toml_type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    default: return "nothing";
  }
}

value_error wrong_type(const char* expected, const toml::node& n) {
  return value_error(std::string("expected ") + expected + ", got " + toml_type_name(n));
}

template <class T, class Enable = void>
struct conv;

template <class T>
struct conv<T, std::enable_if_t<std::is_integral_v<T>>> {
  static value_error out_of_range(std::string_view text, bool negative) {
    if (negative && std::is_unsigned_v<T>) return value_error(shown(text) + " must not be negative");
    return value_error(shown(text) + " is out of range " +
                       std::to_string(std::numeric_limits<T>::min()) + ".." +
                       std::to_string(std::numeric_limits<T>::max()));
  }

  static T checked(std::intmax_t v, std::string_view text) {
    if constexpr (std::is_unsigned_v<T>) {
      if (v < 0) throw out_of_range(text, true);
      if (static_cast<std::uintmax_t>(v) > std::numeric_limits<T>::max()) throw out_of_range(text, false);
    } else {
      if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max())
        throw out_of_range(text, v < 0);
    }
    return static_cast<T>(v);
  }

  static T from_string(std::string_view raw) {
    std::string_view text = trim(raw);
    std::string_view digits = text;
    const bool negative = !digits.empty() && digits.front() == '-';
    if (!digits.empty() && (digits.front() == '+' || digits.front() == '-')) digits.remove_prefix(1);
    if (digits.empty() || !std::all_of(digits.begin(), digits.end(),
                                       [](char c) { return c >= '0' && c <= '9'; }))
      throw value_error(shown(raw) + " is not an integer");
    std::uintmax_t magnitude = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude);
    if (ec != std::errc() || end != digits.data() + digits.size()) throw out_of_range(text, negative);
    if (negative) {
      if (magnitude == 0) return T{0};
      if (magnitude > static_cast<std::uintmax_t>(std::numeric_limits<std::intmax_t>::max()))
        throw out_of_range(text, true);
      return checked(-static_cast<std::intmax_t>(magnitude), text);
    }
    if (magnitude > static_cast<std::uintmax_t>(std::numeric_limits<T>::max()))
      throw out_of_range(text, false);
    return static_cast<T>(magnitude);
  }

  static T from_toml(const toml::node& n) {
    const auto* v = n.as_integer();
    if (v == nullptr) throw wrong_type("an integer", n);
    const std::int64_t i = v->get();
    return checked(i, std::to_string(i));
  }
};

template <>
struct conv<double> {
  static double finite(double d, std::string_view text) {
    if (!std::isfinite(d)) throw value_error(shown(text) + " is not a finite number");
    return d;
  }

  static double from_string(std::string_view raw) {
    const std::string_view text = trim(raw);
    double d = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), d);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size())
      throw value_error(shown(raw) + " is not a number");
    return finite(d, text);
  }

  static double from_toml(const toml::node& n) {
    if (const auto* f = n.as_floating_point()) return finite(f->get(), format_number(f->get()));
    if (const auto* i = n.as_integer()) return static_cast<double>(i->get());
    throw wrong_type("a number", n);
  }
};

template <>
struct conv<std::string> {
  static std::string from_string(std::string_view text) { return std::string(text); }

  static std::string from_toml(const toml::node& n) {
    const auto* s = n.as_string();
    if (s == nullptr) throw wrong_type("a string", n);
    return s->get();
  }
};

/// An empty text unsets an optional key (`EMPORIUM_NODE_PORT=` means single node). TOML has no
/// null: leaving the key out is how a file keeps it unset.
template <class T>
struct conv<std::optional<T>> {
  static std::optional<T> from_string(std::string_view text) {
    if (trim(text).empty()) return std::nullopt;
    return conv<T>::from_string(text);
  }

  static std::optional<T> from_toml(const toml::node& n) { return conv<T>::from_toml(n); }
};

/// Lists: comma-separated in text (blanks around items ignored, empty items dropped), arrays in TOML.
template <>
struct conv<std::vector<std::string>> {
  static std::vector<std::string> from_string(std::string_view text) {
    std::vector<std::string> out;
    while (true) {
      const auto comma = text.find(',');
      const auto item = trim(text.substr(0, comma));
      if (!item.empty()) out.emplace_back(item);
      if (comma == std::string_view::npos) break;
      text.remove_prefix(comma + 1);
    }
    return out;
  }

  static std::vector<std::string> from_toml(const toml::node& n) {
    const auto* array = n.as_array();
    if (array == nullptr) throw wrong_type("an array of strings", n);
    std::vector<std::string> out;
    for (std::size_t i = 0; i < array->size(); ++i) {
      const auto* s = (*array)[i].as_string();
      if (s == nullptr)
        throw value_error("element " + std::to_string(i) + ": expected a string, got " +
                          toml_type_name((*array)[i]));
      out.push_back(s->get());
    }
    return out;
  }
};

/// Amounts per currency: `USD=10000,EUR=9000` in text, an inline table in TOML.
template <>
struct conv<std::map<std::string, std::int64_t>> {
  static std::map<std::string, std::int64_t> from_string(std::string_view text) {
    std::map<std::string, std::int64_t> out;
    for (const auto& item : conv<std::vector<std::string>>::from_string(text)) {
      const auto eq = item.find('=');
      if (eq == std::string::npos)
        throw value_error("expected CURRENCY=amount items, got " + shown(item));
      out[std::string(trim(std::string_view(item).substr(0, eq)))] =
          conv<std::int64_t>::from_string(std::string_view(item).substr(eq + 1));
    }
    return out;
  }

  static std::map<std::string, std::int64_t> from_toml(const toml::node& n) {
    const auto* table = n.as_table();
    if (table == nullptr) throw wrong_type("a table of CURRENCY = amount", n);
    std::map<std::string, std::int64_t> out;
    for (const auto& [k, v] : *table) {
      try {
        out[std::string(k.str())] = conv<std::int64_t>::from_toml(v);
      } catch (const value_error& e) {
        throw value_error(std::string(k.str()) + ": " + e.what());
      }
    }
    return out;
  }
};

/// The shipping rate table lives in TOML only ([[shipping.zones]] with name, countries, rates).
template <>
struct conv<std::vector<shipping_zone>> {
  static std::vector<shipping_zone> from_string(std::string_view) {
    throw value_error("shipping zones can only be set in the TOML file ([[shipping.zones]])");
  }

  static std::vector<shipping_zone> from_toml(const toml::node& n) {
    const auto* array = n.as_array();
    if (array == nullptr) throw wrong_type("an array of tables ([[shipping.zones]])", n);
    std::vector<shipping_zone> zones;
    for (std::size_t i = 0; i < array->size(); ++i) {
      const auto* t = (*array)[i].as_table();
      const std::string at = "zone " + std::to_string(i);
      if (t == nullptr) throw value_error(at + ": expected a table");
      shipping_zone z;
      for (const auto& [k, v] : *t) {
        const std::string key(k.str());
        if (key == "name") z.name = conv<std::string>::from_toml(v);
        else if (key == "countries") z.countries = conv<std::vector<std::string>>::from_toml(v);
        else if (key == "rates") {
          const auto* rates = v.as_array();
          if (rates == nullptr) throw value_error(at + ": rates must be an array of tables");
          for (std::size_t r = 0; r < rates->size(); ++r) {
            const auto* rt = (*rates)[r].as_table();
            if (rt == nullptr) throw value_error(at + ": rates[" + std::to_string(r) + "] must be a table");
            shipping_rate rate;
            for (const auto& [rk, rv] : *rt) {
              if (rk.str() == "max_grams") rate.max_grams = conv<std::int64_t>::from_toml(rv);
              else rate.cents[std::string(rk.str())] = conv<std::int64_t>::from_toml(rv);
            }
            z.rates.push_back(std::move(rate));
          }
        } else {
          throw value_error(at + ": unknown key '" + key + "'");
        }
      }
      zones.push_back(std::move(z));
    }
    return zones;
  }
};

// -- the registry: every key once, with its environment name and both setters --------------------

struct field {
  std::string key;        ///< `section.member`
  std::string env;        ///< the environment variable
  std::string plain_env;  ///< EMPORIUM_<SECTION>_<MEMBER>, to hint when `env` differs from it
  std::function<void(settings&, std::string_view)> from_string;
  std::function<void(settings&, const toml::node&)> from_toml;
};

template <class Section, class T>
field make_field(std::string key, const char* env, Section settings::*section, T Section::*member) {
  std::string plain = std::string(env_prefix) + upper(key);
  std::replace(plain.begin(), plain.end(), '.', '_');
  std::string name = env != nullptr ? std::string(env) : plain;
  return field{std::move(key), std::move(name), std::move(plain),
               [section, member](settings& s, std::string_view text) {
                 (s.*section).*member = conv<T>::from_string(text);
               },
               [section, member](settings& s, const toml::node& n) {
                 (s.*section).*member = conv<T>::from_toml(n);
               }};
}

/// `EMPORIUM_CONFIG_KEY(http, port, nullptr)`: TOML key "http.port", environment
/// EMPORIUM_HTTP_PORT (a non-null third argument names the variable instead). The macro
/// keeps the key text and the member it sets from drifting apart.
#define EMPORIUM_CONFIG_KEY(section, member, env)                                              \
  make_field(#section "." #member, env, &settings::section, &decltype(settings::section)::member)

const std::vector<field>& registry() {
  static const std::vector<field> fields = [] {
    std::vector<field> f;
    f.push_back(EMPORIUM_CONFIG_KEY(http, host, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(http, port, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(http, threads, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(http, body_limit, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(http, header_limit, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(http, header_timeout_ms, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(http, idle_timeout_ms, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(http, request_timeout_ms, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(http, max_pipeline, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(http, max_connections, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(http, drain_timeout_ms, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(http, cors_origins, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(http, body_timeout_ms, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(http, max_connections_per_address, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(http, trusted_proxies, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(postgres, url, "EMPORIUM_PG_URL"));
    f.push_back(EMPORIUM_CONFIG_KEY(postgres, pool_size, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(postgres, connect_timeout_ms, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(postgres, statement_timeout_ms, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(postgres, breaker_threshold, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(postgres, breaker_open_ms, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(redis, url, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(redis, timeout_ms, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(redis, ttl_s, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(redis, breaker_threshold, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(redis, breaker_open_ms, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(auth, admin_key, "EMPORIUM_ADMIN_KEY"));
    f.push_back(EMPORIUM_CONFIG_KEY(cluster, node_port, "EMPORIUM_NODE_PORT"));
    f.push_back(EMPORIUM_CONFIG_KEY(cluster, peers, "EMPORIUM_PEERS"));
    f.push_back(EMPORIUM_CONFIG_KEY(rate_limit, capacity, "EMPORIUM_RATE_CAPACITY"));
    f.push_back(EMPORIUM_CONFIG_KEY(rate_limit, refill_per_s, "EMPORIUM_RATE_REFILL"));
    f.push_back(EMPORIUM_CONFIG_KEY(rate_limit, mode, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(rate_limit, read_capacity, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(rate_limit, read_refill_per_s, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(rate_limit, write_capacity, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(rate_limit, write_refill_per_s, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(rate_limit, login_capacity, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(rate_limit, login_refill_per_s, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(rate_limit, redis_timeout_ms, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(rate_limit, max_buckets, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(rate_limit, signup_capacity, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(rate_limit, signup_refill_per_s, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(actors, scheduler_threads, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(actors, idle_timeout_s, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(auth, session_ttl_s, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(auth, signup_workers, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(auth, login_workers, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(auth, signup_queue_limit, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(auth, login_queue_limit, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(orders, payment_timeout_s, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(orders, max_lines, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(orders, max_open_unpaid_per_customer, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(orders, max_units_per_line, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(carts, ttl_s, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(retention, interval_s, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(retention, batch_size, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(retention, expired_grace_h, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(retention, idempotency_keys_h, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(retention, events_h, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(loyalty, silver_points, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(loyalty, gold_points, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(shipping, free_above_cents, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(shipping, default_country, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(shipping, zones, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(log, level, nullptr));
    return f;
  }();
  return fields;
}

#undef EMPORIUM_CONFIG_KEY

const field* find_key(std::string_view key) {
  for (const auto& f : registry())
    if (f.key == key) return &f;
  return nullptr;
}

const field* find_env(std::string_view name) {
  for (const auto& f : registry())
    if (f.env == name) return &f;
  return nullptr;
}

bool is_section(std::string_view name) {
  for (const auto& f : registry())
    if (std::string_view(f.key).substr(0, f.key.find('.')) == name) return true;
  return false;
}

/// " (did you mean 'http.port'?)" when a known key is a likely typo of `unknown`, else "".
std::string key_hint(std::string_view unknown) {
  const field* best = nullptr;
  std::size_t best_distance = 3;
  for (const auto& f : registry()) {
    const auto d = edit_distance(unknown, f.key);
    if (d < best_distance) best = &f, best_distance = d;
  }
  return best != nullptr ? " (did you mean '" + best->key + "'?)" : std::string();
}

std::string section_hint(std::string_view unknown) {
  for (const auto& f : registry()) {
    const std::string_view section = std::string_view(f.key).substr(0, f.key.find('.'));
    if (edit_distance(unknown, section) <= 2) return " (did you mean [" + std::string(section) + "]?)";
  }
  return {};
}

std::string env_hint(std::string_view unknown) {
  for (const auto& f : registry())
    if (f.plain_env == unknown && f.env != unknown) return " (did you mean " + f.env + "?)";
  const field* best = nullptr;
  std::size_t best_distance = 3;
  for (const auto& f : registry()) {
    const auto d = edit_distance(unknown, f.env);
    if (d < best_distance) best = &f, best_distance = d;
  }
  return best != nullptr ? " (did you mean " + best->env + "?)" : std::string();
}

// -- TOML -----------------------------------------------------------------------------------------

std::string where(const std::string& origin, const toml::source_region& region) {
  std::string out = "in " + (origin.empty() ? std::string("<toml>") : origin);
  if (region.begin.line > 0)
    out += " at line " + std::to_string(region.begin.line) + ", column " +
           std::to_string(region.begin.column);
  return out;
}

// -- URLs -----------------------------------------------------------------------------------------

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] != '%') {
      out += v[i];
      continue;
    }
    if (i + 2 >= v.size()) return std::nullopt;
    const int hi = hex_value(v[i + 1]);
    const int lo = hex_value(v[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

std::uint16_t default_port(std::string_view scheme) {
  if (scheme == "postgresql" || scheme == "postgres") return 5432;
  if (scheme == "redis") return 6379;
  return 0;
}

bool valid_scheme(std::string_view s) {
  if (s.empty() || !std::isalpha(static_cast<unsigned char>(s.front()))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.';
  });
}

bool valid_host_name(std::string_view h) {
  return !h.empty() && std::all_of(h.begin(), h.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
  });
}

/// An IPv6 literal without its brackets, with an optional zone (`fe80::1%eth0`).
bool valid_ipv6_literal(std::string_view h) {
  const auto percent = h.find('%');
  const std::string_view address = h.substr(0, percent);
  const std::string_view zone =
      percent == std::string_view::npos ? std::string_view() : h.substr(percent + 1);
  if (percent != std::string_view::npos && !valid_host_name(zone)) return false;
  return address.find(':') != std::string_view::npos &&
         std::all_of(address.begin(), address.end(), [](char c) {
           return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
         });
}

/// A port in 1..65535 written as plain digits, else nothing.
std::optional<std::uint16_t> parse_port(std::string_view text) {
  if (text.empty() || text.size() > 5 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  unsigned value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  if (value == 0 || value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

/// Splits `host:port` or `[v6]:port`; nothing when it is not of that shape.
std::optional<std::pair<std::string, std::uint16_t>> parse_host_port(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  std::string_view host = text.substr(0, colon);
  const auto port = parse_port(text.substr(colon + 1));
  if (!port) return std::nullopt;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    if (!valid_ipv6_literal(host)) return std::nullopt;
  } else if (!valid_host_name(host)) {
    return std::nullopt;
  }
  return std::make_pair(std::string(host), *port);
}

// -- validation helpers ---------------------------------------------------------------------------

template <class T>
void require_between(const char* key, T value, T lo, T hi, const char* unit = "") {
  if (value < lo || value > hi)
    throw config_error("config: " + std::string(key) + " must be between " + std::to_string(lo) +
                       " and " + std::to_string(hi) + unit + ", got " + std::to_string(value));
}

void require_positive(const char* key, long long value) {
  if (value <= 0)
    throw config_error("config: " + std::string(key) + " must be greater than 0, got " +
                       std::to_string(value));
}

} // namespace

// -- public functions -------------------------------------------------------------------------------

std::string redact_url(const std::string& url) {
  std::string out = url;
  // user:password@ — the last '@' after the scheme ends the user info. Taking the last one over-
  // redacts when an '@' appears later in the query, which is the safe side to err on.
  const auto sep = out.find("://");
  const std::size_t start = sep == std::string::npos ? 0 : sep + 3;
  const auto at = out.rfind('@');
  if (at != std::string::npos && at >= start) {
    const auto colon = out.find(':', start);
    if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
  }
  // password=... as a query parameter (libpq accepts it) or in a key=value connection string.
  static constexpr std::string_view marker = "password=";
  std::size_t from = 0;
  while (true) {
    const std::string low = lower(out);
    const auto pos = low.find(marker, from);
    if (pos == std::string::npos) break;
    const auto value_begin = pos + marker.size();
    auto value_end = out.find_first_of("& \t", value_begin);
    if (value_end == std::string::npos) value_end = out.size();
    out.replace(value_begin, value_end - value_begin, "***");
    from = value_begin + 3;
  }
  return out;
}

url_parts parse_url(const std::string& key, const std::string& url,
                    const std::vector<std::string>& schemes) {
  std::string expected;
  for (const auto& s : schemes) expected += (expected.empty() ? "" : " or ") + s + "://";
  if (expected.empty()) expected = "scheme://";

  const auto sep = url.find("://");
  // Without a scheme the text may be a key=value connection string holding a password: not echoed.
  if (sep == std::string::npos || !valid_scheme(std::string_view(url).substr(0, sep)))
    throw config_error("config: " + key + ": not a URL, expected " + expected +
                       "[user[:password]@]host[:port][/path][?query]");

  const std::string redacted = redact_url(url);
  auto fail = [&](const std::string& why) {
    std::string hint;
    // An unencoded '/' or '?' in a password cuts the authority short; say so, without echoing.
    const auto authority_end = url.find_first_of("/?", sep + 3);
    if (authority_end != std::string::npos && url.find('@', authority_end) != std::string::npos)
      hint = " (characters such as '/', '?', '@' and ':' in a user or password must be percent-encoded)";
    return config_error("config: " + key + ": " + why + " in URL " + shown(redacted) + hint);
  };

  url_parts p;
  p.scheme = lower(std::string_view(url).substr(0, sep));
  if (!schemes.empty() && std::find(schemes.begin(), schemes.end(), p.scheme) == schemes.end())
    throw fail("scheme '" + p.scheme + "' is not " + expected);

  std::string_view rest = std::string_view(url).substr(sep + 3);
  const auto authority_end = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, authority_end);
  std::string_view tail =
      authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);

  if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = authority.substr(0, at);
    authority.remove_prefix(at + 1);
    const auto colon = userinfo.find(':');
    auto user = percent_decode(userinfo.substr(0, colon));
    if (!user) throw fail("bad percent-encoding in the user name");
    p.user = std::move(*user);
    if (colon != std::string_view::npos) {
      auto password = percent_decode(userinfo.substr(colon + 1));
      if (!password) throw fail("bad percent-encoding in the password");
      p.password = std::move(*password);
    }
  }

  std::string_view port_text;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) throw fail("unterminated '[' in the host");
    const std::string_view host = authority.substr(1, close - 1);
    if (!valid_ipv6_literal(host)) throw fail("bad IPv6 host");
    p.host = std::string(host);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') throw fail("unexpected text after the host");
      has_port = true;
      port_text = after.substr(1);
    }
  } else {
    const auto colon = authority.find(':');
    p.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      has_port = true;
      port_text = authority.substr(colon + 1);
    }
    if (p.host.empty()) throw fail("empty host");
    if (!valid_host_name(p.host)) throw fail("bad host");
  }

  if (has_port) {
    const auto port = parse_port(port_text);
    if (!port) throw fail("bad port (expected 1..65535)");
    p.port = *port;
  } else {
    p.port = default_port(p.scheme);
  }

  if (!tail.empty() && tail.front() == '/') {
    tail.remove_prefix(1);
    const auto q = tail.find('?');
    p.path = std::string(tail.substr(0, q));
    tail = q == std::string_view::npos ? std::string_view() : tail.substr(q);
  }
  if (!tail.empty() && tail.front() == '?') p.query = std::string(tail.substr(1));
  return p;
}

void apply_toml_text(settings& s, const std::string& text, const std::string& origin) {
  const std::string name = origin.empty() ? std::string("<toml>") : origin;
  toml::table root;
  try {
    root = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    throw config_error("config: TOML syntax error " + where(name, e.source()) + ": " +
                       single_line(e.description()));
  }

  settings next = s;  // all or nothing: a bad key leaves `s` as it was
  for (const auto& [section_key, section_node] : root) {
    const std::string section(section_key.str());
    if (!is_section(section)) {
      if (section_node.is_table())
        throw config_error("config: unknown section '" + section + "' " +
                           where(name, section_key.source()) + section_hint(section));
      throw config_error("config: unknown key '" + section + "' " + where(name, section_key.source()) +
                         " (every key belongs in a section such as [http])");
    }
    const auto* table = section_node.as_table();
    if (table == nullptr)
      throw config_error("config: '" + section + "' " + where(name, section_key.source()) +
                         " must be a table ([" + section + "]), got " + toml_type_name(section_node));
    for (const auto& [member_key, node] : *table) {
      const std::string key = section + "." + std::string(member_key.str());
      const field* f = find_key(key);
      if (f == nullptr)
        throw config_error("config: unknown key '" + key + "' " + where(name, member_key.source()) +
                           key_hint(key));
      try {
        f->from_toml(next, node);
      } catch (const value_error& e) {
        throw config_error("config: " + key + " " + where(name, node.source()) + ": " + e.what());
      }
    }
  }
  s = std::move(next);
}

void apply_toml_file(settings& s, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw config_error("config: cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw config_error("config: cannot read " + path);
  apply_toml_text(s, text.str(), path);
}

void apply_environment(settings& s, const std::map<std::string, std::string>& env) {
  settings next = s;
  for (const auto& [name, value] : env) {
    if (name.compare(0, env_prefix.size(), env_prefix) != 0) continue;
    if (name.compare(0, test_env_prefix.size(), test_env_prefix) == 0) continue;
    const field* f = find_env(name);
    if (f == nullptr) {
      // Only names in a configuration section are ours to reject (a typo such as
      // EMPORIUM_HTTP_PROT); other EMPORIUM_* names belong to the scripts (EMPORIUM_BUILD_DIR...).
      if (!in_config_namespace(name))
        continue;
      throw config_error("config: unknown environment variable " + name + env_hint(name));
    }
    try {
      f->from_string(next, value);
    } catch (const value_error& e) {
      throw config_error("config: " + name + " (" + f->key + "): " + e.what());
    }
  }
  s = std::move(next);
}

std::map<std::string, std::string> process_environment() {
  std::map<std::string, std::string> out;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const auto eq = text.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view name = text.substr(0, eq);
    if (name.compare(0, env_prefix.size(), env_prefix) != 0) continue;
    out.emplace(std::string(name), std::string(text.substr(eq + 1)));
  }
  return out;
}

void apply_override(settings& s, const std::string& dotted_key, const std::string& value) {
  const field* f = find_key(dotted_key);
  if (f == nullptr)
    throw config_error("config: unknown key '" + dotted_key + "' on the command line" +
                       key_hint(dotted_key));
  try {
    f->from_string(s, value);  // parses fully before assigning: `s` is unchanged on error
  } catch (const value_error& e) {
    throw config_error("config: " + dotted_key + " (command line): " + e.what());
  }
}

void apply_assignment(settings& s, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos)
    throw config_error("config: --set expects section.key=value, got " +
                       shown(redact_url(assignment)));
  apply_override(s, std::string(trim(std::string_view(assignment).substr(0, eq))),
                 assignment.substr(eq + 1));
}

/// The HTTP gateway's keys: drain, CORS and the rate limiter's classes and modes.
static void validate_gateway(const settings& s) {
  require_positive("http.drain_timeout_ms", s.http.drain_timeout_ms);
  for (std::size_t i = 0; i < s.http.cors_origins.size(); ++i) {
    // An origin is scheme://host[:port], nothing after it: browsers send exactly that.
    const std::string& o = s.http.cors_origins[i];
    const auto sep = o.find("://");
    const bool ok = o == "*" || (sep != std::string::npos && valid_scheme(o.substr(0, sep)) &&
                                 o.find('/', sep + 3) == std::string::npos &&
                                 sep + 3 < o.size() && o.back() != ':');
    if (!ok)
      throw config_error("config: http.cors_origins[" + std::to_string(i) + "]: " + shown(o) +
                         " is not an origin (scheme://host[:port]) or \"*\"");
  }
  for (std::size_t i = 0; i < s.http.trusted_proxies.size(); ++i)
    if (!parse_cidr(trim(s.http.trusted_proxies[i])))
      throw config_error("config: http.trusted_proxies[" + std::to_string(i) + "]: " +
                         shown(s.http.trusted_proxies[i]) +
                         " is not an address or a CIDR block (192.0.2.0/24, 2001:db8::/32)");
  const auto& r = s.rate_limit;
  if (r.mode != "local" && r.mode != "redis")
    throw config_error("config: rate_limit.mode must be local or redis, got " + shown(r.mode));
  const auto capacity = [](const char* key, int v) {
    if (v < 1)
      throw config_error("config: " + std::string(key) + " must be at least 1, got " +
                         std::to_string(v));
  };
  const auto refill = [](const char* key, double v) {
    if (!(v > 0) || !std::isfinite(v))
      throw config_error("config: " + std::string(key) + " must be a number greater than 0, got " +
                         format_number(v));
  };
  if (r.read_capacity) capacity("rate_limit.read_capacity", *r.read_capacity);
  if (r.read_refill_per_s) refill("rate_limit.read_refill_per_s", *r.read_refill_per_s);
  if (r.write_capacity) capacity("rate_limit.write_capacity", *r.write_capacity);
  if (r.write_refill_per_s) refill("rate_limit.write_refill_per_s", *r.write_refill_per_s);
  capacity("rate_limit.login_capacity", r.login_capacity);
  refill("rate_limit.login_refill_per_s", r.login_refill_per_s);
  capacity("rate_limit.signup_capacity", r.signup_capacity);
  refill("rate_limit.signup_refill_per_s", r.signup_refill_per_s);
  require_between("rate_limit.redis_timeout_ms", r.redis_timeout_ms, 1, 10'000);
  require_between("rate_limit.max_buckets", r.max_buckets, 16, 100'000'000);
}

void validate(const settings& s) {
  if (s.http.host.empty()) throw config_error("config: http.host must not be empty");
  require_between("http.port", s.http.port, std::uint16_t{1}, std::uint16_t{65535});
  require_between("http.threads", s.http.threads, 1, 64);
  require_between<std::size_t>("http.body_limit", s.http.body_limit, 1, std::size_t{1} << 30,
                               " bytes (1 GiB)");
  require_between<std::size_t>("http.header_limit", s.http.header_limit, 1024, std::size_t{1} << 20,
                               " bytes (1 KiB..1 MiB)");
  require_positive("http.header_timeout_ms", s.http.header_timeout_ms);
  require_positive("http.idle_timeout_ms", s.http.idle_timeout_ms);
  require_positive("http.request_timeout_ms", s.http.request_timeout_ms);
  require_between("http.max_pipeline", s.http.max_pipeline, 1, 1024);
  if (s.http.max_connections)
    require_positive("http.max_connections", *s.http.max_connections);
  require_positive("http.max_connections_per_address", s.http.max_connections_per_address);
  require_positive("http.body_timeout_ms", s.http.body_timeout_ms);

  parse_url("postgres.url", s.postgres.url, {"postgresql", "postgres"});
  require_between("postgres.pool_size", s.postgres.pool_size, 1, 256);
  require_positive("postgres.connect_timeout_ms", s.postgres.connect_timeout_ms);
  require_positive("postgres.statement_timeout_ms", s.postgres.statement_timeout_ms);
  require_between("postgres.breaker_threshold", s.postgres.breaker_threshold, 1, 1000);
  require_positive("postgres.breaker_open_ms", s.postgres.breaker_open_ms);

  const auto redis = parse_url("redis.url", s.redis.url, {"redis"});
  if (!redis.path.empty() &&
      !std::all_of(redis.path.begin(), redis.path.end(), [](char c) { return c >= '0' && c <= '9'; }))
    throw config_error("config: redis.url: the path must be a database number, got " +
                       shown(redis.path));
  require_positive("redis.timeout_ms", s.redis.timeout_ms);
  require_positive("redis.ttl_s", s.redis.ttl_s);
  require_between("redis.breaker_threshold", s.redis.breaker_threshold, 1, 1000);
  require_positive("redis.breaker_open_ms", s.redis.breaker_open_ms);

  // The key itself is never echoed, only its length.
  if (s.auth.admin_key && s.auth.admin_key->size() < 16)
    throw config_error("config: auth.admin_key must be at least 16 characters, got " +
                       std::to_string(s.auth.admin_key->size()));

  if (s.cluster.node_port)
    require_between("cluster.node_port", *s.cluster.node_port, std::uint16_t{1}, std::uint16_t{65535});
  for (std::size_t i = 0; i < s.cluster.peers.size(); ++i)
    if (!parse_host_port(s.cluster.peers[i]))
      throw config_error("config: cluster.peers[" + std::to_string(i) + "]: " +
                         shown(s.cluster.peers[i]) + " is not host:port (port 1..65535)");
  // Peers connect to this node on its node port; without one it could not be reached back.
  if (!s.cluster.peers.empty() && !s.cluster.node_port)
    throw config_error("config: cluster.peers is set but cluster.node_port is not");

  if (s.rate_limit.capacity < 1)
    throw config_error("config: rate_limit.capacity must be at least 1, got " +
                       std::to_string(s.rate_limit.capacity));
  if (!(s.rate_limit.refill_per_s > 0) || !std::isfinite(s.rate_limit.refill_per_s))
    throw config_error("config: rate_limit.refill_per_s must be a number greater than 0, got " +
                       format_number(s.rate_limit.refill_per_s));
  validate_gateway(s);

  require_positive("auth.session_ttl_s", s.auth.session_ttl_s);
  require_between("auth.signup_workers", s.auth.signup_workers, 1, 64);
  require_between("auth.login_workers", s.auth.login_workers, 1, 64);
  require_between("auth.signup_queue_limit", s.auth.signup_queue_limit, 1, 100'000);
  require_between("auth.login_queue_limit", s.auth.login_queue_limit, 1, 100'000);
  require_positive("orders.payment_timeout_s", s.orders.payment_timeout_s);
  require_between("orders.max_lines", s.orders.max_lines, 1, 1000);
  require_between("orders.max_open_unpaid_per_customer", s.orders.max_open_unpaid_per_customer,
                  1, 10'000);
  require_between("orders.max_units_per_line", s.orders.max_units_per_line, 1, 1'000'000);
  require_positive("carts.ttl_s", s.carts.ttl_s);
  require_between("retention.interval_s", s.retention.interval_s, 1, 7 * 24 * 3600);
  require_between("retention.batch_size", s.retention.batch_size, 1, 100'000);
  require_between("retention.expired_grace_h", s.retention.expired_grace_h, 0, 24 * 365);
  // A client may retry a request for up to a day (DESIGN.md's Idempotency-Key rule): a key
  // deleted sooner would let a retry place a second order.
  require_between("retention.idempotency_keys_h", s.retention.idempotency_keys_h, 24, 24 * 365);
  require_between("retention.events_h", s.retention.events_h, 1, 24 * 365 * 10);
  if (s.loyalty.silver_points < 1 || s.loyalty.gold_points <= s.loyalty.silver_points)
    throw config_error("config: loyalty.gold_points must exceed loyalty.silver_points, both positive");
  for (const auto& [currency, cents] : s.shipping.free_above_cents)
    if (currency.size() != 3 || cents < 0)
      throw config_error("config: shipping.free_above_cents: " + shown(currency) +
                         " must be a 3-letter currency with a non-negative amount");
  if (s.shipping.default_country.size() != 2)
    throw config_error("config: shipping.default_country must be an ISO 3166-1 alpha-2 code");
  for (std::size_t i = 0; i < s.shipping.zones.size(); ++i) {
    const auto& z = s.shipping.zones[i];
    const std::string at = "config: shipping.zones[" + std::to_string(i) + "]";
    if (z.name.empty() || z.countries.empty() || z.rates.empty())
      throw config_error(at + " needs a name, countries and rates");
    for (const auto& c : z.countries)
      if (c.size() != 2) throw config_error(at + ": country " + shown(c) + " is not alpha-2");
    for (std::size_t r = 0; r < z.rates.size(); ++r)
      if (z.rates[r].max_grams <= 0 || (r > 0 && z.rates[r].max_grams <= z.rates[r - 1].max_grams))
        throw config_error(at + ": rates must have ascending positive max_grams");
  }

  require_between("actors.scheduler_threads", s.actors.scheduler_threads, 1, 64);
  require_positive("actors.idle_timeout_s", s.actors.idle_timeout_s);

  static constexpr std::string_view levels[] = {"trace", "debug", "info",    "warn",
                                                "error", "critical", "off"};
  if (std::find(std::begin(levels), std::end(levels), s.log.level) == std::end(levels))
    throw config_error("config: log.level must be one of trace, debug, info, warn, error, "
                       "critical, off, got " + shown(s.log.level));
}

settings load(const std::optional<std::string>& toml_path,
              const std::map<std::string, std::string>& env,
              const std::vector<std::string>& assignments) {
  settings s;
  if (toml_path) apply_toml_file(s, *toml_path);
  apply_environment(s, env);
  for (const auto& a : assignments) apply_assignment(s, a);
  validate(s);
  return s;
}

std::vector<key_info> known_keys() {
  std::vector<key_info> out;
  for (const auto& f : registry()) out.push_back({f.key, f.env});
  return out;
}

} // namespace emporium::config
