#pragma once
/// A list of entity ids from a text file (`emporium-bench --ids-file`): one id per line, the
/// line's surrounding blanks ignored, empty lines and lines starting with '#' skipped. bench/
/// cluster.sh writes such files to aim requests at the products one node owns.

#include <istream>
#include <string>
#include <vector>

namespace emporium::bench {

/// The ids in `in`, in file order (duplicates kept: a list may weight an id by repeating it).
/// Throws std::invalid_argument naming the line when a line holds more than one word.
std::vector<std::string> read_id_list(std::istream& in);

/// read_id_list of the file at `path`. Throws std::invalid_argument when it cannot be read or
/// holds no id.
std::vector<std::string> load_id_file(const std::string& path);

} // namespace emporium::bench
