// End-to-end: the HTTP behaviour of the server itself:
// body and header limits, pipelining, keep-alive, slow clients, graceful shutdown, garbage.
// One shared server for the default settings; extra ones only for special settings.

#include "e2e/http_client.hpp"
#include "e2e/server_process.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace emporium::test;
using json = nlohmann::json;
using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

long long ms_since(steady::time_point t0) {
  return std::chrono::duration_cast<milliseconds>(steady::now() - t0).count();
}

void check_problem(const http_response& r, int status) {
  INFO("answer: " << r.status << " " << r.body.substr(0, 500));
  REQUIRE(r.status == status);
  CHECK(r.header("content-type").rfind("application/problem+json", 0) == 0);
  auto j = r.json();
  CHECK(j.value("status", json()) == status);
  CHECK(j.value("type", json()).is_string());
  CHECK(j.value("title", json()).is_string());
  CHECK(j.value("detail", json()).is_string());
}

/// A POST /products body of exactly `size` bytes (valid JSON; the description pads it).
std::string body_of_size(std::size_t size) {
  json j{{"sku", unique("e2e-sku")}, {"name", "padded"}, {"price_cents", 1},
         {"currency", "EUR"},        {"stock", 1},       {"description", ""}};
  auto base = j.dump().size();
  REQUIRE(size >= base);
  j["description"] = std::string(size - base, 'd');
  auto s = j.dump();
  REQUIRE(s.size() == size);
  return s;
}

std::string create_product(http_client& c, const std::string& category) {
  json body{{"sku", unique("e2e-sku")}, {"name", "Pipelined"}, {"price_cents", 100},
            {"currency", "EUR"},        {"stock", 1},          {"category", category}};
  auto r = c.request("POST", "/products", body.dump(), {{"Authorization", admin_bearer()}});
  INFO(r.body);
  REQUIRE(r.status == 201);
  return r.json()["id"].get<std::string>();
}

/// A string literal's bytes, NULs included.
template <std::size_t N>
std::string bytes_of(const char (&s)[N]) {
  return std::string(s, N - 1);
}

std::string raw_get(const std::string& target, const std::string& extra = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + "\r\n";
}

/// One client-to-server WebSocket text frame (RFC 6455 §5.2: FIN, masked), for payloads under
/// 126 bytes.
std::string masked_text_frame(const std::string& payload) {
  const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
  std::string frame;
  frame += static_cast<char>(0x81);
  frame += static_cast<char>(0x80 | payload.size());
  for (unsigned char m : mask)
    frame += static_cast<char>(m);
  for (std::size_t i = 0; i < payload.size(); ++i)
    frame += static_cast<char>(static_cast<unsigned char>(payload[i]) ^ mask[i % 4]);
  return frame;
}

bool still_serves(const server_process& srv) {
  try {
    return http_request(srv.host(), srv.port(), "GET", "/healthz", "", {}, milliseconds(3000))
             .status
           == 200;
  } catch (const std::exception&) {
    return false;
  }
}

} // namespace

