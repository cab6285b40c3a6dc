#include "config/settings.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <sstream>

using namespace emporium::config;
using Catch::Matchers::Contains;

namespace {

/// The message of the config_error `f` throws; fails the test when it throws nothing or
/// something else, or when the message is not one line.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const config_error& e) {
    const std::string message = e.what();
    CHECK(message.find('\n') == std::string::npos);
    CHECK_THAT(message, Catch::StartsWith("config: "));
    return message;
  } catch (const std::exception& e) {
    FAIL("expected config_error, got another exception: " << e.what());
  }
  FAIL("expected config_error, nothing was thrown");
  return {};
}

/// A file in a fresh temporary directory, removed with it.
class temp_file {
 public:
  explicit temp_file(const std::string& text, const std::string& name = "emporium.toml") {
    static int counter = 0;
    dir_ = std::filesystem::temp_directory_path()
           / ("emporium-config-test-" + std::to_string(::getpid()) + "-"
              + std::to_string(++counter));
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / name).string();
    std::ofstream(path_) << text;
  }
  ~temp_file() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::filesystem::path dir_;
  std::string path_;
};

/// The example file in the source tree. The build may define EMPORIUM_SOURCE_DIR; otherwise it is
/// found from this file's path (relative when ccache's base_dir rewrote it, then resolved from the
/// build directory the test runs in).
std::string example_path() {
#ifdef EMPORIUM_SOURCE_DIR
  const std::filesystem::path root = EMPORIUM_SOURCE_DIR;
#else
  const std::filesystem::path root =
    std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
#endif
  return (root / "config" / "emporium.example.toml").string();
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void require_defaults(const settings& s) {
  CHECK(s.http.host == "127.0.0.1");
  CHECK(s.http.port == 8080);
  CHECK(s.http.threads == 1);
  CHECK(s.http.body_limit == 1024 * 1024);
  CHECK(s.http.header_limit == 16 * 1024);
  CHECK(s.http.header_timeout_ms == 10'000);
  CHECK(s.http.idle_timeout_ms == 30'000);
  CHECK(s.http.request_timeout_ms == 5'000);
  CHECK(s.http.max_pipeline == 16);
  CHECK_FALSE(s.http.max_connections.has_value()); // derived from the open-files limit
  CHECK(s.http.max_connections_per_address == 256);
  CHECK(s.http.body_timeout_ms == 30'000);
  CHECK(s.http.trusted_proxies.empty());
  CHECK(s.rate_limit.signup_capacity == 5);
  CHECK(s.rate_limit.signup_refill_per_s == 0.02);
  CHECK(s.postgres.url == "postgresql://emporium@127.0.0.1:5432/emporium");
  CHECK(s.postgres.pool_size == 4);
  CHECK(s.postgres.connect_timeout_ms == 2'000);
  CHECK(s.postgres.statement_timeout_ms == 5'000);
  CHECK(s.redis.url == "redis://127.0.0.1:6379/0");
  CHECK(s.redis.timeout_ms == 200);
  CHECK(s.redis.ttl_s == 3'600);
  CHECK_FALSE(s.auth.admin_key.has_value());
  CHECK(s.auth.session_cache_ms == 2'000);
  CHECK_FALSE(s.cluster.node_port.has_value());
  CHECK(s.cluster.peers.empty());
  CHECK(s.rate_limit.capacity == 200);
  CHECK(s.rate_limit.refill_per_s == 100.0);
  CHECK(s.actors.scheduler_threads == 1);
  CHECK(s.actors.scheduler_idle_polls == 0);
  CHECK(s.orders.payment_workers == 2);
  CHECK(s.actors.idle_timeout_s == 60);
  CHECK(s.log.level == "info");
  CHECK(s.log.access_queue_lines == 16'384);
  CHECK(s.feeds.max_subscriptions_per_connection == 100);
  CHECK(s.feeds.max_connections_per_address == 32);
  CHECK(s.feeds.send_queue_max == 1024);
  CHECK(s.feeds.ping_s == 15);
}

const std::string password = "s3cr3t-Pa55word";

} // namespace

// -- defaults and the key table
// ----------------------------------------------------------------------

TEST_CASE("defaults match the design and pass validation", "[config]") {
  const settings s;
  require_defaults(s);
  CHECK_NOTHROW(validate(s));
}

TEST_CASE("known_keys lists every key once with the design's environment names", "[config]") {
  const auto keys = known_keys();
  CHECK(keys.size() == 80);
  std::set<std::string> names, envs;
  for (const auto& k : keys) {
    names.insert(k.key);
    envs.insert(k.env);
  }
  CHECK(names.size() == keys.size());
  CHECK(envs.size() == keys.size());

  const std::map<std::string, std::string> expected = {
    {"http.host", "EMPORIUM_HTTP_HOST"},
    {"http.port", "EMPORIUM_HTTP_PORT"},
    {"http.threads", "EMPORIUM_HTTP_THREADS"},
    {"http.body_limit", "EMPORIUM_HTTP_BODY_LIMIT"},
    {"postgres.url", "EMPORIUM_PG_URL"},
    {"postgres.pool_size", "EMPORIUM_POSTGRES_POOL_SIZE"},
    {"redis.url", "EMPORIUM_REDIS_URL"},
    {"redis.timeout_ms", "EMPORIUM_REDIS_TIMEOUT_MS"},
    {"auth.admin_key", "EMPORIUM_ADMIN_KEY"},
    {"cluster.node_port", "EMPORIUM_NODE_PORT"},
    {"cluster.peers", "EMPORIUM_PEERS"},
    {"rate_limit.capacity", "EMPORIUM_RATE_CAPACITY"},
    {"rate_limit.refill_per_s", "EMPORIUM_RATE_REFILL"},
    {"actors.idle_timeout_s", "EMPORIUM_ACTORS_IDLE_TIMEOUT_S"},
    {"actors.scheduler_idle_polls", "EMPORIUM_ACTORS_SCHEDULER_IDLE_POLLS"},
    {"auth.session_cache_ms", "EMPORIUM_AUTH_SESSION_CACHE_MS"},
    {"log.level", "EMPORIUM_LOG_LEVEL"},
    {"log.access_queue_lines", "EMPORIUM_LOG_ACCESS_QUEUE_LINES"},
    {"feeds.max_subscriptions_per_connection", "EMPORIUM_FEEDS_MAX_SUBSCRIPTIONS_PER_CONNECTION"},
    {"feeds.max_connections_per_address", "EMPORIUM_FEEDS_MAX_CONNECTIONS_PER_ADDRESS"},
    {"feeds.send_queue_max", "EMPORIUM_FEEDS_SEND_QUEUE_MAX"},
    {"feeds.ping_s", "EMPORIUM_FEEDS_PING_S"},
  };
  for (const auto& [key, env] : expected) {
    INFO(key);
    const auto it = std::find_if(keys.begin(), keys.end(),
                                 [&](const key_info& k) { return k.key == key; });
    REQUIRE(it != keys.end());
    CHECK(it->env == env);
  }
}

TEST_CASE("the example file documents every key and its variable, and loads to the defaults",
          "[config]") {
  INFO("example file: " << example_path() << " (define EMPORIUM_SOURCE_DIR if not found)");
  REQUIRE(std::filesystem::exists(example_path()));
  const std::string text = read_text(example_path());
  REQUIRE_FALSE(text.empty());
  for (const auto& k : known_keys()) {
    INFO(k.key);
    const std::string member = k.key.substr(k.key.find('.') + 1);
    CHECK_THAT(text, Contains("\n" + member + " = ") || Contains("\n# " + member + " = "));
    CHECK_THAT(text, Contains("env " + k.env));
  }
  settings s;
  REQUIRE_NOTHROW(apply_toml_file(s, example_path()));
  require_defaults(s);
}

// -- TOML
// -------------------------------------------------------------------------------------------

TEST_CASE("the shipping rate table is read from TOML and checked", "[config][toml]") {
  settings s;
  apply_toml_text(s, R"(
[shipping]
free_above_cents = { USD = 5000 }
default_country = "DE"
[[shipping.zones]]
name = "eu"
countries = ["DE", "FR"]
rates = [ { max_grams = 500, EUR = 300 }, { max_grams = 2000, EUR = 600, USD = 700 } ]
)",
                  "zones.toml");
  REQUIRE(s.shipping.zones.size() == 1);
  CHECK(s.shipping.zones[0].countries == std::vector<std::string>{"DE", "FR"});
  REQUIRE(s.shipping.zones[0].rates.size() == 2);
  CHECK(s.shipping.zones[0].rates[1].cents.at("USD") == 700);
  CHECK(s.shipping.free_above_cents == std::map<std::string, std::int64_t>{{"USD", 5000}});
  CHECK_NOTHROW(validate(s));

  settings bad;
  apply_toml_text(bad, R"(
[[shipping.zones]]
name = "x"
countries = ["DE"]
rates = [ { max_grams = 500, EUR = 1 }, { max_grams = 100, EUR = 2 } ]
)",
                  "bad.toml");
  CHECK_THAT(error_of([&] { validate(bad); }), Contains("shipping.zones[0]"));
  settings unknown;
  CHECK_THAT(error_of([&] {
               apply_toml_text(unknown, "[[shipping.zones]]\nname = \"x\"\ncolour = 1\n", "u.toml");
             }),
             Contains("shipping.zones") && Contains("colour"));
}

TEST_CASE("TOML sets every kind of value", "[config][toml]") {
  settings s;
  apply_toml_text(s, R"(
[http]
host = "0.0.0.0"
port = 9090
body_limit = 2048
[postgres]
url = "postgres://app@db/shop"
[auth]
admin_key = "0123456789abcdef0123"
[cluster]
node_port = 4242
peers = ["10.0.0.2:4242", "node-3:4243"]
[rate_limit]
capacity = 50
refill_per_s = 2.5
[actors]
idle_timeout_s = 5
[log]
level = "debug"
)",
                  "inline");
  CHECK(s.http.host == "0.0.0.0");
  CHECK(s.http.port == 9090);
  CHECK(s.http.body_limit == 2048);
  CHECK(s.http.threads == 1); // untouched keys keep their defaults
  CHECK(s.postgres.url == "postgres://app@db/shop");
  CHECK(s.auth.admin_key == std::optional<std::string>("0123456789abcdef0123"));
  CHECK(s.cluster.node_port == std::optional<std::uint16_t>(4242));
  CHECK(s.cluster.peers == std::vector<std::string>{"10.0.0.2:4242", "node-3:4243"});
  CHECK(s.rate_limit.capacity == 50);
  CHECK(s.rate_limit.refill_per_s == 2.5);
  CHECK(s.actors.idle_timeout_s == 5);
  CHECK(s.log.level == "debug");
  CHECK_NOTHROW(validate(s));
}

TEST_CASE("TOML accepts an integer for a float key and dotted keys", "[config][toml]") {
  settings s;
  apply_toml_text(s, "rate_limit.refill_per_s = 7\nhttp.port = 8181\n", "inline");
  CHECK(s.rate_limit.refill_per_s == 7.0);
  CHECK(s.http.port == 8181);
}

TEST_CASE("an unknown TOML key names the key and the file", "[config][toml]") {
  temp_file file("[http]\nport = 8080\nprot = 9000\n");
  settings s;
  const auto message = error_of([&] { apply_toml_file(s, file.path()); });
  CHECK_THAT(message, Contains("unknown key 'http.prot'"));
  CHECK_THAT(message, Contains(file.path()));
  CHECK_THAT(message, Contains("line 3"));
  CHECK_THAT(message, Contains("did you mean 'http.port'"));
  CHECK(s.http.port == 8080);
}

TEST_CASE("unknown TOML sections, nested tables and top-level keys are errors", "[config][toml]") {
  settings s;
  CHECK_THAT(error_of([&] { apply_toml_text(s, "[htp]\nport = 1\n", "f.toml"); }),
             Contains("unknown section 'htp'") && Contains("f.toml") && Contains("[http]"));
  CHECK_THAT(error_of([&] { apply_toml_text(s, "[http.tls]\ncert = \"x\"\n", "f.toml"); }),
             Contains("unknown key 'http.tls'") && Contains("f.toml"));
  CHECK_THAT(error_of([&] { apply_toml_text(s, "port = 8080\n", "f.toml"); }),
             Contains("unknown key 'port'") && Contains("f.toml"));
  CHECK_THAT(error_of([&] { apply_toml_text(s, "http = 5\n", "f.toml"); }),
             Contains("'http'") && Contains("must be a table") && Contains("f.toml"));
}

TEST_CASE("a wrong TOML type names the key, the file and both types", "[config][toml]") {
  struct case_t {
    std::string text, key, expected;
  };
  const std::vector<case_t> cases = {
    {"[http]\nport = \"8080\"\n", "http.port", "expected an integer, got a string"},
    {"[http]\nhost = 5\n", "http.host", "expected a string, got an integer"},
    {"[http]\nthreads = 1.5\n", "http.threads", "expected an integer, got a float"},
    {"[rate_limit]\nrefill_per_s = \"fast\"\n", "rate_limit.refill_per_s", "expected a number"},
    {"[cluster]\npeers = \"a:1\"\n", "cluster.peers", "expected an array of strings"},
    {"[cluster]\npeers = [\"a:1\", 2]\n", "cluster.peers", "element 1"},
    {"[auth]\nadmin_key = true\n", "auth.admin_key", "got a boolean"},
    {"[log]\nlevel = 1979-05-27\n", "log.level", "got a date"},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    temp_file file(c.text);
    settings s;
    const auto message = error_of([&] { apply_toml_file(s, file.path()); });
    CHECK_THAT(message, Contains(c.key) && Contains(file.path()) && Contains(c.expected));
    require_defaults(s); // nothing applied
  }
}

TEST_CASE("out-of-range TOML integers are rejected, not wrapped", "[config][toml]") {
  settings s;
  CHECK_THAT(error_of([&] { apply_toml_text(s, "[http]\nport = 70000\n", "f.toml"); }),
             Contains("http.port") && Contains("70000") && Contains("0..65535"));
  CHECK_THAT(error_of([&] { apply_toml_text(s, "[http]\nbody_limit = -1\n", "f.toml"); }),
             Contains("http.body_limit") && Contains("negative"));
  CHECK_THAT(error_of([&] { apply_toml_text(s, "[http]\nthreads = 4294967297\n", "f.toml"); }),
             Contains("http.threads") && Contains("out of range"));
  CHECK_THAT(error_of([&] { apply_toml_text(s, "[rate_limit]\nrefill_per_s = inf\n", "f.toml"); }),
             Contains("rate_limit.refill_per_s") && Contains("finite"));
  require_defaults(s);
}

TEST_CASE("a TOML syntax error names the file, line and column", "[config][toml]") {
  temp_file file("[http]\nport = 8080\nhost = \"unterminated\n");
  settings s;
  const auto message = error_of([&] { apply_toml_file(s, file.path()); });
  CHECK_THAT(message, Contains(file.path()) && Contains("line 3") && Contains("column"));

  CHECK_THAT(error_of([&] { apply_toml_text(s, "[http]\nport = 1\nport = 2\n", "dup.toml"); }),
             Contains("dup.toml") && Contains("line 3"));
}

TEST_CASE("a missing TOML file is an error naming it", "[config][toml]") {
  settings s;
  CHECK_THAT(error_of([&] { apply_toml_file(s, "/nonexistent/emporium.toml"); }),
             Contains("/nonexistent/emporium.toml"));
}

TEST_CASE("a failing TOML file changes nothing", "[config][toml]") {
  settings s;
  error_of([&] { apply_toml_text(s, "[http]\nport = 9999\n[log]\nlevel = 3\n", "f.toml"); });
  CHECK(s.http.port == 8080);
}

// -- environment
// --------------------------------------------------------------------------------------

TEST_CASE("the design's environment names set their keys", "[config][env]") {
  settings s;
  apply_environment(s, {
                         {"EMPORIUM_HTTP_HOST", "0.0.0.0"},
                         {"EMPORIUM_HTTP_PORT", "8081"},
                         {"EMPORIUM_PG_URL", "postgresql://u@pg:5433/db"},
                         {"EMPORIUM_REDIS_URL", "redis://cache:6380/2"},
                         {"EMPORIUM_ADMIN_KEY", "abcdefghijklmnopq"},
                         {"EMPORIUM_NODE_PORT", "4300"},
                         {"EMPORIUM_PEERS", "a:1,b:2"},
                         {"EMPORIUM_RATE_CAPACITY", "10"},
                         {"EMPORIUM_RATE_REFILL", "0.5"},
                       });
  CHECK(s.http.host == "0.0.0.0");
  CHECK(s.http.port == 8081);
  CHECK(s.postgres.url == "postgresql://u@pg:5433/db");
  CHECK(s.redis.url == "redis://cache:6380/2");
  CHECK(s.auth.admin_key == std::optional<std::string>("abcdefghijklmnopq"));
  CHECK(s.cluster.node_port == std::optional<std::uint16_t>(4300));
  CHECK(s.cluster.peers == std::vector<std::string>{"a:1", "b:2"});
  CHECK(s.rate_limit.capacity == 10);
  CHECK(s.rate_limit.refill_per_s == 0.5);
  CHECK_NOTHROW(validate(s));
}

TEST_CASE("other keys use EMPORIUM_<SECTION>_<KEY>", "[config][env]") {
  settings s;
  apply_environment(s, {
                         {"EMPORIUM_HTTP_THREADS", "2"},
                         {"EMPORIUM_HTTP_BODY_LIMIT", "4096"},
                         {"EMPORIUM_POSTGRES_POOL_SIZE", "8"},
                         {"EMPORIUM_REDIS_TIMEOUT_MS", "150"},
                         {"EMPORIUM_ACTORS_IDLE_TIMEOUT_S", "30"},
                         {"EMPORIUM_ACTORS_SCHEDULER_THREADS", "2"},
                         {"EMPORIUM_ACTORS_SCHEDULER_IDLE_POLLS", "500"},
                         {"EMPORIUM_ORDERS_PAYMENT_WORKERS", "6"},
                         {"EMPORIUM_LOG_LEVEL", "warn"},
                       });
  CHECK(s.http.threads == 2);
  CHECK(s.http.body_limit == 4096);
  CHECK(s.postgres.pool_size == 8);
  CHECK(s.redis.timeout_ms == 150);
  CHECK(s.actors.idle_timeout_s == 30);
  CHECK(s.actors.scheduler_threads == 2);
  CHECK(s.actors.scheduler_idle_polls == 500);
  CHECK(s.orders.payment_workers == 6);
  CHECK(s.log.level == "warn");
}

TEST_CASE("every known key can be set through its environment variable", "[config][env]") {
  for (const auto& k : known_keys()) {
    INFO(k.env);
    if (k.key == "shipping.zones") {
      // A table of tables has no sensible one-line form: the file only, said clearly.
      settings s;
      CHECK_THROWS_AS(apply_environment(s, {{k.env, "x"}}), config_error);
      continue;
    }
    settings s;
    const std::string value = k.key == "log.level" ? "error"
                              : k.key.find("url") != std::string::npos
                                ? (k.key == "redis.url" ? "redis://h:1/3" : "postgres://h:1/d")
                              : k.key == "http.host"                 ? "::"
                              : k.key == "auth.admin_key"            ? "key-key-key-key-key"
                              : k.key == "cluster.peers"             ? "h:1"
                              : k.key == "cluster.insecure_bind"     ? "true"
                              : k.key == "shipping.free_above_cents" ? "USD=3"
                                                                     : "3";
    CHECK_NOTHROW(apply_environment(s, {{k.env, value}}));
  }
}

TEST_CASE("EMPORIUM_TEST_* and non-EMPORIUM variables are ignored", "[config][env]") {
  settings s;
  CHECK_NOTHROW(apply_environment(s, {{"EMPORIUM_TEST_PG_URL", "not a url"},
                                      {"EMPORIUM_TEST_ANYTHING", "x"},
                                      {"PATH", "/usr/bin"},
                                      {"HTTP_PORT", "1"}}));
  require_defaults(s);
}

TEST_CASE("an unknown EMPORIUM_ variable is an error naming it", "[config][env]") {
  settings s;
  CHECK_THAT(error_of([&] {
               apply_environment(s, {{"EMPORIUM_HTTP_PROT", "1"}});
             }),
             Contains("EMPORIUM_HTTP_PROT") && Contains("EMPORIUM_HTTP_PORT"));
  // The design's names are exact: the plain form of a renamed key is not an alias.
  CHECK_THAT(error_of([&] {
               apply_environment(s, {{"EMPORIUM_POSTGRES_URL", "postgres://h/d"}});
             }),
             Contains("EMPORIUM_POSTGRES_URL") && Contains("did you mean EMPORIUM_PG_URL"));
  CHECK_THAT(error_of([&] {
               apply_environment(s, {{"EMPORIUM_CLUSTER_PEERS", "a:1"}});
             }),
             Contains("EMPORIUM_CLUSTER_PEERS") && Contains("EMPORIUM_PEERS"));
  require_defaults(s);
}

TEST_CASE("EMPORIUM_ variables outside every configuration section belong to the scripts",
          "[config][env]") {
  settings s;
  CHECK_NOTHROW(apply_environment(s, {{"EMPORIUM_BUILD_DIR", "build"},
                                      {"EMPORIUM_SEED_PRODUCTS", "50"},
                                      {"EMPORIUM_LOCAL_PG_PORT", "54329"},
                                      {"EMPORIUM_PG_BIN", "/usr/lib/postgresql/15/bin"},
                                      {"EMPORIUM_", "x"}}));
  require_defaults(s);
}

TEST_CASE("an environment value that does not parse names the variable and the key",
          "[config][env]") {
  struct case_t {
    std::string var, value, key, why;
  };
  const std::vector<case_t> cases = {
    {"EMPORIUM_HTTP_PORT", "abc", "http.port", "not an integer"},
    {"EMPORIUM_HTTP_PORT", "70000", "http.port", "out of range"},
    {"EMPORIUM_HTTP_PORT", "-1", "http.port", "negative"},
    {"EMPORIUM_HTTP_PORT", "", "http.port", "not an integer"},
    {"EMPORIUM_HTTP_PORT", "80 80", "http.port", "not an integer"},
    {"EMPORIUM_HTTP_PORT", "0x50", "http.port", "not an integer"},
    {"EMPORIUM_HTTP_THREADS", "1.5", "http.threads", "not an integer"},
    {"EMPORIUM_HTTP_THREADS", "99999999999", "http.threads", "out of range"},
    {"EMPORIUM_HTTP_BODY_LIMIT", "99999999999999999999999", "http.body_limit", "out of range"},
    {"EMPORIUM_NODE_PORT", "65536", "cluster.node_port", "out of range"},
    {"EMPORIUM_RATE_CAPACITY", "lots", "rate_limit.capacity", "not an integer"},
    {"EMPORIUM_RATE_REFILL", "fast", "rate_limit.refill_per_s", "not a number"},
    {"EMPORIUM_RATE_REFILL", "nan", "rate_limit.refill_per_s", "finite"},
    {"EMPORIUM_RATE_REFILL", "1e999", "rate_limit.refill_per_s", ""},
  };
  for (const auto& c : cases) {
    INFO(c.var << "=" << c.value);
    settings s;
    const auto message = error_of([&] { apply_environment(s, {{c.var, c.value}}); });
    CHECK_THAT(message, Contains(c.var) && Contains(c.key) && Contains(c.why));
    require_defaults(s);
  }
}

TEST_CASE("numbers from text tolerate surrounding blanks and signs", "[config][env]") {
  settings s;
  apply_environment(s, {{"EMPORIUM_HTTP_PORT", " 9000 "},
                        {"EMPORIUM_RATE_CAPACITY", "+5"},
                        {"EMPORIUM_HTTP_THREADS", "-0"}});
  CHECK(s.http.port == 9000);
  CHECK(s.rate_limit.capacity == 5);
  CHECK(s.http.threads == 0);
}

TEST_CASE("an empty value unsets optional keys", "[config][env]") {
  settings s;
  s.cluster.node_port = 4000;
  s.auth.admin_key = "0123456789abcdef";
  apply_environment(s, {{"EMPORIUM_NODE_PORT", ""}, {"EMPORIUM_ADMIN_KEY", ""}});
  CHECK_FALSE(s.cluster.node_port.has_value());
  CHECK_FALSE(s.auth.admin_key.has_value());
}

TEST_CASE("a failing environment changes nothing", "[config][env]") {
  settings s;
  // Map order: EMPORIUM_HTTP_HOST is applied before EMPORIUM_HTTP_PORT fails.
  error_of([&] {
    apply_environment(s, {{"EMPORIUM_HTTP_HOST", "0.0.0.0"}, {"EMPORIUM_HTTP_PORT", "x"}});
  });
  CHECK(s.http.host == "127.0.0.1");
}

TEST_CASE("process_environment reads EMPORIUM_ variables from environ", "[config][env]") {
  REQUIRE(::setenv("EMPORIUM_TEST_CONFIG_PROBE", "a=b, c", 1) == 0);
  REQUIRE(::setenv("NOT_EMPORIUM_CONFIG_PROBE", "x", 1) == 0);
  const auto env = process_environment();
  ::unsetenv("EMPORIUM_TEST_CONFIG_PROBE");
  ::unsetenv("NOT_EMPORIUM_CONFIG_PROBE");
  REQUIRE(env.count("EMPORIUM_TEST_CONFIG_PROBE") == 1);
  CHECK(env.at("EMPORIUM_TEST_CONFIG_PROBE") == "a=b, c");
  CHECK(env.count("NOT_EMPORIUM_CONFIG_PROBE") == 0);
  CHECK(env.count("PATH") == 0);
  for (const auto& [name, value] : env)
    CHECK(name.rfind("EMPORIUM_", 0) == 0);
}

// -- command line
// ---------------------------------------------------------------------------------------

TEST_CASE("apply_override converts like the environment", "[config][override]") {
  settings s;
  apply_override(s, "http.port", "9000");
  apply_override(s, "cluster.peers", "a:1, b:2");
  apply_override(s, "rate_limit.refill_per_s", "12.5");
  apply_override(s, "log.level", "trace");
  CHECK(s.http.port == 9000);
  CHECK(s.cluster.peers == std::vector<std::string>{"a:1", "b:2"});
  CHECK(s.rate_limit.refill_per_s == 12.5);
  CHECK(s.log.level == "trace");

  CHECK_THAT(error_of([&] { apply_override(s, "http.port", "abc"); }),
             Contains("http.port") && Contains("'abc'") && Contains("not an integer"));
  CHECK_THAT(error_of([&] { apply_override(s, "http.port", "70000"); }),
             Contains("http.port") && Contains("out of range"));
  CHECK_THAT(error_of([&] { apply_override(s, "http.prot", "1"); }),
             Contains("unknown key 'http.prot'") && Contains("did you mean 'http.port'"));
  CHECK_THAT(error_of([&] { apply_override(s, "port", "1"); }), Contains("unknown key 'port'"));
  CHECK(s.http.port == 9000);
}

TEST_CASE("apply_assignment splits section.key=value at the first '='", "[config][override]") {
  settings s;
  apply_assignment(s, "postgres.url=postgresql://u@h/db?sslmode=disable");
  CHECK(s.postgres.url == "postgresql://u@h/db?sslmode=disable");
  apply_assignment(s, "http.port=9001");
  CHECK(s.http.port == 9001);
  CHECK_THAT(error_of([&] { apply_assignment(s, "http.port"); }),
             Contains("section.key=value") && Contains("http.port"));
  CHECK_THAT(
    error_of([&] { apply_assignment(s, "postgres.url:postgresql://u:" + password + "@h/d"); }),
    !Contains(password));
}

// -- precedence
// -------------------------------------------------------------------------------------------

TEST_CASE("precedence: defaults < TOML < environment < command line", "[config][precedence]") {
  temp_file file(R"(
[http]
port = 8001
threads = 2
[postgres]
pool_size = 6
[log]
level = "debug"
[rate_limit]
capacity = 300
)");
  const std::map<std::string, std::string> env = {
    {"EMPORIUM_HTTP_PORT", "8002"},
    {"EMPORIUM_LOG_LEVEL", "warn"},
    {"EMPORIUM_RATE_REFILL", "50"},
  };

  settings s;
  apply_toml_file(s, file.path());
  CHECK(s.http.port == 8001);
  CHECK(s.http.threads == 2);
  CHECK(s.postgres.pool_size == 6);
  CHECK(s.log.level == "debug");
  CHECK(s.rate_limit.refill_per_s == 100.0); // default survives

  apply_environment(s, env);
  CHECK(s.http.port == 8002);             // env over TOML
  CHECK(s.log.level == "warn");           // env over TOML
  CHECK(s.rate_limit.refill_per_s == 50); // env over default
  CHECK(s.http.threads == 2);             // TOML survives
  CHECK(s.rate_limit.capacity == 300);

  apply_override(s, "http.port", "8003");
  apply_override(s, "postgres.pool_size", "7");
  CHECK(s.http.port == 8003);       // command line over env
  CHECK(s.postgres.pool_size == 7); // command line over TOML
  CHECK(s.log.level == "warn");

  const settings loaded = load(file.path(), env, {"http.port=8003", "postgres.pool_size=7"});
  CHECK(loaded.http.port == 8003);
  CHECK(loaded.postgres.pool_size == 7);
  CHECK(loaded.log.level == "warn");
  CHECK(loaded.http.threads == 2);
  CHECK(loaded.rate_limit.refill_per_s == 50);
  CHECK(loaded.rate_limit.capacity == 300);
  CHECK(loaded.http.body_limit == 1024 * 1024);
}

TEST_CASE("load validates the result", "[config][precedence]") {
  CHECK_THAT(error_of([] {
               load(std::nullopt, {{"EMPORIUM_HTTP_THREADS", "0"}}, {});
             }),
             Contains("http.threads"));
  CHECK_THAT(error_of([] { load(std::nullopt, {}, {"log.level=loud"}); }), Contains("log.level"));
  const settings s = load(std::nullopt, {}, {});
  require_defaults(s);
}

// -- validation
// ---------------------------------------------------------------------------------------------

TEST_CASE("validate rejects each out-of-range value, naming the key", "[config][validate]") {
  struct case_t {
    const char* key;
    std::function<void(settings&)> change;
  };
  const std::vector<case_t> cases = {
    {"http.host", [](settings& s) { s.http.host.clear(); }},
    {"http.port", [](settings& s) { s.http.port = 0; }},
    {"http.threads", [](settings& s) { s.http.threads = 0; }},
    {"auth.session_cache_ms", [](settings& s) { s.auth.session_cache_ms = -1; }},
    {"auth.session_cache_ms", [](settings& s) { s.auth.session_cache_ms = 60'001; }},
    {"http.threads", [](settings& s) { s.http.threads = 65; }},
    {"http.body_limit", [](settings& s) { s.http.body_limit = 0; }},
    {"http.body_limit", [](settings& s) { s.http.body_limit = (std::size_t{1} << 30) + 1; }},
    {"http.header_limit", [](settings& s) { s.http.header_limit = 1023; }},
    {"http.header_limit", [](settings& s) { s.http.header_limit = (1 << 20) + 1; }},
    {"http.header_timeout_ms", [](settings& s) { s.http.header_timeout_ms = 0; }},
    {"http.idle_timeout_ms", [](settings& s) { s.http.idle_timeout_ms = -5; }},
    {"http.request_timeout_ms", [](settings& s) { s.http.request_timeout_ms = 0; }},
    {"http.max_pipeline", [](settings& s) { s.http.max_pipeline = 0; }},
    {"http.max_pipeline", [](settings& s) { s.http.max_pipeline = 1025; }},
    {"http.max_connections", [](settings& s) { s.http.max_connections = 0; }},
    {"http.max_connections_per_address",
     [](settings& s) { s.http.max_connections_per_address = 0; }},
    {"http.body_timeout_ms", [](settings& s) { s.http.body_timeout_ms = 0; }},
    {"postgres.pool_size", [](settings& s) { s.postgres.pool_size = 0; }},
    {"postgres.pool_size", [](settings& s) { s.postgres.pool_size = 257; }},
    {"postgres.connect_timeout_ms", [](settings& s) { s.postgres.connect_timeout_ms = 0; }},
    {"postgres.statement_timeout_ms", [](settings& s) { s.postgres.statement_timeout_ms = -1; }},
    {"postgres.url", [](settings& s) { s.postgres.url = "mysql://h/db"; }},
    {"postgres.url", [](settings& s) { s.postgres.url = "host=h dbname=d"; }},
    {"redis.url", [](settings& s) { s.redis.url = "postgresql://h/0"; }},
    {"redis.url", [](settings& s) { s.redis.url = "redis://h:6379/zero"; }},
    {"redis.timeout_ms", [](settings& s) { s.redis.timeout_ms = 0; }},
    {"redis.ttl_s", [](settings& s) { s.redis.ttl_s = 0; }},
    {"auth.admin_key", [](settings& s) { s.auth.admin_key = "short"; }},
    {"auth.admin_key", [](settings& s) { s.auth.admin_key = std::string(15, 'k'); }},
    {"cluster.node_port", [](settings& s) { s.cluster.node_port = 0; }},
    {"cluster.peers",
     [](settings& s) {
       s.cluster.node_port = 4000;
       s.cluster.peers = {"nohost"};
     }},
    {"cluster.peers",
     [](settings& s) {
       s.cluster.node_port = 4000;
       s.cluster.peers = {"h:"};
     }},
    {"cluster.peers",
     [](settings& s) {
       s.cluster.node_port = 4000;
       s.cluster.peers = {":4000"};
     }},
    {"cluster.peers",
     [](settings& s) {
       s.cluster.node_port = 4000;
       s.cluster.peers = {"a:1", "h:70000"};
     }},
    {"cluster.peers",
     [](settings& s) {
       s.cluster.node_port = 4000;
       s.cluster.peers = {"::1:4000"};
     }},
    {"cluster.node_port", [](settings& s) { s.cluster.peers = {"a:1"}; }},
    {"rate_limit.capacity", [](settings& s) { s.rate_limit.capacity = 0; }},
    {"rate_limit.refill_per_s", [](settings& s) { s.rate_limit.refill_per_s = 0; }},
    {"rate_limit.refill_per_s", [](settings& s) { s.rate_limit.refill_per_s = -1; }},
    {"rate_limit.refill_per_s",
     [](settings& s) { s.rate_limit.refill_per_s = std::numeric_limits<double>::quiet_NaN(); }},
    {"rate_limit.refill_per_s",
     [](settings& s) { s.rate_limit.refill_per_s = std::numeric_limits<double>::infinity(); }},
    {"actors.scheduler_threads", [](settings& s) { s.actors.scheduler_threads = 0; }},
    {"actors.scheduler_threads", [](settings& s) { s.actors.scheduler_threads = 65; }},
    {"actors.scheduler_idle_polls", [](settings& s) { s.actors.scheduler_idle_polls = -1; }},
    {"actors.scheduler_idle_polls", [](settings& s) { s.actors.scheduler_idle_polls = 100'001; }},
    {"orders.max_open_unpaid_per_customer",
     [](settings& s) { s.orders.max_open_unpaid_per_customer = 0; }},
    {"orders.max_units_per_line", [](settings& s) { s.orders.max_units_per_line = 0; }},
    {"orders.payment_workers", [](settings& s) { s.orders.payment_workers = 0; }},
    {"orders.payment_workers", [](settings& s) { s.orders.payment_workers = 65; }},
    {"retention.interval_s", [](settings& s) { s.retention.interval_s = 0; }},
    {"retention.batch_size", [](settings& s) { s.retention.batch_size = 0; }},
    {"retention.expired_grace_h", [](settings& s) { s.retention.expired_grace_h = -1; }},
    // A retry within a day must still find its key.
    {"retention.idempotency_keys_h", [](settings& s) { s.retention.idempotency_keys_h = 23; }},
    {"retention.events_h", [](settings& s) { s.retention.events_h = 0; }},
    {"feeds.max_subscriptions_per_connection",
     [](settings& s) { s.feeds.max_subscriptions_per_connection = 0; }},
    {"feeds.max_connections_per_address",
     [](settings& s) { s.feeds.max_connections_per_address = 0; }},
    {"feeds.send_queue_max", [](settings& s) { s.feeds.send_queue_max = 7; }},
    {"feeds.ping_s", [](settings& s) { s.feeds.ping_s = 0; }},
    {"actors.idle_timeout_s", [](settings& s) { s.actors.idle_timeout_s = 0; }},
    {"log.level", [](settings& s) { s.log.level = "verbose"; }},
    {"log.level", [](settings& s) { s.log.level = "INFO"; }},
    {"log.access_queue_lines", [](settings& s) { s.log.access_queue_lines = 0; }},
  };
  for (const auto& c : cases) {
    INFO(c.key);
    settings s;
    c.change(s);
    CHECK_THAT(error_of([&] { validate(s); }), Contains(c.key));
  }
}

TEST_CASE("validate accepts the boundaries", "[config][validate]") {
  settings s;
  s.http.port = 65535;
  s.http.threads = 64;
  s.http.body_limit = std::size_t{1} << 30;
  s.http.header_limit = 1024;
  s.http.max_pipeline = 1024;
  s.auth.session_cache_ms = 0;
  s.postgres.pool_size = 256;
  s.actors.scheduler_threads = 64;
  s.rate_limit.capacity = 1;
  s.rate_limit.refill_per_s = 0.001;
  s.auth.admin_key = std::string(16, 'k');
  s.cluster.node_port = 1;
  s.cluster.peers = {"10.0.0.1:65535", "node-2.internal:1", "[::1]:4000", "[fe80::1%eth0]:4000"};
  s.postgres.url = "postgres://h";
  s.redis.url = "redis://h";
  for (const char* level : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    INFO(level);
    s.log.level = level;
    CHECK_NOTHROW(validate(s));
  }
  s.http.header_limit = 1 << 20;
  CHECK_NOTHROW(validate(s));
}

TEST_CASE("a port of 70000 fails naming http.port on every path", "[config][validate]") {
  settings s;
  CHECK_THAT(error_of([&] {
               apply_environment(s, {{"EMPORIUM_HTTP_PORT", "70000"}});
             }),
             Contains("http.port") && Contains("EMPORIUM_HTTP_PORT"));
  CHECK_THAT(error_of([&] { apply_override(s, "http.port", "70000"); }), Contains("http.port"));
  CHECK_THAT(error_of([&] { apply_toml_text(s, "[http]\nport = 70000\n", "p.toml"); }),
             Contains("http.port") && Contains("p.toml"));
  CHECK(s.http.port == 8080); // 70000 did not wrap to 4464
}

TEST_CASE("the admin key is never echoed", "[config][validate]") {
  settings s;
  s.auth.admin_key = "tooshortsecret";
  const auto message = error_of([&] { validate(s); });
  CHECK_THAT(message, Contains("auth.admin_key") && Contains("16"));
  CHECK_THAT(message, !Contains("tooshortsecret"));
}

// -- peers
// -----------------------------------------------------------------------------------------------------

TEST_CASE("peers parse from a comma-separated variable and a TOML array", "[config][peers]") {
  settings s;
  apply_environment(s, {{"EMPORIUM_PEERS", " 10.0.0.2:4242 ,node-3:4243,, [::1]:4244 "},
                        {"EMPORIUM_NODE_PORT", "4242"}});
  CHECK(s.cluster.peers == std::vector<std::string>{"10.0.0.2:4242", "node-3:4243", "[::1]:4244"});
  CHECK_NOTHROW(validate(s));

  apply_environment(s, {{"EMPORIUM_PEERS", ""}});
  CHECK(s.cluster.peers.empty());

  apply_toml_text(s, "[cluster]\npeers = [\"x:1\"]\n", "p.toml");
  CHECK(s.cluster.peers == std::vector<std::string>{"x:1"});
  apply_toml_text(s, "[cluster]\npeers = []\n", "p.toml");
  CHECK(s.cluster.peers.empty());
}

TEST_CASE("a bad peer is named by index and value", "[config][peers]") {
  settings s;
  s.cluster.node_port = 4000;
  apply_environment(s, {{"EMPORIUM_PEERS", "a:1,b"}});
  CHECK_THAT(error_of([&] { validate(s); }), Contains("cluster.peers[1]") && Contains("'b'"));
}

// -- URLs
// -------------------------------------------------------------------------------------------------------

TEST_CASE("parse_url splits a full PostgreSQL URL", "[config][url]") {
  const auto u = parse_url(
    "postgres.url",
    "postgresql://app%40shop:p%40ss%3Aw%2Frd@db.internal:6543/shop?sslmode=require&x=1",
    {"postgresql", "postgres"});
  CHECK(u.scheme == "postgresql");
  CHECK(u.user == "app@shop");
  CHECK(u.password == "p@ss:w/rd");
  CHECK(u.host == "db.internal");
  CHECK(u.port == 6543);
  CHECK(u.path == "shop");
  CHECK(u.query == "sslmode=require&x=1");
}

TEST_CASE("parse_url fills default ports and handles minimal forms", "[config][url]") {
  const auto pg = parse_url("postgres.url", "postgres://h", {"postgresql", "postgres"});
  CHECK(pg.scheme == "postgres");
  CHECK(pg.host == "h");
  CHECK(pg.port == 5432);
  CHECK(pg.user.empty());
  CHECK(pg.path.empty());
  CHECK(pg.query.empty());

  const auto pg2 = parse_url("postgres.url", "PostgreSQL://u@h/d", {"postgresql", "postgres"});
  CHECK(pg2.scheme == "postgresql");
  CHECK(pg2.port == 5432);
  CHECK(pg2.user == "u");
  CHECK(pg2.password.empty());

  const auto r = parse_url("redis.url", "redis://:" + password + "@cache/3", {"redis"});
  CHECK(r.user.empty());
  CHECK(r.password == password);
  CHECK(r.host == "cache");
  CHECK(r.port == 6379);
  CHECK(r.path == "3");

  const auto v6 = parse_url("redis.url", "redis://[::1]:6380", {"redis"});
  CHECK(v6.host == "::1");
  CHECK(v6.port == 6380);

  const auto q = parse_url("postgres.url", "postgresql://h:1?application_name=x", {"postgresql"});
  CHECK(q.port == 1);
  CHECK(q.path.empty());
  CHECK(q.query == "application_name=x");

  const auto d = parse_url("postgres.url", "postgresql://emporium@127.0.0.1:5432/emporium",
                           {"postgresql"});
  CHECK(d.user == "emporium");
  CHECK(d.host == "127.0.0.1");
  CHECK(d.port == 5432);
  CHECK(d.path == "emporium");
}

TEST_CASE("parse_url rejects malformed URLs naming the key and hiding the password",
          "[config][url]") {
  const std::vector<std::string> pg = {"postgresql", "postgres"};
  struct case_t {
    std::string url, why;
  };
  const std::vector<case_t> cases = {
    {"db.internal:5432/shop", "not a URL"},
    {"user:" + password + "@db/shop", "not a URL"},
    {"host=db password=" + password, "not a URL"},
    {"://u:" + password + "@h/d", "not a URL"},
    {"mysql://u:" + password + "@h/d", "scheme 'mysql'"},
    {"postgresql://u:" + password + "@/d", "empty host"},
    {"postgresql://u:" + password + "@:5432/d", "empty host"},
    {"postgresql:///d", "empty host"},
    {"postgresql://u:" + password + "@h:70000/d", "bad port"},
    {"postgresql://u:" + password + "@h:0/d", "bad port"},
    {"postgresql://u:" + password + "@h:/d", "bad port"},
    {"postgresql://u:" + password + "@h:54x/d", "bad port"},
    {"postgresql://u:" + password + "@h:-1/d", "bad port"},
    {"postgresql://u:" + password + "@h:5432:1/d", "bad port"},
    {"postgresql://u:" + password + "%zz@h/d", "percent-encoding in the password"},
    {"postgresql://u%4:" + password + "@h/d", "percent-encoding in the user"},
    {"postgresql://u:" + password + "@[::1/d", "unterminated"},
    {"postgresql://u:" + password + "@ho st/d", "bad host"},
    {"postgresql://u:pa/" + password + "@h/d", "percent-encoded"},
  };
  for (const auto& c : cases) {
    INFO(c.url);
    const auto message = error_of([&] { parse_url("postgres.url", c.url, pg); });
    CHECK_THAT(message, Contains("postgres.url") && Contains(c.why));
    CHECK_THAT(message, !Contains(password));
  }
}

TEST_CASE("validate does not echo a URL's password", "[config][url]") {
  settings s;
  s.postgres.url = "postgresql://emporium:" + password + "@db:99999/emporium";
  auto message = error_of([&] { validate(s); });
  CHECK_THAT(message, Contains("postgres.url") && Contains("***") && !Contains(password));

  s = settings{};
  s.redis.url = "rediss://:" + password + "@cache:6379/0";
  message = error_of([&] { validate(s); });
  CHECK_THAT(message, Contains("redis.url") && Contains("rediss") && !Contains(password));

  // An environment variable with a bad URL is accepted as text, then rejected by validate.
  s = settings{};
  apply_environment(s, {{"EMPORIUM_PG_URL", "postgresql://u:" + password + "@/d"}});
  message = error_of([&] { validate(s); });
  CHECK_THAT(message, Contains("postgres.url") && !Contains(password));
}

TEST_CASE("redact_url hides passwords in user info and parameters", "[config][url]") {
  CHECK(redact_url("postgresql://u:" + password + "@h:5432/d") == "postgresql://u:***@h:5432/d");
  CHECK(redact_url("redis://:" + password + "@h/0") == "redis://:***@h/0");
  CHECK(redact_url("postgresql://u@h/d") == "postgresql://u@h/d");
  CHECK(redact_url("postgresql://h:5432/d") == "postgresql://h:5432/d");
  CHECK(redact_url("postgresql://h/d?user=u&password=" + password + "&sslmode=require")
        == "postgresql://h/d?user=u&password=***&sslmode=require");
  CHECK(redact_url("host=h PASSWORD=" + password + " dbname=d") == "host=h PASSWORD=*** dbname=d");
  CHECK_THAT(redact_url("postgresql://u:a@b" + password + "@h/d"), !Contains(password));
}

// -- the HTTP gateway's keys
// ------------------------------------------------------------------------

TEST_CASE("gateway keys: defaults, environment names, overrides and validation",
          "[config][gateway]") {
  const settings d;
  CHECK(d.http.drain_timeout_ms == 10'000);
  CHECK(d.http.cors_origins.empty());
  CHECK(d.rate_limit.mode == "auto");
  CHECK_FALSE(d.rate_limit.read_capacity.has_value());
  CHECK_FALSE(d.rate_limit.write_refill_per_s.has_value());
  CHECK(d.rate_limit.login_capacity == 10);
  CHECK(d.rate_limit.login_refill_per_s == 0.2);
  CHECK(d.rate_limit.redis_timeout_ms == 50);
  CHECK(d.rate_limit.max_buckets == 100'000);

  settings s;
  apply_environment(s,
                    {
                      {"EMPORIUM_HTTP_DRAIN_TIMEOUT_MS", "2500"},
                      {"EMPORIUM_HTTP_CORS_ORIGINS", "https://shop.example, http://localhost:3000"},
                      {"EMPORIUM_RATE_LIMIT_MODE", "redis"},
                      {"EMPORIUM_RATE_LIMIT_READ_CAPACITY", "50"},
                      {"EMPORIUM_RATE_LIMIT_WRITE_REFILL_PER_S", "0.5"},
                      {"EMPORIUM_RATE_LIMIT_LOGIN_CAPACITY", "3"},
                      {"EMPORIUM_RATE_LIMIT_LOGIN_REFILL_PER_S", "0.05"},
                      {"EMPORIUM_RATE_LIMIT_REDIS_TIMEOUT_MS", "20"},
                      {"EMPORIUM_RATE_LIMIT_MAX_BUCKETS", "1000"},
                      {"EMPORIUM_RATE_LIMIT_SIGNUP_CAPACITY", "2"},
                      {"EMPORIUM_RATE_LIMIT_SIGNUP_REFILL_PER_S", "0.01"},
                      {"EMPORIUM_HTTP_TRUSTED_PROXIES", "10.0.0.0/8,::1"},
                      {"EMPORIUM_HTTP_MAX_CONNECTIONS_PER_ADDRESS", "32"},
                      {"EMPORIUM_HTTP_BODY_TIMEOUT_MS", "4000"},
                    });
  CHECK(s.http.drain_timeout_ms == 2500);
  CHECK(s.http.cors_origins
        == std::vector<std::string>{"https://shop.example", "http://localhost:3000"});
  CHECK(s.rate_limit.mode == "redis");
  CHECK(s.rate_limit.read_capacity == 50);
  CHECK(s.rate_limit.write_refill_per_s == 0.5);
  CHECK(s.rate_limit.login_capacity == 3);
  CHECK(s.rate_limit.login_refill_per_s == 0.05);
  CHECK(s.rate_limit.redis_timeout_ms == 20);
  CHECK(s.rate_limit.max_buckets == 1000);
  CHECK(s.rate_limit.signup_capacity == 2);
  CHECK(s.rate_limit.signup_refill_per_s == 0.01);
  CHECK(s.http.trusted_proxies == std::vector<std::string>{"10.0.0.0/8", "::1"});
  CHECK(s.http.max_connections_per_address == 32);
  CHECK(s.http.body_timeout_ms == 4000);
  CHECK_NOTHROW(validate(s));
  // An empty value unsets an override again.
  apply_environment(s, {{"EMPORIUM_RATE_LIMIT_READ_CAPACITY", ""}});
  CHECK_FALSE(s.rate_limit.read_capacity.has_value());

  settings t;
  apply_toml_text(t, "[http]\ncors_origins = [\"*\"]\n[rate_limit]\nwrite_capacity = 7\n", "test");
  CHECK(t.http.cors_origins == std::vector<std::string>{"*"});
  CHECK(t.rate_limit.write_capacity == 7);
  CHECK_NOTHROW(validate(t));

  struct case_t {
    const char* key;
    std::function<void(settings&)> change;
  };
  const std::vector<case_t> cases = {
    {"http.drain_timeout_ms", [](settings& x) { x.http.drain_timeout_ms = 0; }},
    {"http.cors_origins", [](settings& x) { x.http.cors_origins = {"shop.example"}; }},
    {"http.cors_origins", [](settings& x) { x.http.cors_origins = {"https://shop.example/"}; }},
    {"http.cors_origins",
     [](settings& x) {
       x.http.cors_origins = {"https://a.example", "https://"};
     }},
    {"rate_limit.mode", [](settings& x) { x.rate_limit.mode = "cluster"; }},
    {"rate_limit.read_capacity", [](settings& x) { x.rate_limit.read_capacity = 0; }},
    {"rate_limit.read_refill_per_s", [](settings& x) { x.rate_limit.read_refill_per_s = 0.0; }},
    {"rate_limit.write_capacity", [](settings& x) { x.rate_limit.write_capacity = -1; }},
    {"rate_limit.write_refill_per_s",
     [](settings& x) {
       x.rate_limit.write_refill_per_s = std::numeric_limits<double>::infinity();
     }},
    {"rate_limit.login_capacity", [](settings& x) { x.rate_limit.login_capacity = 0; }},
    {"rate_limit.login_refill_per_s", [](settings& x) { x.rate_limit.login_refill_per_s = -0.1; }},
    {"rate_limit.redis_timeout_ms", [](settings& x) { x.rate_limit.redis_timeout_ms = 0; }},
    {"rate_limit.redis_timeout_ms", [](settings& x) { x.rate_limit.redis_timeout_ms = 10'001; }},
    {"rate_limit.max_buckets", [](settings& x) { x.rate_limit.max_buckets = 15; }},
    {"rate_limit.signup_capacity", [](settings& x) { x.rate_limit.signup_capacity = 0; }},
    {"rate_limit.signup_refill_per_s", [](settings& x) { x.rate_limit.signup_refill_per_s = 0; }},
    {"http.trusted_proxies",
     [](settings& x) {
       x.http.trusted_proxies = {"10.0.0.0/8", "x"};
     }},
  };
  for (const auto& c : cases) {
    INFO(c.key);
    settings x;
    c.change(x);
    CHECK_THAT(error_of([&] { validate(x); }), Contains(c.key));
  }
}

TEST_CASE("cluster keys: names, TLS all or none, timeouts, and shared rate limits with peers",
          "[config][cluster]") {
  const settings d;
  CHECK(d.cluster.node_host == "127.0.0.1");
  CHECK_FALSE(d.cluster.insecure_bind);
  CHECK(d.cluster.heartbeat_ms == 500);
  CHECK(d.cluster.peer_timeout_ms == 2000);

  auto s = load(std::nullopt,
                {{"EMPORIUM_NODE_HOST", "10.0.0.5"},
                 {"EMPORIUM_NODE_PORT", "7001"},
                 {"EMPORIUM_PEERS", "10.0.0.6:7001,10.0.0.7:7001"},
                 {"EMPORIUM_CLUSTER_INSECURE_BIND", "yes"}},
                {});
  CHECK(s.cluster.node_host == "10.0.0.5");
  CHECK(s.cluster.insecure_bind);
  // auto resolves to the shared buckets when there are peers, and to local without.
  CHECK(s.rate_limit.mode == "redis");
  CHECK(load(std::nullopt, {}, {}).rate_limit.mode == "local");
  CHECK_THROWS_WITH(load(std::nullopt,
                         {{"EMPORIUM_NODE_PORT", "7001"},
                          {"EMPORIUM_PEERS", "10.0.0.6:7001"},
                          {"EMPORIUM_RATE_LIMIT_MODE", "local"}},
                         {}),
                    Contains("rate_limit.mode must be redis"));
  CHECK_THROWS_WITH(
    load(std::nullopt, {{"EMPORIUM_NODE_HOST", "10.0.0.5"}, {"EMPORIUM_NODE_PORT", "7001"}}, {}),
    Contains("not a loopback address"));
  CHECK_NOTHROW(
    load(std::nullopt, {{"EMPORIUM_NODE_HOST", "127.0.0.2"}, {"EMPORIUM_NODE_PORT", "7001"}}, {}));
  CHECK_THROWS_WITH(load(std::nullopt, {{"EMPORIUM_CLUSTER_INSECURE_BIND", "maybe"}}, {}),
                    Contains("not a boolean"));
  CHECK_THROWS_WITH(load(std::nullopt, {{"EMPORIUM_CLUSTER_TLS_CERTIFICATE", "/a.pem"}}, {}),
                    Contains("all three or none"));
  CHECK_THROWS_WITH(
    load(std::nullopt,
         {{"EMPORIUM_CLUSTER_HEARTBEAT_MS", "500"}, {"EMPORIUM_CLUSTER_PEER_TIMEOUT_MS", "900"}},
         {}),
    Contains("peer_timeout_ms"));
  settings t;
  apply_toml_text(t, "[cluster]\ninsecure_bind = true\n", "test");
  CHECK(t.cluster.insecure_bind);
  CHECK_THROWS_WITH(apply_toml_text(t, "[cluster]\ninsecure_bind = 1\n", "test"),
                    Contains("a boolean"));
}
