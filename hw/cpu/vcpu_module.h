// A vCPU core (hw/cpu): one SC_THREAD executing a guest program. Loosely timed with temporal
// decoupling: each operation's cost is added to local time through a tlm_quantumkeeper, and the
// thread synchronises only when the quantum is used up or on a fence, never per access
// (ARCHITECTURE.md principle 5).
//
// An access is split at 4 KiB boundaries; each piece is translated through the TLB or, on a
// miss, by the GuestTranslator the functional core shares (a stage-2 walk with the page-walk
// cache, of the root the backend's GuestAccessPolicy picks, the leaf's permissions, the policy's
// checks on the translated frame), and then performed through a DMI pointer when the memory granted
// one for that frame (cached in the frame's TLB entry, so a TLB hit finds it at once), or through
// b_transport otherwise. Faults and hypercalls go to the ExitHandler as typed VmExits; a load that
// the memory answers with poison (tdx-snp.md A9) goes to it as a MachineCheck (#MC), whose
// ExitAction says whether the vCPU stops, goes on, or retries the load.
//
// Lifetime: a vCPU starts at time 0, or, if given a start gate (start_after), when that event is
// first notified; it runs its program to the end (or until it stops on an error) and then
// notifies done(). The gate is what KVM_RUN will use; benchmarks use it to run phases one after
// another in one elaboration.
#pragma once

#include <tlm_utils/simple_initiator_socket.h>
#include <tlm_utils/tlm_quantumkeeper.h>
#include <array>
#include <memory>
#include <string>
#include <systemc>
#include <tlm>

#include "hw/base/cycles.h"
#include "hw/base/principal.h"
#include "hw/base/trace_sink.h"
#include "hw/cpu/guest_access_policy.h"
#include "hw/cpu/guest_op.h"
#include "hw/cpu/guest_translator.h"
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
  unsigned id = 0;          // index within the VM
  Principal who = kNobody;  // the VM's principal: labels what the vCPU writes
  KeyId key = 0;            // memory key the VM's accesses use without a GuestAccessPolicy
  uint16_t asid = 1;        // TLB / PWC tag (VPID / ASID / VMID)
  unsigned tlb_sets = 128, tlb_ways = 12;
  unsigned pwc_entries = 32, pwc_ways = 4;
  VcpuCosts costs;
  Cycles quantum{20000};
  uint64_t frequency_hz = 2'000'000'000;
  unsigned max_fault_retries =
      8;  // an access still faulting after this many handled exits stops the vCPU
};

// Progress reporting, implemented above hw (sim prints the progress line). A vCPU reports the
// operations it completed at each synchronisation point, not per operation.
class Progress {
 public:
  virtual ~Progress() = default;
  virtual void advance(uint64_t ops_done) = 0;
};

// Where a vCPU waits on OpKind::kSync. Called from the vCPU's thread after it has synchronised
// its local time, so the implementation (sim's scenario barriers) may wait().
class SyncHandler {
 public:
  virtual ~SyncHandler() = default;
  virtual void sync_point(uint64_t id) = 0;
};

class VcpuModule : public sc_core::sc_module {
 public:
  tlm_utils::simple_initiator_socket<VcpuModule> socket;

  VcpuModule(sc_core::sc_module_name name, const VcpuParams& params, Stage2Table& stage2,
             ExitHandler& exits, std::unique_ptr<GuestProgram> program, TraceSink& trace,
             Progress* progress);

  ~VcpuModule() override { gp_.clear_extension(&ext_); }  // ext_ is a member, not heap

  // Start gate. Called during elaboration (before sc_start; later calls are an SC_REPORT_ERROR):
  // the vCPU does nothing until `e` is notified, then runs its program. A vCPU without a gate
  // starts at time 0. The event must outlive the simulation and be notified after this vCPU has
  // begun waiting, i.e. not by an immediate notify() during the initialization phase; a delta or
  // timed notification is always seen, and done() of another vCPU is delta-notified.
  void start_after(const sc_core::sc_event& e);
  // Notified (delta notification, once) when the vCPU has run its program to the end or stopped;
  // finished() and stop_reason() then say which.
  const sc_core::sc_event& done() const { return done_; }
  // Handler of OpKind::kSync operations; without one they are no-ops.
  void set_sync_handler(SyncHandler* h) { sync_handler_ = h; }
  // Simulated time at which the vCPU began its program (after the gate, if any).
  sc_core::sc_time start_time() const { return start_time_; }

