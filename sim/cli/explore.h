#pragma once
#include "sim/explore/explorer.h"
namespace cvmsim {
// `cvmsim explore` (docs/explore.md). Exit status: 0 no violation, 1 a violation was found (and,
// with --out, its shrunk reproducer written), 2 bad usage, 3 internal error (the reproducer did
// not replay: the explorer and the platform disagree, a bug).
int run_explore(const explore::Options& o, const std::string& out, bool quiet);
// --list-policies (--markdown: the table of docs/explore.md).
int print_policies(bool markdown);
}  // namespace cvmsim
