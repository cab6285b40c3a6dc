// The live page end to end in headless Chromium: this test starts the server, seeds through the
// API what the page needs (a category of its own with two products, a customer who orders
// through the API), and runs tests/browser/live_page.mjs against it, which drives the browser
// and fails on any console error, failed request, or live update that does not show.

#include "e2e/commerce_support.hpp"
#include "e2e/http_client.hpp"
#include "e2e/server_process.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace emporium::test;
using json = nlohmann::json;

namespace {

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in{p};
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Single-quoted for sh.
std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s)
    out += c == '\'' ? std::string{"'\\''"} : std::string(1, c);
  return out + "'";
}

std::string new_product(http_client& c, const std::string& category, const std::string& name,
                        int stock) {
  json body{{"sku", unique("page-sku")},
            {"name", name},
            {"price_cents", 1250},
            {"currency", "USD"},
            {"stock", stock},
            {"weight_grams", 300},
            {"category", category},
            {"description", "Seeded by the browser test"}};
  auto r = c.request("POST", "/products", body.dump(), admin());
  INFO("POST /products -> " << show(r));
  REQUIRE(r.status == 201);
  return r.json().at("id").get<std::string>();
}

} // namespace

TEST_CASE("the live page shows stock and order status changes without a reload", "[browser]") {
  const auto modules = env_or("EMPORIUM_TEST_NODE_MODULES", "");
  if (modules.empty())
    FAIL("EMPORIUM_TEST_NODE_MODULES is not set: run the suite through scripts/test.sh");
  const auto chromium = env_or("EMPORIUM_TEST_CHROMIUM", "/usr/bin/chromium");
  if (!std::filesystem::exists(chromium))
    FAIL("no Chromium at " + chromium + " (Debian package chromium; scripts/test.sh installs it)");

  server_process srv{shop::commerce_env()};
  http_client c{srv.host(), srv.port()};

  // What the page will list: a category of this run only, so the catalog shows just these.
  const auto category = unique("live-page");
  json seed{{"category", category},
            {"products",
             {new_product(c, category, "Stoneware mug <b>&amp;", 40),
              new_product(c, category, "Linen apron", 30)}}};
  auto buyer = shop::new_shopper(c);
  seed["buyer"] = {{"id", buyer.id}, {"token", buyer.token}};
  seed["address"] = address("US");

  const std::filesystem::path artifacts{EMPORIUM_BROWSER_ARTIFACTS};
  std::filesystem::remove_all(artifacts); // this run's screenshots only
  std::filesystem::create_directories(artifacts);
  const auto seed_path = artifacts / "seed.json";
  std::ofstream{seed_path} << seed.dump(2);
  const auto log_path = artifacts / "live_page.log";

  const std::string base = "http://" + srv.host() + ":" + std::to_string(srv.port());
  // No terminal, no display: stdin from /dev/null, Chromium headless (the script's doing).
  std::string cmd = "EMPORIUM_BROWSER_ADMIN_KEY=" + quoted(test_admin_key)
                    + " EMPORIUM_TEST_CHROMIUM=" + quoted(chromium)
                    + " EMPORIUM_BROWSER_ARTIFACTS=" + quoted(artifacts.string())
                    + " timeout -k 10 240 node " + quoted(EMPORIUM_BROWSER_SCRIPT) + " "
                    + quoted(base) + " " + quoted(seed_path.string()) + " </dev/null >"
                    + quoted(log_path.string()) + " 2>&1";
  int status = std::system(cmd.c_str());
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  // The seed holds a session token: it does not stay behind with the screenshots.
  std::filesystem::remove(seed_path);
  INFO("node live_page.mjs exited " << code << "; its log (" << log_path.string() << "):\n"
                                    << read_file(log_path) << "\nthe server's log:\n"
                                    << srv.log_tail());
  CHECK(code == 0);
}
