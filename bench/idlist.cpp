#include "bench/idlist.hpp"

#include <fstream>
#include <stdexcept>

namespace emporium::bench {

namespace {

bool blank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

} // namespace

std::vector<std::string> read_id_list(std::istream& in) {
  std::vector<std::string> ids;
  std::string line;
  for (std::size_t number = 1; std::getline(in, line); ++number) {
    std::size_t begin = 0, end = line.size();
    while (begin < end && blank(line[begin]))
      ++begin;
    while (end > begin && blank(line[end - 1]))
      --end;
    if (begin == end || line[begin] == '#')
      continue;
    for (std::size_t i = begin; i < end; ++i)
      if (blank(line[i]))
        throw std::invalid_argument("line " + std::to_string(number)
                                    + ": one id per line expected, got '"
                                    + line.substr(begin, end - begin) + "'");
    ids.push_back(line.substr(begin, end - begin));
  }
  return ids;
}

std::vector<std::string> load_id_file(const std::string& path) {
  std::ifstream in{path};
  if (!in)
    throw std::invalid_argument("--ids-file " + path + ": cannot be read");
  std::vector<std::string> ids;
  try {
    ids = read_id_list(in);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("--ids-file " + path + ": " + e.what());
  }
  if (ids.empty())
    throw std::invalid_argument("--ids-file " + path + ": no id in it");
  return ids;
}

} // namespace emporium::bench
