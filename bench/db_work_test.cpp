#include "bench/db_work.hpp"

#include <catch2/catch.hpp>

using emporium::bench::db_counters;
using emporium::bench::difference;
using emporium::bench::writes_json;

TEST_CASE("a window's writes are the counters' growth, tables that wrote nothing left out") {
  db_counters before;
  before.commits = 100;
  before.rollbacks = 2;
  before.tables["orders"] = {10, 4, 0, 0};
  before.tables["products"] = {50, 20, 15, 0};
  db_counters after = before;
  after.commits = 130;
  after.tables["orders"] = {20, 14, 0, 0};
  after.tables["products"] = {50, 40, 33, 0};
  after.tables["events"] = {30, 0, 0, 0}; // a table first seen after the window began

  auto w = difference(before, after);
  CHECK(w.commits == 30);
  CHECK(w.rollbacks == 0);
  REQUIRE(w.tables.count("orders") == 1);
  CHECK(w.tables.at("orders").inserted == 10);
  CHECK(w.tables.at("orders").updated == 10);
  CHECK(w.tables.at("products").updated == 20);
  CHECK(w.tables.at("products").hot_updated == 18);
  CHECK(w.tables.at("events").inserted == 30);

  after.tables["orders"] = before.tables["orders"]; // no writes to orders in the window
  CHECK(difference(before, after).tables.count("orders") == 0);
}

TEST_CASE("the writes per order divide by the window's orders, and are null without orders") {
  db_counters w;
  w.commits = 25;
  w.tables["orders"] = {10, 20, 0, 0};
  w.tables["events"] = {40, 0, 0, 0};
  w.tables["products"] = {0, 20, 15, 0};

  auto j = writes_json(w, 10);
  CHECK(j["commits_per_order"].get<double>() == Approx(2.5));
  CHECK(j["inserted"].get<std::int64_t>() == 50);
  CHECK(j["inserted_per_order"].get<double>() == Approx(5.0));
  CHECK(j["updated_per_order"].get<double>() == Approx(4.0));
  CHECK(j["hot_updated"].get<std::int64_t>() == 15);
  CHECK(j["tables"]["events"]["inserted_per_order"].get<double>() == Approx(4.0));

  auto none = writes_json(w, 0);
  CHECK(none["commits_per_order"].is_null());
  CHECK(none["commits"].get<std::int64_t>() == 25);
}
