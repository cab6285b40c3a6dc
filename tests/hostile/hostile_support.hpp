#pragma once
/// What the hostile tests share besides the fault harness: the server's footprint (log lines;
/// its resident memory is server_process::rss_kib) and the one summary line each test prints for
/// the closing note.

#include "e2e/server_process.hpp"

#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace emporium::hostile {

/// Lines in the server's log so far.
std::size_t log_lines(const test::server_process& srv);

/// "HOSTILE <line>", printed on stdout, given to Catch as a WARN, and appended to
/// $EMPORIUM_TEST_FAULTS_SUMMARY when set (.ci/run prints that file in its summary).
void report_line(const std::string& line);

/// report_line of "<name>: sent <what>; answers {...}; <figures>".
void report_hostile(const std::string& name, const std::string& sent,
                    const std::map<int, std::size_t>& by_status, const std::string& figures);

/// The p-th percentile (0..100) of `values` (sorted in place); 0 when empty.
double percentile(std::vector<double>& values, double p);

} // namespace emporium::hostile
