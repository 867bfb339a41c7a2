// Running a scenario: builds the SystemC platform from a validated ScenarioConfig, simulates it
// and returns what the command writes. SystemC elaborates once per process, so run_scenario may
// be called at most once per process.
#pragma once

#include <string>
#include <vector>

#include "sim/config/loader.h"

namespace cvmsim {

struct RunOptions {
  bool progress = false;       // a progress line on stderr (the CLI enables it on a terminal)
  std::string trace_path;      // trace file to write when the scenario asks for a trace
};

struct RunReport {
  std::string stats_json;
  std::string stats_csv;
  std::string summary;                 // short human-readable text
  std::vector<std::string> problems;   // expectations not met / vCPUs stopped on an error
  size_t expectations = 0;             // scenario step expectations checked
  std::vector<std::string> expectation_failures;  // "step N (actor op): what happened"
  uint64_t sim_time_ps = 0;
};

// Throws std::runtime_error on an internal failure (a bug), never for bad input: the input was
// validated when it was loaded.
RunReport run_scenario(const config::LoadedScenario& scenario, const RunOptions& opts);

}  // namespace cvmsim
