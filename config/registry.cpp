#include "config/settings.hpp"
#include "config/text.hpp"

#include <toml++/toml.h>
#include <unistd.h> // environ

#include <algorithm>
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

using detail::format_number;
using detail::shown;
using detail::single_line;
using detail::trim;
using detail::upper;
using detail::value_error;

constexpr std::string_view env_prefix = "EMPORIUM_";
constexpr std::string_view test_env_prefix = "EMPORIUM_TEST_";

/// EMPORIUM_<SECTION>_ for every configuration section, and the short names (EMPORIUM_PG_URL,
/// EMPORIUM_ADMIN_KEY, EMPORIUM_NODE_PORT, EMPORIUM_PEERS).
bool in_config_namespace(std::string_view name) {
  for (std::string_view prefix :
       {"EMPORIUM_HTTP_", "EMPORIUM_POSTGRES_", "EMPORIUM_REDIS_", "EMPORIUM_AUTH_",
        "EMPORIUM_CLUSTER_", "EMPORIUM_RATE_", "EMPORIUM_ACTORS_", "EMPORIUM_LOG_",
        "EMPORIUM_ADMIN_", "EMPORIUM_NODE_", "EMPORIUM_PEERS", "EMPORIUM_PG_URL"})
    if (name.substr(0, prefix.size()) == prefix)
      return true;
  return false;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
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
struct conv<T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>> {
  static value_error out_of_range(std::string_view text, bool negative) {
    if (negative && std::is_unsigned_v<T>)
      return value_error(shown(text) + " must not be negative");
    return value_error(shown(text) + " is out of range "
                       + std::to_string(std::numeric_limits<T>::min()) + ".."
                       + std::to_string(std::numeric_limits<T>::max()));
  }

  static T checked(std::intmax_t v, std::string_view text) {
    if constexpr (std::is_unsigned_v<T>) {
      if (v < 0)
        throw out_of_range(text, true);
      if (static_cast<std::uintmax_t>(v) > std::numeric_limits<T>::max())
        throw out_of_range(text, false);
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
    if (!digits.empty() && (digits.front() == '+' || digits.front() == '-'))
      digits.remove_prefix(1);
    if (digits.empty()
        || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      throw value_error(shown(raw) + " is not an integer");
    std::uintmax_t magnitude = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude);
    if (ec != std::errc() || end != digits.data() + digits.size())
      throw out_of_range(text, negative);
    if (negative) {
      if (magnitude == 0)
        return T{0};
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
    if (v == nullptr)
      throw wrong_type("an integer", n);
    const std::int64_t i = v->get();
    return checked(i, std::to_string(i));
  }
};

template <>
struct conv<double> {
  static double finite(double d, std::string_view text) {
    if (!std::isfinite(d))
      throw value_error(shown(text) + " is not a finite number");
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
    if (const auto* f = n.as_floating_point())
      return finite(f->get(), format_number(f->get()));
    if (const auto* i = n.as_integer())
      return static_cast<double>(i->get());
    throw wrong_type("a number", n);
  }
};

template <>
struct conv<std::string> {
  static std::string from_string(std::string_view text) { return std::string(text); }

  static std::string from_toml(const toml::node& n) {
    const auto* s = n.as_string();
    if (s == nullptr)
      throw wrong_type("a string", n);
    return s->get();
  }
};

/// true/false (also 1/0, yes/no, on/off in the environment and on the command line).
template <>
struct conv<bool> {
  static bool from_string(std::string_view text) {
    for (auto yes : {"true", "1", "yes", "on"})
      if (text == yes)
        return true;
    for (auto no : {"false", "0", "no", "off"})
      if (text == no)
        return false;
    throw value_error(shown(text) + " is not a boolean (true or false)");
  }

  static bool from_toml(const toml::node& n) {
    const auto* b = n.as_boolean();
    if (b == nullptr)
      throw wrong_type("a boolean", n);
    return b->get();
  }
};

/// An empty text unsets an optional key (`EMPORIUM_NODE_PORT=` means single node). TOML has no
/// null: leaving the key out is how a file keeps it unset.
template <class T>
struct conv<std::optional<T>> {
  static std::optional<T> from_string(std::string_view text) {
    if (trim(text).empty())
      return std::nullopt;
    return conv<T>::from_string(text);
  }

  static std::optional<T> from_toml(const toml::node& n) { return conv<T>::from_toml(n); }
};

/// Lists: comma-separated in text (blanks around items ignored, empty items dropped), arrays in
/// TOML.
template <>
struct conv<std::vector<std::string>> {
  static std::vector<std::string> from_string(std::string_view text) {
    std::vector<std::string> out;
    while (true) {
      const auto comma = text.find(',');
      const auto item = trim(text.substr(0, comma));
      if (!item.empty())
        out.emplace_back(item);
      if (comma == std::string_view::npos)
        break;
      text.remove_prefix(comma + 1);
    }
    return out;
  }

  static std::vector<std::string> from_toml(const toml::node& n) {
    const auto* array = n.as_array();
    if (array == nullptr)
      throw wrong_type("an array of strings", n);
    std::vector<std::string> out;
    for (std::size_t i = 0; i < array->size(); ++i) {
      const auto* s = (*array)[i].as_string();
      if (s == nullptr)
        throw value_error("element " + std::to_string(i) + ": expected a string, got "
                          + toml_type_name((*array)[i]));
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
    if (table == nullptr)
      throw wrong_type("a table of CURRENCY = amount", n);
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
    if (array == nullptr)
      throw wrong_type("an array of tables ([[shipping.zones]])", n);
    std::vector<shipping_zone> zones;
    for (std::size_t i = 0; i < array->size(); ++i) {
      const auto* t = (*array)[i].as_table();
      const std::string at = "zone " + std::to_string(i);
      if (t == nullptr)
        throw value_error(at + ": expected a table");
      shipping_zone z;
      for (const auto& [k, v] : *t) {
        const std::string key(k.str());
        if (key == "name")
          z.name = conv<std::string>::from_toml(v);
        else if (key == "countries")
          z.countries = conv<std::vector<std::string>>::from_toml(v);
        else if (key == "rates") {
          const auto* rates = v.as_array();
          if (rates == nullptr)
            throw value_error(at + ": rates must be an array of tables");
          for (std::size_t r = 0; r < rates->size(); ++r) {
            const auto* rt = (*rates)[r].as_table();
            if (rt == nullptr)
              throw value_error(at + ": rates[" + std::to_string(r) + "] must be a table");
            shipping_rate rate;
            for (const auto& [rk, rv] : *rt) {
              if (rk.str() == "max_grams")
                rate.max_grams = conv<std::int64_t>::from_toml(rv);
              else
                rate.cents[std::string(rk.str())] = conv<std::int64_t>::from_toml(rv);
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
  std::string key;       ///< `section.member`
  std::string env;       ///< the environment variable
  std::string plain_env; ///< EMPORIUM_<SECTION>_<MEMBER>, to hint when `env` differs from it
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
#define EMPORIUM_CONFIG_KEY(section, member, env) \
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
    f.push_back(EMPORIUM_CONFIG_KEY(cluster, node_host, "EMPORIUM_NODE_HOST"));
    f.push_back(EMPORIUM_CONFIG_KEY(cluster, node_port, "EMPORIUM_NODE_PORT"));
    f.push_back(EMPORIUM_CONFIG_KEY(cluster, peers, "EMPORIUM_PEERS"));
    f.push_back(EMPORIUM_CONFIG_KEY(cluster, tls_certificate, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(cluster, tls_key, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(cluster, tls_cafile, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(cluster, insecure_bind, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(cluster, heartbeat_ms, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(cluster, peer_timeout_ms, nullptr));
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
    f.push_back(EMPORIUM_CONFIG_KEY(actors, scheduler_idle_polls, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(actors, idle_timeout_s, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(auth, session_ttl_s, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(auth, session_cache_ms, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(auth, signup_workers, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(auth, login_workers, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(auth, signup_queue_limit, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(auth, login_queue_limit, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(orders, payment_timeout_s, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(orders, max_lines, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(orders, max_open_unpaid_per_customer, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(orders, max_units_per_line, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(orders, payment_workers, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(carts, ttl_s, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(retention, interval_s, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(retention, batch_size, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(retention, expired_grace_h, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(retention, idempotency_keys_h, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(retention, events_h, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(feeds, max_subscriptions_per_connection, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(feeds, max_connections_per_address, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(feeds, send_queue_max, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(feeds, ping_s, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(loyalty, silver_points, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(loyalty, gold_points, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(shipping, free_above_cents, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(shipping, default_country, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(shipping, zones, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(log, level, nullptr));
    f.push_back(EMPORIUM_CONFIG_KEY(log, access_queue_lines, nullptr));
    return f;
  }();
  return fields;
}

#undef EMPORIUM_CONFIG_KEY

const field* find_key(std::string_view key) {
  for (const auto& f : registry())
    if (f.key == key)
      return &f;
  return nullptr;
}

const field* find_env(std::string_view name) {
  for (const auto& f : registry())
    if (f.env == name)
      return &f;
  return nullptr;
}

bool is_section(std::string_view name) {
  for (const auto& f : registry())
    if (std::string_view(f.key).substr(0, f.key.find('.')) == name)
      return true;
  return false;
}

/// " (did you mean 'http.port'?)" when a known key is a likely typo of `unknown`, else "".
std::string key_hint(std::string_view unknown) {
  const field* best = nullptr;
  std::size_t best_distance = 3;
  for (const auto& f : registry()) {
    const auto d = edit_distance(unknown, f.key);
    if (d < best_distance)
      best = &f, best_distance = d;
  }
  return best != nullptr ? " (did you mean '" + best->key + "'?)" : std::string();
}

std::string section_hint(std::string_view unknown) {
  for (const auto& f : registry()) {
    const std::string_view section = std::string_view(f.key).substr(0, f.key.find('.'));
    if (edit_distance(unknown, section) <= 2)
      return " (did you mean [" + std::string(section) + "]?)";
  }
  return {};
}

std::string env_hint(std::string_view unknown) {
  for (const auto& f : registry())
    if (f.plain_env == unknown && f.env != unknown)
      return " (did you mean " + f.env + "?)";
  const field* best = nullptr;
  std::size_t best_distance = 3;
  for (const auto& f : registry()) {
    const auto d = edit_distance(unknown, f.env);
    if (d < best_distance)
      best = &f, best_distance = d;
  }
  return best != nullptr ? " (did you mean " + best->env + "?)" : std::string();
}

// -- TOML -----------------------------------------------------------------------------------------

std::string where(const std::string& origin, const toml::source_region& region) {
  std::string out = "in " + (origin.empty() ? std::string("<toml>") : origin);
  if (region.begin.line > 0)
    out += " at line " + std::to_string(region.begin.line) + ", column "
           + std::to_string(region.begin.column);
  return out;
}

} // namespace

void apply_toml_text(settings& s, const std::string& text, const std::string& origin) {
  const std::string name = origin.empty() ? std::string("<toml>") : origin;
  toml::table root;
  try {
    root = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    throw config_error("config: TOML syntax error " + where(name, e.source()) + ": "
                       + single_line(e.description()));
  }

  settings next = s; // all or nothing: a bad key leaves `s` as it was
  for (const auto& [section_key, section_node] : root) {
    const std::string section(section_key.str());
    if (!is_section(section)) {
      if (section_node.is_table())
        throw config_error("config: unknown section '" + section + "' "
                           + where(name, section_key.source()) + section_hint(section));
      throw config_error("config: unknown key '" + section + "' "
                         + where(name, section_key.source())
                         + " (every key belongs in a section such as [http])");
    }
    const auto* table = section_node.as_table();
    if (table == nullptr)
      throw config_error("config: '" + section + "' " + where(name, section_key.source())
                         + " must be a table ([" + section + "]), got "
                         + toml_type_name(section_node));
    for (const auto& [member_key, node] : *table) {
      const std::string key = section + "." + std::string(member_key.str());
      const field* f = find_key(key);
      if (f == nullptr)
        throw config_error("config: unknown key '" + key + "' " + where(name, member_key.source())
                           + key_hint(key));
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
  if (!in)
    throw config_error("config: cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    throw config_error("config: cannot read " + path);
  apply_toml_text(s, text.str(), path);
}

void apply_environment(settings& s, const std::map<std::string, std::string>& env) {
  settings next = s;
  for (const auto& [name, value] : env) {
    if (name.compare(0, env_prefix.size(), env_prefix) != 0)
      continue;
    if (name.compare(0, test_env_prefix.size(), test_env_prefix) == 0)
      continue;
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
    if (eq == std::string_view::npos)
      continue;
    const std::string_view name = text.substr(0, eq);
    if (name.compare(0, env_prefix.size(), env_prefix) != 0)
      continue;
    out.emplace(std::string(name), std::string(text.substr(eq + 1)));
  }
  return out;
}

void apply_override(settings& s, const std::string& dotted_key, const std::string& value) {
  const field* f = find_key(dotted_key);
  if (f == nullptr)
    throw config_error("config: unknown key '" + dotted_key + "' on the command line"
                       + key_hint(dotted_key));
  try {
    f->from_string(s, value); // parses fully before assigning: `s` is unchanged on error
  } catch (const value_error& e) {
    throw config_error("config: " + dotted_key + " (command line): " + e.what());
  }
}

void apply_assignment(settings& s, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos)
    throw config_error("config: --set expects section.key=value, got "
                       + shown(redact_url(assignment)));
  apply_override(s, std::string(trim(std::string_view(assignment).substr(0, eq))),
                 assignment.substr(eq + 1));
}

std::vector<key_info> known_keys() {
  std::vector<key_info> out;
  for (const auto& f : registry())
    out.push_back({f.key, f.env});
  return out;
}

} // namespace emporium::config
