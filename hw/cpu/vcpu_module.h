// A vCPU core (hw/cpu): one SC_THREAD executing a guest program. Loosely timed with temporal
// decoupling: each operation's cost is added to local time through a tlm_quantumkeeper, and the
// thread synchronises only when the quantum is used up or on a fence, never per access
// (ARCHITECTURE.md principle 5).
//
// An access is split at 4 KiB boundaries; each piece is translated through the TLB or, on a
// miss, a stage-2 walk (with the page-walk cache), checked against the leaf's permissions, and
// then performed through a DMI pointer when the memory granted one for that frame, or through
// b_transport otherwise. Faults and hypercalls go to the ExitHandler as typed VmExits.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <systemc>
#include <tlm>
#include <tlm_utils/simple_initiator_socket.h>
#include <tlm_utils/tlm_quantumkeeper.h>

#include "hw/base/cycles.h"
#include "hw/base/principal.h"
#include "hw/base/trace_sink.h"
#include "hw/cpu/guest_op.h"
#include "hw/cpu/vm_exit.h"
#include "hw/memory/memory_timing.h"
#include "hw/memory/tlm_access_ext.h"
#include "hw/mmu/pwc.h"
#include "hw/mmu/stage2_table.h"
#include "hw/mmu/tlb.h"
#include "hw/mmu/walker.h"

namespace cvmsim {

struct VcpuCosts {
  Cycles tlb_hit{1};
  Cycles walk_ref{30};
  Cycles pwc_hit{2};
  MemoryTiming memory;  // the same formula the memory module charges (DMI accesses bypass it)
  Cycles vm_exit_round_trip{2530};
  Cycles fence{30};
};

struct VcpuParams {
  unsigned id = 0;            // index within the VM
  Principal who = kNobody;    // the VM's principal: labels what the vCPU writes
  KeyId key = 0;              // memory key the VM's accesses use
  uint16_t asid = 1;          // TLB / PWC tag (VPID / ASID / VMID)
  unsigned tlb_sets = 128, tlb_ways = 12;
  unsigned pwc_entries = 32, pwc_ways = 4;
  VcpuCosts costs;
  Cycles quantum{20000};
  uint64_t frequency_hz = 2'000'000'000;
  unsigned max_fault_retries = 8;  // an access still faulting after this many handled exits stops the vCPU
};

// Progress reporting, implemented above hw (sim prints the progress line). A vCPU reports the
// operations it completed at each synchronisation point, not per operation.
class Progress {
 public:
  virtual ~Progress() = default;
  virtual void advance(uint64_t ops_done) = 0;
};

class VcpuModule : public sc_core::sc_module {
 public:
  tlm_utils::simple_initiator_socket<VcpuModule> socket;

  VcpuModule(sc_core::sc_module_name name, const VcpuParams& params, Stage2Table& stage2,
             ExitHandler& exits, std::unique_ptr<GuestProgram> program, TraceSink& trace,
             Progress* progress);

  ~VcpuModule() override { gp_.clear_extension(&ext_); }  // ext_ is a member, not heap

  bool finished() const { return finished_; }
  const std::string& stop_reason() const { return stop_reason_; }
  uint64_t verify_failures() const { return stats_.verify_failures; }
  const std::string& first_verify_failure() const { return first_verify_failure_; }
  Tlb& tlb() { return tlb_; }
  Pwc& pwc() { return pwc_; }
  void describe_stats(StatVisitor& v) const;

 private:
  SC_HAS_PROCESS(VcpuModule);
  void run();
  // Returns false if the vCPU must stop.
  bool access(const GuestOp& op);
  bool access_piece(Gpa gpa, uint8_t* buf, uint32_t len, bool write);
  // Translation of one 4 KiB piece; on success fills pfn/host pointer.
  struct Xlate {
    Pfn pfn;
    uint8_t* host = nullptr;
  };
  bool translate(Gpa gpa, bool write, Xlate& out);
  bool handle_exit(const VmExit& e);
  void charge(Cycles c);
  uint8_t* dmi_lookup(Pfn pfn);
  void dmi_request(Pfn pfn);
  void invalidate_direct_mem_ptr(sc_dt::uint64 start, sc_dt::uint64 end);
  void trace(std::string_view event, const std::string& details);

  VcpuParams p_;
  Clock clock_;
  uint64_t ps_per_cycle_;  // exact when the frequency divides 10^12, else 0
  Stage2Table& stage2_;
  ExitHandler& exits_;
  std::unique_ptr<GuestProgram> program_;
  TraceSink& trace_;
  Progress* progress_;
  Tlb tlb_;
  Pwc pwc_;
  Walker walker_;
  tlm_utils::tlm_quantumkeeper qk_;
  tlm::tlm_generic_payload gp_;
  AccessExt ext_;

  // Direct-mapped cache of DMI pointers by frame.
  static constexpr unsigned kDmiSlots = 1024;
  struct DmiSlot {
    uint64_t pfn = ~uint64_t{0};
    uint8_t* ptr = nullptr;
  };
  std::array<DmiSlot, kDmiSlots> dmi_{};

  std::array<uint8_t, kMaxAccessBytes> buf_{};
  bool finished_ = false;
  std::string stop_reason_;
  std::string first_verify_failure_;

  struct Stats {
    uint64_t ops = 0, loads = 0, stores = 0, computes = 0, fences = 0, hypercalls = 0;
    uint64_t bytes_loaded = 0, bytes_stored = 0, page_crossings = 0;
    uint64_t dmi_accesses = 0, transport_accesses = 0, dmi_invalidations = 0;
    uint64_t exits_stage2 = 0, exits_hypercall = 0, exits_bus_error = 0, fault_retries = 0;
    uint64_t verify_failures = 0;
    uint64_t busy_cycles = 0, translate_cycles = 0, memory_cycles = 0, exit_cycles = 0;
    uint64_t syncs = 0;
    uint64_t finish_time_ps = 0;
  } stats_;
};

}  // namespace cvmsim
