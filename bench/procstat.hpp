#pragma once
/// CPU time and memory of server processes, from /proc (Linux). A "tree" is a process and its
/// direct children (nginx's workers, PostgreSQL's backends); children that exited are counted
/// through the parent's cutime/cstime once it has reaped them.

#include <dirent.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

namespace emporium::bench::procstat {

struct stat_line {
  bool ok = false;
  int ppid = 0;
  std::uint64_t utime = 0, stime = 0, cutime = 0, cstime = 0; ///< clock ticks
};

inline stat_line read_stat(int pid) {
  stat_line s;
  std::ifstream in{"/proc/" + std::to_string(pid) + "/stat"};
  std::string text;
  if (!std::getline(in, text))
    return s;
  // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
  auto close = text.rfind(')');
  if (close == std::string::npos)
    return s;
  std::istringstream rest{text.substr(close + 2)};
  std::vector<std::string> f{std::istream_iterator<std::string>{rest}, {}};
  // f[0] is field 3 (state): utime is field 14, so f[11]; stime f[12]; cutime f[13]; cstime f[14].
  if (f.size() < 15)
    return s;
  s.ppid = std::stoi(f[1]);
  s.utime = std::stoull(f[11]);
  s.stime = std::stoull(f[12]);
  s.cutime = std::stoull(f[13]);
  s.cstime = std::stoull(f[14]);
  s.ok = true;
  return s;
}

inline std::vector<int> children_of(int pid) {
  std::vector<int> out;
  if (DIR* d = opendir("/proc")) {
    while (auto* e = readdir(d)) {
      char* end = nullptr;
      long p = std::strtol(e->d_name, &end, 10);
      if (*end != '\0' || p <= 0)
        continue;
      auto s = read_stat(static_cast<int>(p));
      if (s.ok && s.ppid == pid)
        out.push_back(static_cast<int>(p));
    }
    closedir(d);
  }
  return out;
}

/// CPU seconds (user + system) used so far by `pid`, its live children, and its reaped children.
inline double tree_cpu_seconds(int pid) {
  auto s = read_stat(pid);
  if (!s.ok)
    return -1;
  std::uint64_t ticks = s.utime + s.stime + s.cutime + s.cstime;
  for (int c : children_of(pid)) {
    auto cs = read_stat(c);
    if (cs.ok)
      ticks += cs.utime + cs.stime;
  }
  return static_cast<double>(ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

/// A "Vm...:" line of /proc/PID/status in KiB (VmHWM: peak resident set; VmRSS: now), or -1.
inline std::int64_t status_kib(int pid, const std::string& key) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/status"};
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, key.size() + 1, key + ":") == 0)
      return std::stoll(line.substr(key.size() + 1));
  return -1;
}

/// Sum of `key` over the process and its live children.
inline std::int64_t tree_status_kib(int pid, const std::string& key) {
  auto total = status_kib(pid, key);
  if (total < 0)
    return -1;
  for (int c : children_of(pid))
    if (auto v = status_kib(c, key); v > 0)
      total += v;
  return total;
}

} // namespace emporium::bench::procstat
