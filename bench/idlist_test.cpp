#include "bench/idlist.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using emporium::bench::load_id_file;
using emporium::bench::read_id_list;

TEST_CASE("an id list keeps one id per line in file order, blanks and comments skipped",
          "[bench][ids]") {
  std::istringstream in{
    "# products owned by 127.0.0.1:7001\n"
    "prod_01A\n"
    "\n"
    "  prod_01B  \r\n"
    "\t\n"
    "   # an indented comment\n"
    "prod_01A\n"
    "prod_01C"};
  CHECK(read_id_list(in)
        == std::vector<std::string>{"prod_01A", "prod_01B", "prod_01A", "prod_01C"});
}

TEST_CASE("an id list refuses a line with two words and names the line", "[bench][ids]") {
  std::istringstream in{"prod_01A\nprod_01B 127.0.0.1:7002\n"};
  CHECK_THROWS_WITH(read_id_list(in), Catch::Contains("line 2") && Catch::Contains("prod_01B"));
}

TEST_CASE("an id file that is missing or holds no id is refused", "[bench][ids]") {
  CHECK_THROWS_AS(load_id_file("/nonexistent/emporium-ids.txt"), std::invalid_argument);

  char path[] = "/tmp/emporium-idlist-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  {
    std::ofstream out{path};
    out << "# nothing but a comment\n\n";
  }
  CHECK_THROWS_WITH(load_id_file(path), Catch::Contains("no id"));
  {
    std::ofstream out{path, std::ios::trunc};
    out << "prod_01X\nprod_01Y\n";
  }
  CHECK(load_id_file(path) == std::vector<std::string>{"prod_01X", "prod_01Y"});
  std::remove(path);
}
