#pragma once
/// What every fuzz target asserts with: `expect(check)` is a check that must hold whatever the
/// input. A violation is a bug, reported as a crash that names the file, the line and the check
/// (libFuzzer then saves the input).

#include <cstdio>
#include <cstdlib>

namespace emporium::fuzz {

inline void check_or_abort(bool ok, const char* file, int line, const char* what) {
  if (ok)
    return;
  std::fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
  std::abort();
}

} // namespace emporium::fuzz

#define expect(ok) ::emporium::fuzz::check_or_abort((ok), __FILE__, __LINE__, #ok)
