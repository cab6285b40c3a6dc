// The Prometheus registry: values, histogram buckets, the text format.

#include "http/metrics.hpp"

#include <catch2/catch.hpp>

#include <thread>
#include <vector>

using namespace emporium::http::metrics;
using Catch::Contains;

TEST_CASE("counters, gauges and labelled children render in the text format", "[metrics]") {
  registry r;
  auto& requests = r.family_counter("t_requests_total", "Requests", {"route", "code"});
  requests.with({"/a", "2xx"}).inc();
  requests.with({"/a", "2xx"}).inc(2);
  requests.with({"/b \"q\"\\", "5xx"}).inc();
  auto& open = r.family_gauge("t_open", "Open things").get();
  open.inc();
  open.inc();
  open.dec();
  auto text = r.render();
  CHECK_THAT(text, Contains("# HELP t_requests_total Requests\n# TYPE t_requests_total counter\n"));
  CHECK_THAT(text, Contains("t_requests_total{route=\"/a\",code=\"2xx\"} 3\n"));
  CHECK_THAT(text, Contains("t_requests_total{route=\"/b \\\"q\\\"\\\\\",code=\"5xx\"} 1\n"));
  CHECK_THAT(text, Contains("# TYPE t_open gauge\nt_open 1\n"));
  CHECK(text.back() == '\n');
}

TEST_CASE("histograms are cumulative with +Inf, _sum and _count", "[metrics]") {
  registry r;
  auto& h = r.family_histogram("t_seconds", "Latency", {"route"}, {0.001, 0.01, 0.1}).with({"/x"});
  for (double v : {0.0005, 0.001, 0.005, 0.05, 0.5, 2.0})
    h.observe(v);
  auto text = r.render();
  CHECK_THAT(text, Contains("# TYPE t_seconds histogram\n"));
  CHECK_THAT(text, Contains("t_seconds_bucket{route=\"/x\",le=\"0.001\"} 2\n"));
  CHECK_THAT(text, Contains("t_seconds_bucket{route=\"/x\",le=\"0.01\"} 3\n"));
  CHECK_THAT(text, Contains("t_seconds_bucket{route=\"/x\",le=\"0.1\"} 4\n"));
  CHECK_THAT(text, Contains("t_seconds_bucket{route=\"/x\",le=\"+Inf\"} 6\n"));
  CHECK_THAT(text, Contains("t_seconds_count{route=\"/x\"} 6\n"));
  CHECK_THAT(text, Contains("t_seconds_sum{route=\"/x\"} 2.556"));
  CHECK(h.read().sum == Approx(2.5565));
}

TEST_CASE("collectors add families read at scrape time", "[metrics]") {
  registry r;
  int calls = 0;
  r.add_collector([&calls](writer& w) {
    ++calls;
    w.header("t_external_total", "Owned elsewhere", kind::counter);
    w.sample("t_external_total", {{"kind", "product"}}, 42);
  });
  auto text = r.render();
  CHECK(calls == 1);
  CHECK_THAT(text, Contains("t_external_total{kind=\"product\"} 42\n"));
}

TEST_CASE("updates from many threads are all counted", "[metrics]") {
  registry r;
  auto& fam = r.family_counter("t_total", "Many", {"thread"});
  auto& shared = r.family_histogram("t_h", "Many", {}, {1}).get();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&fam, &shared, t] {
      for (int i = 0; i < 10'000; ++i) {
        fam.with({"all"}).inc();
        fam.with({std::to_string(t)}).inc();
        shared.observe(0.5);
      }
    });
  for (auto& th : threads)
    th.join();
  CHECK(fam.with({"all"}).value() == 40'000);
  CHECK(fam.with({"2"}).value() == 10'000);
  auto snap = shared.read();
  CHECK(snap.cumulative.back() == 40'000);
  CHECK(snap.sum == Approx(20'000));
}

TEST_CASE("status classes", "[metrics]") {
  CHECK(status_class(200) == "2xx");
  CHECK(status_class(304) == "3xx");
  CHECK(status_class(429) == "4xx");
  CHECK(status_class(503) == "5xx");
  CHECK(status_class(42) == "other");
}
