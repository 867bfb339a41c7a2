// A vCPU core without SystemC (hw/cpu): the same translation as VcpuModule, through the same
// GuestTranslator (TLB lookup, stage-2 walk through the page-walk cache of the root the backend's
// GuestAccessPolicy picks, its check chain, VM exit to the ExitHandler on a fault and retry), and
// the same access semantics (a keyed access to PhysMem as the CPU's initiator, #MC on a poisoned
// load), executed one guest operation at a time and untimed. Random exploration (sim/explore)
// drives guests with it so that it runs on the functional core alone (ARCHITECTURE.md
// principle 1).
//
// Differences from VcpuModule, on purpose: no time (costs are not charged), no DMI (every access
// goes to PhysMem, which is what b_transport does; DMI is only granted where the outcome of the
// checks is known), no trace.
#pragma once

#include <array>
#include <functional>
#include <string>

#include "hw/base/principal.h"
#include "hw/cpu/guest_access_policy.h"
#include "hw/cpu/guest_op.h"
#include "hw/cpu/guest_translator.h"
#include "hw/cpu/vm_exit.h"
#include "hw/memory/initiator.h"
#include "hw/memory/phys_mem.h"
#include "hw/mmu/stage2_table.h"

namespace cvmsim {

struct FunctionalCpuParams {
  unsigned id = 0;          // index within the VM (what the ExitHandler is told)
  Principal who = kNobody;  // labels what the vCPU writes
  KeyId key = 0;            // memory key of the VM's accesses without a GuestAccessPolicy
  uint16_t asid = 1;        // TLB / PWC tag
  unsigned tlb_sets = 128, tlb_ways = 12;
  unsigned pwc_entries = 32, pwc_ways = 4;
  unsigned max_fault_retries = 8;  // as VcpuParams::max_fault_retries
};

class FunctionalCpu {
 public:
  FunctionalCpu(const FunctionalCpuParams& p, PhysMem& mem, const Stage2Table& stage2,
                ExitHandler& exits);

  // The backend's policy (KvmBackend::guest_access_policy): which root and key each GPA uses,
  // and the checks after translation. nullptr (the default): the stage-2 table, the params' key.
  void set_guest_access_policy(const GuestAccessPolicy* p) { xlate_.set_policy(p); }

  // Runs one operation (load, store, hypercall; compute, fence and sync do nothing). Returns
  // false if the vCPU stopped (stop_reason() says why); a stopped vCPU runs nothing more.
  bool execute(const GuestOp& op, OpResult* result = nullptr);

  // Loads that returned another principal's plaintext (what the memory module's read observer
  // reports): frame, reader, holder.
  std::function<void(Pfn, Principal, Principal)> read_observer;

  Tlb& tlb() { return xlate_.tlb(); }
  Pwc& pwc() { return xlate_.pwc(); }
  bool stopped() const { return !stop_reason_.empty(); }
  const std::string& stop_reason() const { return stop_reason_; }
  uint64_t exits() const { return exits_count_; }

 private:
  bool access(const GuestOp& op);
  bool access_piece(Gpa gpa, uint8_t* buf, uint32_t len, bool write);
  bool exit(const VmExit& e, uint64_t* ret = nullptr);
  struct Sink;  // GuestTranslator's: no costs, exits to exit()

  FunctionalCpuParams p_;
  PhysMem& mem_;
  // The CPU as an initiator: its checks ran at translation (the policy's chain), so none here.
  Initiator port_;
  ExitHandler& exits_;
  GuestTranslator xlate_;
  std::array<uint8_t, kMaxAccessBytes> buf_{};
  std::string stop_reason_;
  uint64_t exits_count_ = 0;
};

}  // namespace cvmsim
