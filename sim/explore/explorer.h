// Random exploration (sim/explore, docs/explore.md): random operations from every actor (guest
// accesses and conversions, VMM uAPI calls, host reads and writes, optionally a hostile host
// kernel) on a small platform, the incremental invariant checker at every operation boundary,
// and, on a violation, a delta-debugging shrink to a short sequence that is written as a
// scenario `cvmsim check` replays (each operation is a config::StepConfig, so a sequence IS a
// scenario). Pure C++: guests run on hw/cpu/functional_cpu, not on the SystemC vCPU module.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sim/config/loader.h"
#include "sim/config/step_config.h"

namespace cvmsim::explore {

// A policy the explorer can switch (--policy NAME[=VALUE]). A new knob is one entry of the
// table in explorer.cpp: its name, the scenario field it sets, its mainline value and the
// unsafe value --policy NAME alone selects. An empty path is an explorer knob (hostile: the
// host kernel's attack operations join the mix).
struct PolicyKnob {
  std::string_view name;
  std::string_view path;      // dotted scenario field, e.g. platform.kvm.gmem_rebind
  std::string_view mainline;  // default value
  std::string_view unsafe;    // value selected by --policy NAME
  std::string_view backend;   // backend the benchmark explores it on
  std::string_view description;
};
std::span<const PolicyKnob> policy_knobs();

struct Options {
  std::string backend = "sw_protected";  // a registered backend (models/backend/registry.h)
  std::vector<std::string> policies;     // NAME or NAME=VALUE
  uint64_t seed = 1;
  uint64_t ops = 10'000;
  uint64_t check_every = 1;  // run the checker at the boundaries of every K-th operation
  bool shrink = true;
  uint64_t max_shrink_runs = 3000;  // re-runs the shrinker may spend
  bool keep_sequence = true;        // keep the operations (needed to shrink and write a reproducer)
  uint64_t keep_limit =
      2'000'000;  // runs of more operations regenerate them on a violation instead
};

// One operation, compactly (a million of them fit in memory); to_step() makes it a step.
struct Op {
  config::StepOp op = config::StepOp::kLoad;
  uint8_t actor = 0;  // 0 vmm, 1 host, 2 + v: vCPU 0 of VM v
  uint8_t to_vm = 0;  // hostile_map: the VM that gets the mapping
  uint16_t vm = 0;  // VM the step acts on: "vm<vm>"; 0 and 1 the VMMs' VMs, >= 2 made by create_vm
  bool flag = false;  // convert/guest_convert: to private; attributes: PRIVATE; fallocate: punch;
                      // memslot: GUEST_MEMFD; close: the VM
  int32_t gmem =
      -1;  // guest_memfd: < 256 the VMM's own, "vm<gmem/2>.mem<gmem%2>", else "g<gmem-256>"
  uint32_t slot = 0;  // memslot; create_vm: the VM type (KVM_X86_*_VM)
  uint64_t gpa = 0, size = 0, offset = 0, value = 0;
};

// What one operation did (for the generator and the reproducer's expectations).
struct Outcome {
  bool clean = true;  // every result is one a step can expect (an errno, a stop, a return value)
  std::string errno_name;  // vmm/host steps: the call's errno name, "OK" on success
  bool stopped = false;    // vCPU steps: the vCPU stopped
  uint64_t ret = 0;        // guest_convert: value the guest got
  std::vector<std::string>
      violations;             // invariant ids the checks at this operation's boundaries found
  std::string first_message;  // the first violation's message
};

struct Found {
  std::string invariant;  // the first id found
  std::string message;
  uint64_t op_index = 0;  // 0-based index of the operation in the explored sequence
};

struct Result {
  config::Json scenario_base;  // the platform and VMs, without steps
  uint64_t ops_executed = 0;
  double seconds = 0;  // host time of the exploration (shrinking excluded)
  uint64_t errnos = 0, stops = 0;
  std::optional<Found> violation;
  std::vector<Op> sequence;  // the explored operations up to the violating one
  std::vector<Op> shrunk;    // after shrinking (== sequence with --no-shrink)
  uint64_t shrink_runs = 0;
  double shrink_seconds = 0;
  std::string reproducer;  // scenario JSON of `shrunk` with expectations (empty if none)
};

// Throws std::invalid_argument naming the bad option (unknown backend or policy, bad value).
config::Json base_scenario(const Options& o);
Result explore(const Options& o);

// Runs `ops` from scratch on a platform built from `base`, checking at every boundary, and
// stops after the first operation whose checks find a violation. Fills `outcomes` (one per
// operation run).
void replay(const config::Json& base, const std::vector<Op>& ops, std::vector<Outcome>& outcomes);

// The step an operation is, for VM names vm0, vm1, ...
config::StepConfig to_step(const Op& op);
// The scenario: base + the operations as steps, ordered across actors by barriers, with the
// outcomes as expectations (errno, stops, ret, violation on the last).
config::Json to_scenario(const config::Json& base, const std::vector<Op>& ops,
                         const std::vector<Outcome>& outcomes);

// Delta debugging (Zeller's ddmin, complement-only): `fails(candidate)` returns the length of
// the shortest prefix of the candidate that still fails, or nullopt. Removes chunks of halving
// size, then single elements, until no single removal still fails or max_runs are spent.
// Precondition: fails(seq) holds.
template <class T>
std::vector<T> shrink_sequence(
    std::vector<T> seq, const std::function<std::optional<size_t>(const std::vector<T>&)>& fails,
    uint64_t max_runs, uint64_t* runs = nullptr) {
  uint64_t n_runs = 0;
  if (auto p = fails(seq)) seq.resize(*p);
  ++n_runs;
  size_t chunk = seq.size() / 2;
  if (chunk == 0) chunk = 1;
  for (;;) {
    bool changed = false;
    for (size_t i = 0; i < seq.size() && n_runs < max_runs;) {
      std::vector<T> cand;
      cand.reserve(seq.size());
      cand.insert(cand.end(), seq.begin(), seq.begin() + static_cast<std::ptrdiff_t>(i));
      if (i + chunk < seq.size())
        cand.insert(cand.end(), seq.begin() + static_cast<std::ptrdiff_t>(i + chunk), seq.end());
      ++n_runs;
      if (cand.empty()) {
        i += chunk;
        continue;
      }
      if (auto p = fails(cand)) {
        cand.resize(*p);
        seq = std::move(cand);
        changed = true;
      } else {
        i += chunk;
      }
    }
    if (n_runs >= max_runs) break;
    if (chunk > 1)
      chunk /= 2;
    else if (!changed)
      break;
  }
  if (runs) *runs = n_runs;
  return seq;
}

}  // namespace cvmsim::explore
