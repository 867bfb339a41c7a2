#!/usr/bin/env bash
# Names every C++ file (*.cpp, *.h; scenarios/ holds data, not code) that clang-format, with the
# .clang-format at the top, would change, and exits 1 if there is one. Files are git's tracked
# files, or, outside a git checkout, those find sees (build trees excluded).
# Exit status: 0 all formatted, 1 some are not, 77 clang-format is missing (ctest: skipped).
# Fix with: clang-format -i <file>...
set -euo pipefail
cd "$(dirname "$0")/.."
CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
if ! command -v "$CLANG_FORMAT" >/dev/null; then
  echo "check-format: $CLANG_FORMAT not found (scripts/install-deps.sh installs it)" >&2
  exit 77
fi

if command -v git >/dev/null && git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t listed < <(git ls-files -- '*.cpp' '*.h')
else
  mapfile -t listed < <(find . \( -path './build*' -o -path './.git' \) -prune -o \
                             -type f \( -name '*.cpp' -o -name '*.h' \) -print | sed 's|^\./||' | sort)
fi
files=()
for f in "${listed[@]}"; do
  # A tracked file deleted in the work tree is not there to check.
  [[ $f == scenarios/* || ! -f $f ]] || files+=("$f")
done
[ ${#files[@]} -gt 0 ] || { echo "check-format: no C++ files found" >&2; exit 1; }

# One clang-format run for all files; each unformatted place is reported as
# "file:line:col: error: code should be clang-formatted [-Wclang-format-violations]".
rc=0
out=$("$CLANG_FORMAT" --dry-run --Werror "${files[@]}" 2>&1) || rc=$?
[ $rc -eq 0 ] && exit 0
bad=$(sed -n 's/^\(.*\):[0-9]*:[0-9]*: error: code should be clang-formatted.*/\1/p' <<<"$out" | sort -u)
if [ -z "$bad" ]; then
  echo "check-format: $CLANG_FORMAT failed:" >&2
  echo "$out" >&2
  exit 1
fi
echo "check-format: $(wc -l <<<"$bad") file(s) not formatted with $($CLANG_FORMAT --version | head -1):"
echo "$bad" | sed 's/^/  /'
echo "fix with: clang-format -i <file>..."
exit 1
