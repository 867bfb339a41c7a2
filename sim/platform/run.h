// Running a scenario: builds the SystemC platform from a validated ScenarioConfig, simulates it
// and returns what the command writes. SystemC elaborates once per process, so run_scenario may
// be called at most once per process.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "sim/config/loader.h"

namespace cvmsim {

class PhysMem;
namespace kvm {
class Kvm;
}
namespace sm {
class Coverage;
}

// A look at the simulated state while the scenario runs (cvmsim graph). `when` says when it
// was taken: "after step N" or "at the end of the run".
using StateSnapshot = std::function<void(const kvm::Kvm&, const PhysMem&, const std::string& when)>;

struct RunOptions {
  bool progress = false;   // a progress line on stderr (the CLI enables it on a terminal)
  std::string trace_path;  // trace file to write when the scenario asks for a trace
  // Called once: right after scenario step `snapshot_step` completes (a vmm/host step after
  // its invariant check; a vCPU step when the vCPU has finished the step's last operation, in
  // that vCPU's thread), or at the end of the run when no step is named or the step never
  // completed. Nothing is called when `snapshot` is empty.
  StateSnapshot snapshot;
  std::optional<size_t> snapshot_step;
  // The run's transition coverage (docs/coverage.md): its KVM and TDX module record into it,
  // from the set-up to the platform's teardown, which happens after run_scenario has built its
  // report, so the caller reads it after the call. Null: the run keeps its own and drops it.
  sm::Coverage* coverage = nullptr;
};

struct RunReport {
  std::string stats_json;
  std::string stats_csv;
  std::string summary;                // short human-readable text
  std::vector<std::string> problems;  // expectations not met / vCPUs stopped on an error
  size_t expectations = 0;            // scenario step expectations checked
  std::vector<std::string> expectation_failures;  // "step N (actor op): what happened"
  uint64_t sim_time_ps = 0;
  // Every invariant violation found (expected or not) with where, what and the trace events
  // before it (Checker::report); cvmsim writes it to violations.txt. Empty if none.
  std::string violations_report;
};

// Throws std::runtime_error on an internal failure (a bug), never for bad input: the input was
// validated when it was loaded.
RunReport run_scenario(const config::LoadedScenario& scenario, const RunOptions& opts);

}  // namespace cvmsim
