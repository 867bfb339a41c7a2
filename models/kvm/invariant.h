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
#include "hw/base/principal.h"
#include "hw/memory/phys_mem.h"
#include "hw/mmu/stage2_table.h"
#include "models/kvm/kvm_types.h"

namespace cvmsim::kvm {

class Kvm;
class Vm;
class GmemFile;
struct Memslot;
struct GmemFolio;

// What several invariants want to know about one GFN of a VM, looked up once per check.
struct GfnFacts {
  bool is_private = false;           // the attribute
  const Memslot* slot = nullptr;     // the memslot holding it (address space 0), or null
  const GmemFolio* folio = nullptr;  // the slot's guest_memfd folio at the GFN's index, or null
};

struct Violation {
  std::string invariant;  // id, e.g. "ISO-1"
  std::string message;    // what is wrong, naming the objects
  std::string vm;         // the VM involved, if one
  std::vector<Gfn> gfns;
  std::vector<Pfn> frames;
  // Filled by sim/invariants' checker when it records the violation: where the check ran (the
  // scenario step or actor) and the most recent trace events (run.invariants.trace_events).
  std::string where{};
  std::vector<std::string> recent_trace{};
  // ISO-2/ISO-6: the chain of the leak, the provenance log of the frames involved
  // (hw/memory/frame_history.h), oldest first, one line per event.
  std::vector<std::string> chain{};
};

// What a check may look at. `full` is false for an incremental check, which may restrict itself
// to what changed since the last check (the Vm's dirty ranges); a check that cannot restrict
// itself simply checks everything.
// A read that returned another principal's plaintext (reported by the memory system and by
// host-kernel accesses): the raw material of ISO-2. The holder is the frame's secret label.
struct PlaintextRead {
  Pfn frame;
  Principal reader;
  Principal holder;
};

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
  // Plaintext reads by a principal other than the data's holder since the last check.
  const std::vector<PlaintextRead>* plaintext_reads = nullptr;
  // GfnFacts of (vm, gfn), memoised per check.
  std::function<GfnFacts(const Vm&, Gfn)> facts = nullptr;
};

struct InvariantDef {
  std::string id;
  std::string statement;
  std::string source;
  std::vector<std::string> backends;  // VM type names it applies to; {"all"} for every type
  std::function<void(const CheckScope&, std::vector<Violation>&)> check;
  // True when, in an incremental check, the check reads nothing but the changed stage-2 leaves
  // (CheckScope::dirty_leaves) of each VM: the checker then skips it when those leaves, read
  // from the real tables, are empty for every VM (it would visit nothing). A full check, or a
  // VM whose changes were too many to track, always runs it. docs/performance.md (checker).
  bool leaves_only = false;
};

}  // namespace cvmsim::kvm
