// DRAM as a TLM-2.0 target (loosely timed). b_transport checks every access inline (bounds,
// key, poison), moves the bytes through PhysMem, labels what is written with the writer's
// principal and key, and annotates the access latency. DMI is granted for a single frame, and
// only while its state is stable for the requester (same key, same label, no poison, no TD
// owner bit); PhysMem calls back to revoke it with invalidate_direct_mem_ptr whenever the frame's
// key, owner, label or poison changes.
#pragma once

#include <systemc>
#include <tlm>
#include <tlm_utils/simple_target_socket.h>

#include "hw/base/cycles.h"
#include "hw/memory/tlm_access_ext.h"
#include "hw/memory/memory_timing.h"
#include "hw/memory/phys_mem.h"

namespace cvmsim {

class MemoryModule : public sc_core::sc_module {
 public:
  tlm_utils::simple_target_socket<MemoryModule> socket;

  MemoryModule(sc_core::sc_module_name name, PhysMem& mem, const Clock& clock, MemoryTiming timing);

  PhysMem& mem() { return mem_; }
  void describe_stats(StatVisitor& v) const;


 private:
  void b_transport(tlm::tlm_generic_payload& gp, sc_core::sc_time& delay);
  unsigned transport_dbg(tlm::tlm_generic_payload& gp);
  bool get_direct_mem_ptr(tlm::tlm_generic_payload& gp, tlm::tlm_dmi& dmi);

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
    uint64_t key_mismatch_reads = 0;
    uint64_t poisoned_reads = 0;
    uint64_t dmi_denied = 0;
    uint64_t debug_accesses = 0;
  } stats_;
};

}  // namespace cvmsim