TEST_CASE("protocol: a body over the limit answers 413 problem+json", "[e2e][protocol][limits]") {
  const header_map admin{{"Authorization", admin_bearer()}};

  SECTION("EMPORIUM_HTTP_BODY_LIMIT=1024 and 2 KB") {
    server_process srv{{{"EMPORIUM_HTTP_BODY_LIMIT", "1024"}}};
    http_client c{srv.host(), srv.port()};
    check_problem(c.request("POST", "/products", body_of_size(2048), admin), 413);
    // Within the limit, the body is read and judged on its content.
    auto ok = c.request("POST", "/products", body_of_size(1000), admin);
    CHECK(ok.status == 201);

    // The same with a chunked body.
    http_client raw{srv.host(), srv.port()};
    auto body = body_of_size(2048);
    std::ostringstream chunked;
    chunked << "POST /products HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " << admin_bearer()
            << "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (std::size_t i = 0; i < body.size(); i += 512)
      chunked << std::hex << std::min<std::size_t>(512, body.size() - i) << "\r\n"
              << body.substr(i, 512) << "\r\n";
    chunked << "0\r\n\r\n";
    raw.try_send_raw(chunked.str());
    check_problem(raw.read_response(), 413);

    // A Content-Length over the limit is refused without waiting for the body: the body never
    // comes, and the client waits 5 s, far less than the server's body timeout (30 s).
    http_client early{srv.host(), srv.port(), milliseconds(5000)};
    early.send_raw("POST /products HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + admin_bearer()
                   + "\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\n\r\n{");
    check_problem(early.read_response(), 413);
    CHECK(still_serves(srv));
  }

  SECTION("the default limit: 1 MiB + 1 byte is 413, 1 MiB is not") {
    auto& srv = shared_server();
    http_client c{srv.host(), srv.port(), milliseconds(20'000)};
    check_problem(c.request("POST", "/products", body_of_size(1024 * 1024 + 1), admin), 413);
    auto at_limit = c.request("POST", "/products", body_of_size(1024 * 1024), admin);
    INFO(at_limit.body.substr(0, 300));
    CHECK(at_limit.status == 400); // read in full; the description is too long
    CHECK(still_serves(srv));
  }
}

TEST_CASE("protocol: a header block over 16 KiB answers 431", "[e2e][protocol][limits]") {
  auto& srv = shared_server();
  {
    http_client c{srv.host(), srv.port()};
    check_problem(c.get("/healthz", {{"X-Filler", std::string(17 * 1024, 'h')}}), 431);
  }
  {
    header_map many;
    for (int i = 0; i < 100; ++i)
      many["X-Filler-" + std::to_string(i)] = std::string(200, 'm');
    http_client c{srv.host(), srv.port()};
    check_problem(c.get("/healthz", many), 431);
  }
  {
    http_client c{srv.host(), srv.port()};
    auto r = c.get("/healthz", {{"X-Filler", std::string(15 * 1024, 'h')}});
    CHECK(r.status == 200);
  }
  CHECK(still_serves(srv));
}

TEST_CASE("protocol: pipelined requests are answered in order", "[e2e][protocol][pipelining]") {
  auto& srv = shared_server();
  http_client setup{srv.host(), srv.port()};
  auto category = unique("e2e-cat");
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i)
    ids.push_back(create_product(setup, category));

  SECTION("five requests in one write") {
    http_client c{srv.host(), srv.port()};
    c.send_raw(raw_get("/products/" + ids[0]) + raw_get("/healthz") + raw_get("/products/" + ids[1])
               + raw_get("/healthz") + raw_get("/products/" + ids[2]));
    std::vector<std::string> expected{ids[0], "ok", ids[1], "ok", ids[2]};
    for (std::size_t i = 0; i < expected.size(); ++i) {
      auto r = c.read_response();
      INFO("answer " << i << ": " << r.status << " " << r.body);
      REQUIRE(r.status == 200);
      auto j = r.json();
      if (expected[i] == "ok")
        CHECK(j.value("status", "") == "ok");
      else
        CHECK(j.value("id", "") == expected[i]);
    }
  }

  SECTION("slow and fast requests mixed, the last one closing") {
    // Listing pages go to PostgreSQL, /healthz answers at once, a cold unknown id loads from
    // Redis and PostgreSQL: answered out of order inside, they must leave in order.
    std::string wire;
    std::vector<std::string> expected;
    for (int round = 0; round < 3; ++round) {
      for (int k = 1; k <= 3; ++k) {
        wire += raw_get("/products?limit=" + std::to_string(k) + "&category=" + category);
        expected.push_back("list" + std::to_string(k));
        wire += raw_get("/healthz");
        expected.push_back("ok");
      }
      wire += raw_get("/products/prod_0000000000000000000000000" + std::to_string(round));
      expected.push_back("404");
      wire += raw_get("/products/" + ids[static_cast<std::size_t>(round)]);
      expected.push_back(ids[static_cast<std::size_t>(round)]);
    }
    wire += raw_get("/healthz", "Connection: close\r\n");
    expected.push_back("ok");

    http_client c{srv.host(), srv.port()};
    c.send_raw(wire);
    for (std::size_t i = 0; i < expected.size(); ++i) {
      auto r = c.read_response();
      INFO("answer " << i << " (expected " << expected[i] << "): " << r.status << " " << r.body);
      const auto& e = expected[i];
      if (e == "404") {
        CHECK(r.status == 404);
      } else if (e == "ok") {
        REQUIRE(r.status == 200);
        CHECK(r.json().value("status", "") == "ok");
      } else if (e.rfind("list", 0) == 0) {
        REQUIRE(r.status == 200);
        auto items = r.json()["items"];
        REQUIRE(items.size() == static_cast<std::size_t>(e[4] - '0'));
        CHECK(items[0]["id"] == ids[0]);
      } else {
        REQUIRE(r.status == 200);
        CHECK(r.json()["id"] == e);
      }
    }
    // The request asking to close was the last one answered.
    CHECK(c.read_raw_until_close_or(milliseconds(3000)).empty());
    CHECK(c.peer_closed());
  }
}

TEST_CASE(
  "protocol: a WebSocket upgrade pipelined behind a request takes the connection over, and "
  "nothing else reads from it",
  "[e2e][protocol][pipelining]") {
  auto& srv = shared_server();
  http_client setup{srv.host(), srv.port()};
  auto category = unique("e2e-cat");
  auto id = create_product(setup, category);
  const std::string subscribe = R"({"subscribe":"product:)" + id + R"("})";
  REQUIRE(subscribe.size() < 126);
  for (int round = 0; round < 5; ++round) {
    INFO("round " << round);
    http_client c{srv.host(), srv.port()};
    // One write: a list (answered later, from PostgreSQL) and the upgrade (answered at once, on
    // the connection's strand, while the list's answer is still to come).
    c.send_raw(raw_get("/products?limit=5&category=" + category)
               + "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n");
    auto first = c.read_response();
    REQUIRE(first.status == 200);
    auto handshake = c.read_raw_until_close_or(milliseconds(500));
    INFO(handshake);
    REQUIRE(handshake.rfind("HTTP/1.1 101", 0) == 0);
    // The client speaks once the handshake is answered (RFC 6455 §4.1): the WebSocket, and
    // nothing left of the HTTP session, reads this frame.
    c.send_raw(masked_text_frame(subscribe));
    auto ack = c.read_raw_until_close_or(milliseconds(1500));
    INFO(ack);
    CHECK(ack.find(R"("type":"subscribed")") != std::string::npos);
    CHECK(ack.find("product:" + id) != std::string::npos);
  }
  CHECK(still_serves(srv));
}

TEST_CASE("protocol: keep-alive serves many requests on one connection",
          "[e2e][protocol][keep-alive]") {
  auto& srv = shared_server();
  http_client c{srv.host(), srv.port()};
  auto category = unique("e2e-cat");
  auto id = create_product(c, category);
  for (int i = 0; i < 20; ++i) {
    auto r = i % 3 == 0   ? c.get("/healthz")
             : i % 3 == 1 ? c.get("/products/" + id)
                          : c.get("/products?limit=5&category=" + category);
    INFO("request " << i << ": " << r.body);
    REQUIRE(r.status == 200);
    CHECK(r.header("connection") != "close");
  }
  // Errors keep the connection as well.
  CHECK(c.get("/nope").status == 404);
  CHECK(c.get("/products?limit=0").status == 400);
  CHECK(c.get("/healthz").status == 200);
  CHECK(c.connections_opened() == 1);
}

TEST_CASE(
  "protocol: a client trickling its header is cut off after the header timeout, while "
  "others are served",
  "[e2e][protocol][timeouts]") {
  server_process srv{{{"EMPORIUM_HTTP_HEADER_TIMEOUT_MS", "1000"}}};
  http_client slow{srv.host(), srv.port()};
  http_client other{srv.host(), srv.port()};
  REQUIRE(other.get("/healthz").status == 200);

  // One header byte every 300 ms: the header would take 40 × 0.3 = 12 s to finish.
  const int header_bytes = 40;
  auto t0 = steady::now();
  slow.send_raw("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
  int sent = 0;
  bool closed = false;
  std::vector<int> other_status;
  long long worst_other_ms = 0;
  std::string received;
  while (sent < header_bytes && ms_since(t0) < 10'000) {
    if (!slow.try_send_raw("a")) {
      closed = true;
      break;
    }
    ++sent;
    received += slow.read_raw_until_close_or(milliseconds(300));
    if (slow.peer_closed()) {
      closed = true;
      break;
    }
    // Meanwhile a well-behaved client on another connection is served as usual.
    auto t1 = steady::now();
    other_status.push_back(other.get("/healthz").status);
    worst_other_ms = std::max(worst_other_ms, ms_since(t1));
  }
  auto cut_after = ms_since(t0);
  INFO("cut after " << cut_after << " ms, " << sent << " of " << header_bytes
                    << " header bytes sent; received: " << received.substr(0, 200));
  CHECK(closed);
  CHECK(sent < header_bytes);
  CHECK(cut_after < 5000);
  CHECK(cut_after >= 800); // not before the timeout
  // Either nothing or an error answer (408) before the close, never a 200.
  CHECK((received.empty() || received.rfind("HTTP/1.1 408", 0) == 0));
  CHECK(other_status.size() >= 2);
  for (auto s : other_status)
    CHECK(s == 200);
  INFO("the other client's slowest answer meanwhile: " << worst_other_ms
                                                       << " ms"); // speed is bench/'s
  CHECK(other.get("/healthz").status == 200);
}

TEST_CASE(
  "protocol: SIGTERM finishes in-flight requests, closes idle connections, exits 0 and "
  "stops accepting",
  "[e2e][protocol][shutdown]") {
  server_process srv;
  http_client setup{srv.host(), srv.port()};
  auto category = unique("e2e-cat");
  for (int i = 0; i < 3; ++i)
    create_product(setup, category);
  setup.close();

  // An idle kept-alive connection, and one with eight requests in flight.
  http_client idle{srv.host(), srv.port()};
  REQUIRE(idle.get("/healthz").status == 200);
  http_client busy{srv.host(), srv.port()};
  const int in_flight = 8;
  std::string wire;
  for (int i = 0; i < in_flight; ++i)
    wire += raw_get(i % 2 == 0 ? "/products?limit=100" : "/products?limit=2&category=" + category);
  busy.send_raw(wire);
  // The first answer shows the server has read the whole batch (it arrived in one segment and
  // is parsed ahead): the others are in flight when SIGTERM arrives.
  auto first = busy.read_response();
  REQUIRE(first.status == 200);
  auto t0 = steady::now();
  srv.send_signal(SIGTERM);

  int answered = 1;
  for (int i = 1; i < in_flight; ++i) {
    http_response r;
    try {
      r = busy.read_response();
    } catch (const std::exception& e) {
      FAIL("request " << i << " of the batch in flight at SIGTERM got no answer: " << e.what());
    }
    INFO("answer " << i << ": " << r.body.substr(0, 200));
    CHECK(r.status == 200);
    CHECK(r.json()["items"].is_array());
    ++answered;
  }
  CHECK(answered == in_flight);
  // The idle connection is closed at once.
  CHECK(idle.read_raw_until_close_or(milliseconds(5000)).empty());
  CHECK(idle.peer_closed());
  // No longer accepting, even if the process is still finishing.
  CHECK_FALSE(can_connect(srv.host(), srv.port()));
  // Whether `busy` is closed right after its last answer is the next test case's subject: here
  // it depends on the order in which the batch completed.

  int status = srv.wait_exit(milliseconds(20'000));
  auto exit_ms = ms_since(t0);
  INFO("exited " << exit_ms << " ms after SIGTERM; log:\n" << srv.log_tail(1500));
  REQUIRE(status != -1);
  CHECK(status == 0);
  CHECK_FALSE(can_connect(srv.host(), srv.port()));
  CHECK_FALSE(srv.running());
}

TEST_CASE(
  "protocol: SIGTERM while answers are still being written closes the connection after "
  "the last one",
  "[e2e][protocol][shutdown]") {
  server_process srv;
  // Products of ~50 KB (a long description, 20 long image URLs): a page of 20 is ~1 MB, and
  // eight pages (~8 MB) do not fit in the socket buffers while the client reads nothing, so the
  // server is still writing ready answers when SIGTERM arrives.
  http_client setup{srv.host(), srv.port()};
  auto category = unique("e2e-cat");
  const int products = 20;
  json images = json::array();
  for (int i = 0; i < 20; ++i)
    images.push_back("https://example.com/" + std::to_string(i) + "/" + std::string(2000, 'i'));
  for (int i = 0; i < products; ++i) {
    json body{{"sku", unique("e2e-sku")},
              {"name", "Bulky"},
              {"price_cents", 100},
              {"currency", "EUR"},
              {"stock", 1},
              {"category", category},
              {"description", std::string(10'000, 'b')},
              {"images", images}};
    REQUIRE(
      setup.request("POST", "/products", body.dump(), {{"Authorization", admin_bearer()}}).status
      == 201);
  }
  setup.close();

  http_client busy{srv.host(), srv.port(), milliseconds(20'000)};
  const int batch = 8;
  std::string wire;
  for (int i = 0; i < batch; ++i)
    wire += raw_get("/products?limit=100&category=" + category);
  busy.send_raw(wire);
  // Long enough for every answer to be ready; the client reads nothing yet.
  std::this_thread::sleep_for(milliseconds(500));
  auto t0 = steady::now();
  srv.send_signal(SIGTERM);
  for (int i = 0; i < batch; ++i) {
    auto r = busy.read_response();
    INFO("answer " << i << ": " << r.body.substr(0, 200));
    REQUIRE(r.status == 200);
    CHECK(r.json()["items"].size() == products);
  }
  auto got = busy.read_raw_until_close_or(milliseconds(3000));
  auto closed_ms = ms_since(t0);
  INFO("after the last answer: " << got.size() << " more bytes, closed: " << busy.peer_closed()
                                 << ", " << closed_ms << " ms after SIGTERM");
  CHECK(got.empty());
  // After the last pipelined request the session is already waiting for the next one, and
  // answers that were ready before the drain carry no `Connection: close`: the session must
  // still close the draining connection once they are written, or the client sees no end of
  // the exchange and SIGTERM waits for the 10 s drain deadline.
  CHECK(busy.peer_closed());
  int status = srv.wait_exit(milliseconds(25'000));
  INFO("exited " << ms_since(t0) << " ms after SIGTERM");
  REQUIRE(status != -1);
  CHECK(status == 0);
}

TEST_CASE(
  "protocol: a chunk's size line or a trailer that never ends is refused past the header "
  "limit, not buffered",
  "[e2e][protocol][limits]") {
  // Beast's header and body limits count neither: before this was checked, the server kept
  // every byte of an endless chunk extension until the body timeout.
  auto& srv = shared_server();
  const std::string head =
    "POST /customers HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    "Transfer-Encoding: chunked\r\n\r\n";
  const std::string endless(20 * 1024, 'a'); // over the default header limit (16 KiB)
  for (const auto& [what, bytes] : std::vector<std::pair<std::string, std::string>>{
         {"a chunk extension", head + "1;" + endless},
         {"a trailer", head + "1\r\n{\r\n0\r\nX-Trailer: " + endless},
       }) {
    INFO(what);
    http_client c{srv.host(), srv.port(), milliseconds(5000)};
    c.try_send_raw(bytes);
    auto answer = c.read_response();
    check_problem(answer, 400);
    CHECK(answer.body.find("16384 bytes") != std::string::npos);
  }
  CHECK(still_serves(srv));
}

TEST_CASE("protocol: garbage instead of HTTP answers 400 or closes, and the server goes on",
          "[e2e][protocol][robustness]") {
  auto& srv = shared_server();
  const std::vector<std::pair<std::string, std::string>> garbage{
    {"a TLS ClientHello", bytes_of("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")
                            + std::string(64, '\x5a') + "\r\n\r\n"},
    {"binary with NULs", bytes_of("\x00\x01\x02\x03\xff\xfe garbage\r\n\r\n")},
    {"a request line of one word", "HELLO\r\n\r\n"},
    {"a header line without a colon",
     "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header Line\r\n\r\n"},
    {"a non-numeric Content-Length",
     "POST /products HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n"},
    {"two different Content-Lengths",
     "POST /products HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nContent-Length: "
     "3\r\n\r\n{}"},
    {"a bad chunk size",
     "POST /products HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n\r\n"},
    {"SSH banner", "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"},
  };
  for (const auto& [what, bytes] : garbage) {
    http_client c{srv.host(), srv.port(), milliseconds(5000)};
    c.try_send_raw(bytes);
    auto t0 = steady::now();
    auto got = c.read_raw_until_close_or(milliseconds(4000));
    INFO(what << ": received " << got.size() << " bytes: " << got.substr(0, 300) << " after "
              << ms_since(t0) << " ms");
    CHECK(c.peer_closed()); // answered and closed, or just closed: never left hanging
    CHECK((got.empty() || got.rfind("HTTP/1.1 400", 0) == 0));
    CHECK(still_serves(srv));
  }
}
