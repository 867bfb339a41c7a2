// Isolation invariants (sim/invariants): the generic catalogue (ISO-*), the backends' own
// (KvmBackend::invariants), and the checker that runs them over the real simulated state at
// operation boundaries (after each KVM exit a vCPU takes, after each vmm/host step).
//
// Checking modes: incremental (default) re-reads only the GFN ranges each VM marked dirty since
// the last check; full re-reads everything every time; off checks nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "models/kvm/invariant.h"
#include "models/kvm/kvm.h"
#include "models/kvm/vm.h"

namespace cvmsim::invariants {

enum class CheckMode : uint8_t { kIncremental, kFull, kOff };

// ISO-1 .. ISO-8 as far as the built backends need them (see docs/invariants.md).
std::vector<kvm::InvariantDef> generic_invariants();

// The generic invariants plus those of every backend a Kvm can create.
std::vector<kvm::InvariantDef> catalogue(const std::vector<const kvm::KvmBackend*>& backends);

// The guest_memfd file whose page cache holds frame f, or null (scans the live files).
const kvm::GmemFile* find_gmem_owner(const kvm::Kvm& kvm, Pfn f);

class Checker {
 public:
  Checker(const kvm::Kvm& kvm, const PhysMem& mem, CheckMode mode,
          std::vector<kvm::InvariantDef> defs);

  // Runs the applicable invariants. Returns the new violations (also kept in violations()), each
  // with `where` (what the caller says the boundary is: a scenario step, an actor's exit) and
  // the recent trace events, if a source was set.
  std::vector<kvm::Violation> check(const std::string& where = {}) {
    return check_at([&where] { return where; });
  }
  // The same, computing `where` only when a violation is recorded (after every KVM exit a vCPU
  // takes, building the string each time would cost more than the check).
  std::vector<kvm::Violation> check_at(const std::function<std::string()>& where);
  // Where the recent trace events for violation reports come from (a RingTrace).
  void set_recent_trace(std::function<std::vector<std::string>()> f) {
    recent_trace_ = std::move(f);
  }
  // Every violation found, as a report: invariant, where, message, VM, GFNs, frames, and the
  // trace events before it (docs/invariants.md "Violation reports"). Empty if none.
  std::string report() const;
  // A read returned another principal's plaintext (the memory module's read observer and
  // host-kernel accesses report them); ISO-2 judges them at the next check.
  void note_plaintext_read(const kvm::PlaintextRead& r) {
    if (mode_ != CheckMode::kOff && reads_.size() < 4096) reads_.push_back(r);
  }
  const std::vector<kvm::Violation>& violations() const { return all_; }
  uint64_t checks() const { return checks_; }
  CheckMode mode() const { return mode_; }
  void describe_stats(StatVisitor& v) const;

 private:
  const kvm::Kvm& kvm_;
  const PhysMem& mem_;
  CheckMode mode_;
  std::vector<kvm::InvariantDef> defs_;
  std::vector<kvm::Violation> all_;
  std::set<std::string> reported_;  // one report per (invariant, message)
  uint64_t checks_ = 0, violations_ = 0;
  std::map<std::string, uint64_t> by_invariant_;
  struct Work {
    const kvm::Vm* vm = nullptr;
    kvm::Vm::Dirty dirty;
    std::vector<Stage2Leaf> leaves;
  };
  std::vector<Work> work_;
  std::vector<std::pair<uint64_t, const kvm::GmemFile*>> memo_;  // frame -> owner, per check
  std::vector<kvm::PlaintextRead> reads_;
  struct FactsMemo {
    const kvm::Vm* vm;
    uint64_t gfn;
    kvm::GfnFacts facts;
  };
  std::vector<FactsMemo> facts_memo_;
  std::vector<const kvm::Vm*> live_vms_;  // the VMs at the last check
  std::function<std::vector<std::string>()> recent_trace_;
};

}  // namespace cvmsim::invariants
