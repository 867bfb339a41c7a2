#pragma once
#include <string>
#include <vector>

namespace cvmsim {

struct CoverageOptions {
  std::vector<std::string> paths;  // scenario files, directories of them, coverage.json files
  unsigned jobs = 1;
  std::string dot_machine;  // --dot MACHINE: write the machine as DOT instead of the report
  bool plain = false;       // --plain: no runs, the declared machine only (no colours)
  bool refusals = false;    // list never-exercised refusals too / draw refusal self-loops
  bool quiet = false;       // no per-scenario progress lines
};

// `cvmsim coverage` (docs/coverage.md): runs each scenario as its own `cvmsim check --out`
// process (SystemC elaborates once per process), merges their coverage.json files and prints the
// report. Exit status 0, 1 if undeclared transitions were observed or a scenario failed to run
// (internal error), 2 on bad input.
int run_coverage(const CoverageOptions& o, const char* self);

// `cvmsim list --machines`: the declared machines, their states, operations and transitions.
int print_machines();

}  // namespace cvmsim
