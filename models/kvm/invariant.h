// Isolation invariants as data (issue "Isolation invariants"; sim/invariants runs them). An
// invariant has an id, a one-line statement, the source it comes from, the VM types it applies
// to, and a check over the real simulated state: KVM's objects, the stage-2 tables and TLBs in
// hw, the frames' metadata, the host address spaces. Backends contribute their own invariants
// through KvmBackend::invariants(), so the checker never switches on the backend.
//
// Declared here (models/kvm) rather than in sim so that backends, which sit below sim, can
// define theirs.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "hw/base/addr.h"
#include "hw/memory/phys_mem.h"
#include "hw/mmu/stage2_table.h"
#include "models/kvm/kvm_types.h"

namespace cvmsim::kvm {

class Kvm;
class Vm;
class GmemFile;

struct Violation {
  std::string invariant;  // id, e.g. "ISO-1"
  std::string message;    // what is wrong, naming the objects
  std::string vm;         // the VM involved, if one
  std::vector<Gfn> gfns;
  std::vector<Pfn> frames;
};

// What a check may look at. `full` is false for an incremental check, which may restrict itself
// to what changed since the last check (the Vm's dirty ranges); a check that cannot restrict
// itself simply checks everything.
struct CheckScope {
  const Kvm& kvm;
  const PhysMem& mem;
  bool full = true;
  // Incremental checks: the GFN ranges of a VM that changed since the last check (empty if
  // none), or nullptr when everything must be re-read (full check, or too many changes).
  std::function<const std::vector<GfnRange>*(const Vm&)> dirty;
  // The stage-2 leaves found in those ranges, read once per check and shared by every
  // invariant (nullptr when `dirty` is nullptr: walk the whole table).
  std::function<const std::vector<Stage2Leaf>*(const Vm&)> dirty_leaves;
  // The guest_memfd file whose page cache holds a frame, or null; memoised per check (several
  // invariants ask about the same frames).
  std::function<const GmemFile*(Pfn)> gmem_owner;
};

struct InvariantDef {
  std::string id;
  std::string statement;
  std::string source;
  std::vector<std::string> backends;  // VM type names it applies to; {"all"} for every type
  std::function<void(const CheckScope&, std::vector<Violation>&)> check;
};

}  // namespace cvmsim::kvm
