// A vCPU core without SystemC (hw/cpu): the same translation and access semantics as
// VcpuModule's slow path (TLB lookup, stage-2 walk through the page-walk cache, VM exit to the
// ExitHandler on a fault and retry, keyed access to PhysMem, #MC on a poisoned load), executed
// one guest operation at a time and untimed. Random exploration (sim/explore) drives guests
// with it so that it runs on the functional core alone (ARCHITECTURE.md principle 1).
//
// Differences from VcpuModule, on purpose: no time (costs are not charged), no DMI (every access
// goes to PhysMem, which is what b_transport does; DMI is only granted where the outcome of the
// checks is known), no trace. The fault/retry loop mirrors VcpuModule::translate_slow; keep the
// two in step when either changes.
#pragma once

#include <array>
#include <functional>
#include <string>

#include "hw/base/principal.h"
#include "hw/cpu/guest_op.h"
#include "hw/cpu/vm_exit.h"
#include "hw/memory/phys_mem.h"
#include "hw/mmu/pwc.h"
#include "hw/mmu/stage2_table.h"
#include "hw/mmu/tlb.h"
#include "hw/mmu/walker.h"

namespace cvmsim {

struct FunctionalCpuParams {
  unsigned id = 0;          // index within the VM (what the ExitHandler is told)
  Principal who = kNobody;  // labels what the vCPU writes
  KeyId key = 0;            // memory key of the VM's (private) accesses
  uint16_t asid = 1;        // TLB / PWC tag
  unsigned tlb_sets = 128, tlb_ways = 12;
  unsigned pwc_entries = 32, pwc_ways = 4;
  unsigned max_fault_retries = 8;  // as VcpuParams::max_fault_retries
};

class FunctionalCpu {
 public:
  FunctionalCpu(const FunctionalCpuParams& p, PhysMem& mem, const Stage2Table& stage2,
                ExitHandler& exits);

  // As VcpuModule::set_private_root (TDX: GPAs with shared_bit clear walk `root` under the VM's
  // key, the others the stage-2 table under shared_key).
  void set_private_root(const WalkRoot& root, Gpa shared_bit, KeyId shared_key = 0);

  // Runs one operation (load, store, hypercall; compute, fence and sync do nothing). Returns
  // false if the vCPU stopped (stop_reason() says why); a stopped vCPU runs nothing more.
  bool execute(const GuestOp& op, OpResult* result = nullptr);

  // Loads that returned another principal's plaintext (what the memory module's read observer
  // reports): frame, reader, holder.
  std::function<void(Pfn, Principal, Principal)> read_observer;

  Tlb& tlb() { return tlb_; }
  Pwc& pwc() { return pwc_; }
  bool stopped() const { return !stop_reason_.empty(); }
  const std::string& stop_reason() const { return stop_reason_; }
  uint64_t exits() const { return exits_count_; }

 private:
  bool access(const GuestOp& op);
  bool access_piece(Gpa gpa, uint8_t* buf, uint32_t len, bool write);
  bool translate(Gpa gpa, bool write, Pfn& out);
  bool exit(const VmExit& e, uint64_t* ret = nullptr);
  bool is_private_gpa(Gpa gpa) const { return has_private_root_ && !(gpa.value() & shared_mask_); }
  KeyId key_for(Gpa gpa) const {
    return has_private_root_ && !is_private_gpa(gpa) ? shared_key_ : p_.key;
  }

  FunctionalCpuParams p_;
  PhysMem& mem_;
  const Stage2Table& stage2_;
  ExitHandler& exits_;
  Tlb tlb_;
  Pwc pwc_;
  Walker walker_;
  WalkRoot private_root_{};
  uint64_t shared_mask_ = 0;
  KeyId shared_key_ = 0;
  bool has_private_root_ = false;
  std::array<uint8_t, kMaxAccessBytes> buf_{};
  std::string stop_reason_;
  uint64_t exits_count_ = 0;
};

}  // namespace cvmsim
