// Scenario steps at run time (sim/scenario): the executor of vmm and host steps over the KVM
// uAPI facade, the guest program a vCPU actor runs, and the log of expectations. Pure C++: the
// timed shell (sim/platform/scenario_driver) owns the actor threads, barriers and time.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "hw/base/cycles.h"
#include "hw/cpu/guest_op.h"
#include "models/backend/registry.h"
#include "models/kvm/kvm.h"
#include "models/vmm/vmm.h"
#include "sim/config/scenario_config.h"

namespace cvmsim::scenario {

// One expectation's outcome.
struct ExpectationResult {
  size_t step = 0;
  std::string actor, op, label;
  bool met = true;
  std::string message;  // what happened vs what was expected (failures only)
};

class ExpectationLog {
 public:
  void met(const config::StepConfig& s, size_t index);
  void failed(const config::StepConfig& s, size_t index, std::string message);
  const std::vector<ExpectationResult>& results() const { return results_; }
  size_t failures() const;
  // Forgets every result (random exploration runs one step at a time and keeps none).
  void clear() { results_.clear(); }
  // "step 3 (vmm set_user_memory_region2 \"bind\"): <message>"
  static std::string describe(const ExpectationResult& r);

 private:
  std::vector<ExpectationResult> results_;
};

// Names the steps use, resolved to processes and fds.
struct VmHandle {
  kvm::Process* proc = nullptr;
  int vm_fd = -1;
  vmm::Vmm* vmm = nullptr;  // null for VMs created by create_vm steps
  uint32_t type = 0;
};

class StepExecutor {
 public:
  StepExecutor(kvm::Kvm& kvm, const config::ScenarioConfig& sc, std::vector<vmm::Vmm*> vmms,
               ExpectationLog& log);
  // Process exit unmaps what the host actor still has mapped.
  ~StepExecutor();

  // Runs a vmm or host step (not wait/barrier, which the shell handles) and checks its
  // expectation. Returns the cycles it cost the actor.
  Cycles execute(size_t index);
  // The errno name ("OK", "EINVAL", ...) the last executed step's call returned, or "" if it
  // failed otherwise or made no call (random exploration writes it as the step's expect.errno).
  const std::string& last_errno() const { return last_errno_; }
  // Reads by the host kernel that returned another principal's plaintext (for ISO-2).
  std::function<void(const kvm::PlaintextRead&)> on_plaintext_read;

 private:
  struct GmemHandle {
    kvm::Process* proc = nullptr;
    int fd = -1;
  };
  struct MapHandle {
    std::shared_ptr<kvm::GmemFile> file;
    kvm::GmemMapping map;
  };
  VmHandle& vm_for(const config::StepConfig& s);
  GmemHandle gmem(const std::string& name);
  // Compares an errno outcome with the step's expectation; true if met (and logged).
  bool check_errno(const config::StepConfig& s, size_t index, const Error* err,
                   const std::string& what);
  void check_data(const config::StepConfig& s, size_t index, uint64_t addr,
                  std::span<const uint8_t> data);
  uint64_t userspace_addr(const config::StepConfig& s, VmHandle& vm);

  kvm::Kvm& kvm_;
  const config::ScenarioConfig& sc_;
  ExpectationLog& log_;
  std::map<std::string, VmHandle> vms_;
  std::map<std::string, GmemHandle> gmems_;
  std::set<std::string> closed_;  // guest_memfd names whose fd a step closed
  std::map<std::string, MapHandle> maps_;
  std::vector<MapHandle> shadowed_maps_;  // mappings whose name a later gmem_mmap reused
  uint32_t next_principal_ = 0;
  std::string last_errno_;
};

// The guest program of a vCPU actor: its steps as guest operations, each result checked
// against the step's expectation. Exits the VMM saw while a step ran are reported through
// note_exit.
class StepProgram final : public GuestProgram {
 public:
  // `guest`: the VM's guest side (its conversion ABI, its bounce buffer); must outlive this.
  StepProgram(const config::ScenarioConfig& sc, std::vector<size_t> steps,
              const backend::GuestSide& guest, uint64_t frequency_hz, ExpectationLog& log,
              std::map<std::string, uint64_t> barrier_ids);
  bool next(GuestOp& op) override;
  uint64_t expected_ops() const override { return ops_total_; }
  bool wants_results() const override { return true; }
  void on_result(const GuestOp& op, const OpResult& r) override;
  void on_stop(std::string_view reason) override;

  // Called by the VMM's exit observer for this vCPU.
  void note_exit(int err, const kvm::kvm_run& run);
  // A violation the checker found after one of this vCPU's exits: true if the current step
  // expects it.
  bool note_violation(const kvm::Violation& v);
  // True if the vCPU stopped at a step that expected it.
  bool stop_expected() const { return stop_expected_; }
  // The scenario step this vCPU is executing, if any (violation reports).
  std::optional<size_t> current_step() const {
    return have_cur_ ? std::optional<size_t>(cur_.step) : std::nullopt;
  }
  // Called with the scenario step index each time this program finishes a step (after its
  // last operation's result, or when the vCPU stopped in it).
  std::function<void(size_t)> on_step_done;

 private:
  struct Pending {
    size_t step = 0;
    std::vector<GuestOp> ops;
    size_t next = 0;
  };
  void expand(size_t step, std::vector<GuestOp>& out) const;
  void finish_step(bool stopped, const OpResult* last);

  const config::ScenarioConfig& sc_;
  std::vector<size_t> steps_;
  const backend::GuestSide& guest_;
  uint64_t frequency_hz_;
  ExpectationLog& log_;
  std::map<std::string, uint64_t> barrier_ids_;
  size_t pos_ = 0;
  Pending cur_;
  bool have_cur_ = false;
  bool any_mismatch_ = false;
  uint64_t last_ret_ = 0;
  bool have_ret_ = false;
  struct SeenExit {
    int err;
    uint32_t reason;
    uint64_t flags, gpa, size;
  };
  std::vector<SeenExit> exits_;
  std::set<std::string> violations_seen_;
  bool stop_expected_ = false;
  uint64_t ops_total_ = 0;
};

}  // namespace cvmsim::scenario
