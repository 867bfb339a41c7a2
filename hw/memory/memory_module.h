// DRAM as a TLM-2.0 target (loosely timed). b_transport checks every access inline (bounds, key
// id range), performs it through PhysMem's keyed accesses (which label what is written with the
// writer's principal and key and apply the memory-integrity rules of tdx-snp.md A9 per cache
// line: TD-owner bits, sticky poison, zeros for shared-key reads of TD-owned lines), reports
// poison back through AccessExt's response fields, and annotates the access latency.
//
// DMI is granted for a single frame, and only while its state is stable for the requester: same
// key, same label, not a page table, and for integrity: a shared key only to a frame with no
// TD-owned or poisoned line; a private key only to a frame whose 64 lines are all TD-owned under
// that key with no poison. PhysMem calls back to revoke it with invalidate_direct_mem_ptr
// whenever the frame's key, owner, label or poison changes.
#pragma once

#include <functional>

#include <tlm_utils/simple_target_socket.h>
#include <systemc>
#include <tlm>

#include "hw/base/cycles.h"
#include "hw/memory/memory_timing.h"
#include "hw/memory/phys_mem.h"
#include "hw/memory/tlm_access_ext.h"

namespace cvmsim {

class MemoryModule : public sc_core::sc_module {
 public:
  tlm_utils::simple_target_socket<MemoryModule> socket;

  MemoryModule(sc_core::sc_module_name name, PhysMem& mem, const Clock& clock, MemoryTiming timing);

  PhysMem& mem() { return mem_; }
  void describe_stats(StatVisitor& v) const;
  // Called for every read transaction that returned plaintext of a frame labelled with another
  // principal than the reader (not scrambled, not zeroed, no poison). The layer above decides
  // whether that is a leak (sim/invariants, ISO-2). Unset: no cost beyond one test.
  using ReadObserver = std::function<void(Pfn frame, Principal reader, Principal holder)>;
  void set_read_observer(ReadObserver o) { read_observer_ = std::move(o); }

 private:
  ReadObserver read_observer_;
  void b_transport(tlm::tlm_generic_payload& gp, sc_core::sc_time& delay);
  unsigned transport_dbg(tlm::tlm_generic_payload& gp);
  bool get_direct_mem_ptr(tlm::tlm_generic_payload& gp, tlm::tlm_dmi& dmi);
  // The integrity part of DMI stability for a requester using `key` (see above).
  bool dmi_integrity_ok(Pfn f, const FrameMeta& m, KeyId key) const;

  PhysMem& mem_;
  Clock clock_;
  MemoryTiming timing_;
  // Accesses up to 64 bytes all cost timing_.access (memory_timing.h): their delay is built once
  // rather than through a SystemC library call per transaction.
  static constexpr unsigned kSmallAccessBytes = 64;
  sc_core::sc_time small_delay_;
  struct Stats {
    uint64_t reads = 0;
    uint64_t writes = 0;
    uint64_t address_errors = 0;
    uint64_t key_errors = 0;
    uint64_t command_errors = 0;
    uint64_t key_mismatch_reads = 0;
    uint64_t poisoned_reads = 0;
    uint64_t poisoning_reads = 0;
    uint64_t zeroed_reads = 0;
    uint64_t full_line_writes = 0;
    uint64_t poisoning_writes = 0;
    uint64_t dmi_denied = 0;
    uint64_t debug_accesses = 0;
  } stats_;
};

}  // namespace cvmsim