  bool finished() const { return finished_; }
  const std::string& stop_reason() const { return stop_reason_; }
  uint64_t verify_failures() const { return stats_.verify_failures; }
  const std::string& first_verify_failure() const { return first_verify_failure_; }
  Tlb& tlb() { return xlate_.tlb(); }
  const Tlb& tlb() const { return xlate_.tlb(); }
  Pwc& pwc() { return xlate_.pwc(); }
  const Walker& walker() const { return xlate_.walker(); }
  // The backend's policy for the VM's guest accesses (KvmBackend::guest_access_policy): which
  // root and key each GPA uses and the checks after translation (TDX: private GPAs through the
  // Secure EPT under the TD's HKID, tdx-snp.md A1). nullptr (the default): the stage-2 table given
  // at construction, VcpuParams::key, no checks, and nothing changes on the hot path (a TLB hit
  // never looks at the policy). TLB and page-walk-cache entries are tagged by the full GPA, so
  // two roots never alias. Call before the simulation starts or between accesses (the layer
  // above flushes).
  void set_guest_access_policy(const GuestAccessPolicy* p) { xlate_.set_policy(p); }
  bool has_private_root() const { return xlate_.has_private_root(); }
  // True when called from this vCPU's own thread (its exit handler, say).
  bool on_own_thread() const {
    return thread_.valid() && sc_core::sc_get_current_process_handle() == thread_;
  }
  // From inside this vCPU's exit handler (its own thread): spend `c` cycles of handler time now,
  // handing over the local time first, so that other threads run meanwhile (the layer above's
  // firmware call holding locks, a spin-wait; models/kvm TimeHook). Counted as exit cycles.
  void pass_time_in_exit(Cycles c) {
    charge(c);
    stats_.exit_cycles += c.count();
    sync();
    ++stats_.syncs;
  }
  void describe_stats(StatVisitor& v) const;

 private:
  SC_HAS_PROCESS(VcpuModule);
  void run();
  // Returns false if the vCPU must stop.
  bool access(const GuestOp& op);
  bool access_piece(Gpa gpa, uint8_t* buf, uint32_t len, bool write);
  // One translated piece through b_transport (no DMI pointer for the frame).
  bool transport(Gpa gpa, Pfn pfn, uint8_t* buf, uint32_t len, bool write);
  // A load through transport() consumed poison: reports the #MC to the exit handler and returns
  // what to do (kStop with stop_reason_ set, kResume, or kRetry).
  ExitAction::Kind machine_check(Gpa gpa, Pfn pfn, uint32_t len, unsigned attempt);
  // The hot path (ARCHITECTURE.md principle 5): a TLB hit that grants the access, inline. Every
  // other case (miss, permission fault on a cached entry, walk, checks, VM exit) is the shared
  // GuestTranslator's slow path.
  bool translate(Gpa gpa, bool write, Translation& out) {
    TlbEntry* e = xlate_.tlb().lookup(p_.asid, gpa);
    if (e && e->perms.allows(write ? kPermsW : kPermsR)) [[likely]] {
      charge(p_.costs.tlb_hit);
      stats_.translate_cycles += p_.costs.tlb_hit.count();
      out.pfn = e->pfn_for(gpa);
      out.entry = e->size == PageSize::k4K ? e : nullptr;
      return true;
    }
    return translate_slow(gpa, write, e, out);
  }
  // `hit` is the result of the TLB lookup translate() made (nullptr on a miss).
  bool translate_slow(Gpa gpa, bool write, TlbEntry* hit, Translation& out);
  struct Sink;  // GuestTranslator's: charges cycles, counts, exits through handle_exit
  bool handle_exit(const VmExit& e);
  // The key an access to gpa uses (slow path only: DMI accesses carry no key).
  KeyId key_for(Gpa gpa) const { return xlate_.key_for(gpa); }
  void charge(Cycles c) {
    stats_.busy_cycles += c.count();
    local_ps_ += clock_.to_ps(c);
  }
  // Hands the local time to the quantum keeper, waits for it, and starts the next quantum.
  void sync();
  void start_quantum() {
    qk_.reset();
    local_ps_ = 0;
    quantum_left_ps_ = qk_.left_ps();
  }
  uint8_t* dmi_lookup(Pfn pfn);
  void dmi_request(Pfn pfn);
  void invalidate_direct_mem_ptr(sc_dt::uint64 start, sc_dt::uint64 end);
  void trace(std::string_view event, const std::string& details);

