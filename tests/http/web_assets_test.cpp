// The live page as the binary serves it (GET / and GET /assets/{name}, http/web_assets.hpp):
// the embedded files, their media types, strong ETags and 304s, the policy headers, 404s.
// Through the server's own router, as a request reaches them.

#include "http/web_assets.hpp"
#include "actors/runtime.hpp"
#include "core/ids.hpp"
#include "http/routes.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <regex>
#include <set>

using namespace emporium;
namespace web = emporium::http::web;

namespace {

/// The server's router over a runtime that starts no connection.
struct served {
  served() : rt{s}, a{rt, s}, r{http::make_router(a)} {}
  ~served() { rt.shutdown(); }

  static config::settings settings() {
    config::settings st;
    st.postgres.pool_size = 1;
    return st;
  }

  /// The answer to `method target` with the given headers; the handlers answer synchronously.
  http::response call(const std::string& method, const std::string& path,
                      http::header_map headers = {}) {
    http::request req;
    req.method = method;
    req.target = path;
    req.path = path;
    req.headers = std::move(headers);
    auto m = r.match(method, path);
    REQUIRE(m.matched != nullptr);
    std::optional<http::response> out;
    m.matched->handle(req, m.params,
                      http::responder{[&out](http::responder::make_fn make) { out = make(); }});
    REQUIRE(out);
    return *out;
  }

  config::settings s = settings();
  actors::runtime rt;
  http::app a;
  http::router r;
};

std::vector<std::string> values(const http::response& res, const std::string& name) {
  std::vector<std::string> out;
  for (const auto& [k, v] : res.headers)
    if (k == name)
      out.push_back(v);
  return out;
}

std::string one(const http::response& res, const std::string& name) {
  auto v = values(res, name);
  INFO(name);
  REQUIRE(v.size() == 1);
  return v.front();
}

} // namespace

