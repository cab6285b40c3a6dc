#include "hostile/hostile_support.hpp"

#include "faults/fault_support.hpp"
#include "support/test_env.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>

namespace emporium::hostile {

std::size_t log_lines(const test::server_process& srv) {
  std::ifstream log{srv.log_path()};
  return static_cast<std::size_t>(
    std::count(std::istreambuf_iterator<char>{log}, std::istreambuf_iterator<char>{}, '\n'));
}

void report_hostile(const std::string& name, const std::string& sent,
                    const std::map<int, std::size_t>& by_status, const std::string& figures) {
  std::ostringstream line;
  line << name << ": sent " << sent << "; answers {" << faults::format_statuses(by_status) << "}; "
       << figures;
  report_line(line.str());
}

void report_line(const std::string& line) {
  std::cout << "HOSTILE " << line << std::endl;
  WARN("HOSTILE " << line);
  auto path = test::env_or("EMPORIUM_TEST_FAULTS_SUMMARY", "");
  if (!path.empty()) {
    std::ofstream out{path, std::ios::app};
    out << "HOSTILE " << line << "\n";
  }
}

double percentile(std::vector<double>& values, double p) {
  if (values.empty())
    return 0;
  std::sort(values.begin(), values.end());
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
  return values[std::min(values.size() - 1, rank == 0 ? 0 : rank - 1)];
}

} // namespace emporium::hostile