  VcpuParams p_;
  Clock clock_;
  ExitHandler& exits_;
  std::unique_ptr<GuestProgram> program_;
  TraceSink& trace_;
  Progress* progress_;
  GuestTranslator xlate_;
  // Temporal decoupling. Local time (how far the vCPU runs ahead of sc_time_stamp()) is kept in
  // integer picoseconds and handed to the quantum keeper only when the vCPU synchronises, so an
  // access costs an addition and a comparison rather than SystemC library calls (sc_time
  // construction, sc_time_stamp()). quantum_left_ps_ is what qk_.need_sync() compares with (the
  // next sync point minus the current time): the vCPU synchronises at exactly the points it
  // would with qk_.inc() and qk_.need_sync() on every access.
  class QuantumKeeper : public tlm_utils::tlm_quantumkeeper {
   public:
    // Local time left until need_sync() becomes true; 0 if it already is.
    uint64_t left_ps() const {
      const sc_core::sc_time now = get_current_time();
      return m_next_sync_point > now ? (m_next_sync_point - now).value() : 0;
    }
  };
  QuantumKeeper qk_;
  uint64_t local_ps_ = 0;
  uint64_t quantum_left_ps_ = 0;
  tlm::tlm_generic_payload gp_;
  AccessExt ext_;

  // Direct-mapped cache of DMI pointers by frame, behind TlbEntry::host_ptr: it serves 2M/1G
  // entries and refills host_ptr after a TLB refill. Revocation clears both.
  static constexpr unsigned kDmiSlots = 1024;
  struct DmiSlot {
    uint64_t pfn = ~uint64_t{0};
    uint8_t* ptr = nullptr;
  };
  std::array<DmiSlot, kDmiSlots> dmi_{};

  std::array<uint8_t, kMaxAccessBytes> buf_{};
  const sc_core::sc_event* gate_ = nullptr;
  sc_core::sc_process_handle thread_;  // run()'s, once it started
  sc_core::sc_event done_{"done"};
  sc_core::sc_time start_time_;
  SyncHandler* sync_handler_ = nullptr;
  uint64_t last_ret_ = 0;  // the last hypercall's return value
  bool finished_ = false;
  std::string stop_reason_;
  std::string first_verify_failure_;

  struct Stats {
    uint64_t ops = 0, loads = 0, stores = 0, computes = 0, fences = 0, hypercalls = 0;
    uint64_t bytes_loaded = 0, bytes_stored = 0, page_crossings = 0;
    uint64_t dmi_accesses = 0, transport_accesses = 0, dmi_invalidations = 0;
    uint64_t exits_stage2 = 0, exits_hypercall = 0, exits_bus_error = 0, fault_retries = 0;
    uint64_t exits_guest_exception = 0;  // #VE / #VC (only a policy's checks raise them)
    uint64_t machine_checks = 0;
    uint64_t private_walks = 0;
    uint64_t verify_failures = 0;
    uint64_t busy_cycles = 0, translate_cycles = 0, memory_cycles = 0, exit_cycles = 0;
    uint64_t syncs = 0;
    uint64_t finish_time_ps = 0;
  } stats_;
};

}  // namespace cvmsim
