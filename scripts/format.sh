#!/usr/bin/env bash
# Format the C++ sources with clang-format and the repository's .clang-format.
#
#   scripts/format.sh            rewrite every tracked C++ source in place
#   scripts/format.sh --check    change nothing; list each deviation and exit non-zero if any
#                                (the `format` step of .ci/run)
#   scripts/format.sh [--check] FILE...   only those files
#
# The sources are the tracked *.cpp, *.hpp and *.h files (git ls-files), fuzz corpora excluded
# (their inputs are data, whatever their names). clang-format is Debian 12's (version 14);
# another version may format some constructs differently.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$EMPORIUM_ROOT"

check=0
if [[ "${1:-}" == "--check" ]]; then
  check=1
  shift
fi

emporium_ensure_deps

files=()
if (($# > 0)); then
  files=("$@")
elif git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files -- '*.cpp' '*.hpp' '*.h' ':!:fuzz/corpus/**' ':!:fuzz/regressions/**')
else
  mapfile -t files < <(find . \( -path ./fuzz/corpus -o -path ./fuzz/regressions -o -path './build*' \
    -o -path ./.local -o -path ./.git \) -prune -o -type f \( -name '*.cpp' -o -name '*.hpp' \
    -o -name '*.h' \) -print | sed 's|^\./||' | sort)
fi
if ((${#files[@]} == 0)); then
  emporium_err "no C++ sources found"
  exit 1
fi

if ((check)); then
  status=0
  clang-format --dry-run --Werror "${files[@]}" || status=$?
  if ((status != 0)); then
    emporium_err "some sources are not formatted: run scripts/format.sh (clang-format $(clang-format --version | grep -o '[0-9][0-9.]*' | head -1))"
  else
    emporium_log "format: ${#files[@]} sources formatted"
  fi
  exit "$status"
fi
clang-format -i "${files[@]}"
emporium_log "format: ${#files[@]} sources formatted in place"