TEST_CASE("web: the page's files are embedded with their media types and strong ETags", "[web]") {
  std::set<std::string> names;
  std::set<std::string> etags;
  for (const auto& a : web::assets()) {
    INFO(a.name);
    names.insert(std::string{a.name});
    CHECK_FALSE(a.bytes.empty());
    // Strong (no W/), quoted, the first 32 hex digits of the bytes' SHA-256.
    CHECK(a.etag == "\"" + core::sha256_hex(a.bytes).substr(0, 32) + "\"");
    etags.insert(std::string{a.etag});
    auto ext = std::string{a.name.substr(a.name.rfind('.'))};
    if (ext == ".html")
      CHECK(a.content_type == "text/html; charset=utf-8");
    else if (ext == ".js")
      CHECK(a.content_type == "text/javascript; charset=utf-8");
    else if (ext == ".css")
      CHECK(a.content_type == "text/css; charset=utf-8");
    else
      FAIL("an embedded file of unexpected type");
  }
  CHECK(etags.size() == names.size());
  for (const char* n : {"index.html", "app.js", "style.css"})
    CHECK(names.count(n) == 1);
  CHECK(web::find("app.js") != nullptr);
  CHECK(web::find("nope.js") == nullptr);

  // What the document and the modules load is embedded: every /assets/ reference of the HTML,
  // every relative import of a module.
  const std::regex asset_ref{R"re("/assets/([^"]+)")re"};
  const std::regex import_ref{R"re(from "\./([^"]+)")re"};
  auto html = std::string{web::find("index.html")->bytes};
  int refs = 0;
  for (std::sregex_iterator it{html.begin(), html.end(), asset_ref}, end; it != end; ++it, ++refs)
    CHECK(names.count((*it)[1].str()) == 1);
  CHECK(refs >= 2);
  for (const auto& a : web::assets()) {
    if (a.content_type.substr(0, 15) != "text/javascript")
      continue;
    auto js = std::string{a.bytes};
    for (std::sregex_iterator it{js.begin(), js.end(), import_ref}, end; it != end; ++it) {
      INFO(a.name << " imports " << (*it)[1].str());
      CHECK(names.count((*it)[1].str()) == 1);
    }
  }
}

TEST_CASE("web: GET / answers the page with its policy headers, ETag and Cache-Control", "[web]") {
  served s;
  auto res = s.call("GET", "/");
  CHECK(res.status == 200);
  CHECK(res.content_type == "text/html; charset=utf-8");
  CHECK(res.body == web::find("index.html")->bytes);
  CHECK(one(res, "ETag") == web::find("index.html")->etag);
  CHECK(one(res, "Cache-Control") == "no-cache");
  CHECK(one(res, "X-Content-Type-Options") == "nosniff");
  CHECK(one(res, "Referrer-Policy") == "no-referrer");
  auto csp = one(res, "Content-Security-Policy");
  // Only this origin, nothing inline, no framing, no forms posted, no <base>.
  for (const char* d : {"default-src 'none'", "script-src 'self'", "style-src 'self'",
                        "connect-src 'self'", "img-src 'self' data:", "base-uri 'none'",
                        "form-action 'none'", "frame-ancestors 'none'"}) {
    INFO(d);
    CHECK(csp.find(d) != std::string::npos);
  }
  CHECK(csp.find("unsafe") == std::string::npos);
  CHECK(csp.find('*') == std::string::npos);
  // HEAD is served by the same handler (the connection drops the body, keeps the length).
  auto head = s.call("HEAD", "/");
  CHECK(head.status == 200);
  CHECK(one(head, "ETag") == one(res, "ETag"));
}

TEST_CASE("web: If-None-Match naming the ETag answers 304 without a body, another 200", "[web]") {
  served s;
  const auto etag = std::string{web::find("app.js")->etag};
  for (const auto& inm :
       {etag, "W/" + etag, "\"other\", " + etag, std::string{"*"}, "\"x\" ,\t" + etag + " "}) {
    INFO(inm);
    auto res = s.call("GET", "/assets/app.js", {{"if-none-match", inm}});
    CHECK(res.status == 304);
    CHECK(res.body.empty());
    CHECK(one(res, "ETag") == etag);
    CHECK(one(res, "Cache-Control") == "no-cache");
  }
  for (const auto& inm : {std::string{"\"other\""}, etag.substr(1, etag.size() - 2),
                          std::string{web::find("style.css")->etag}}) {
    INFO(inm);
    auto res = s.call("GET", "/assets/app.js", {{"if-none-match", inm}});
    CHECK(res.status == 200);
    CHECK(res.body == web::find("app.js")->bytes);
  }
  auto page = s.call("GET", "/", {{"if-none-match", std::string{web::find("index.html")->etag}}});
  CHECK(page.status == 304);
  CHECK(page.body.empty());
  CHECK(values(page, "Content-Security-Policy").size() == 1);
}

TEST_CASE("web: GET /assets/{name} answers each file with its type, else 404 problem+json",
          "[web]") {
  served s;
  auto js = s.call("GET", "/assets/app.js");
  CHECK(js.status == 200);
  CHECK(js.content_type == "text/javascript; charset=utf-8");
  CHECK(one(js, "X-Content-Type-Options") == "nosniff");
  CHECK(one(js, "Referrer-Policy") == "no-referrer");
  CHECK(values(js, "Content-Security-Policy").empty());
  auto css = s.call("GET", "/assets/style.css");
  CHECK(css.status == 200);
  CHECK(css.content_type == "text/css; charset=utf-8");
  CHECK(css.body == web::find("style.css")->bytes);

  // The document is served at / only; names are matched exactly, nothing is a path.
  for (const char* name :
       {"nope.js", "index.html", "APP.JS", "app.js.map", "..", "%2e%2e", "app.js%00", "app.js "}) {
    INFO(name);
    auto res = s.call("GET", std::string{"/assets/"} + name);
    CHECK(res.status == 404);
    CHECK(res.content_type == "application/problem+json");
    CHECK(nlohmann::json::parse(res.body)["status"] == 404);
  }
}
