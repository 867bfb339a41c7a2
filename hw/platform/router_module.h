// The interconnect: forwards transactions from any number of initiators (vCPUs, devices, host
// actors) to the target that owns the address, by an address map. Adds a configurable latency
// to b_transport, passes DMI requests through (translating address ranges back into the
// initiator's view) and broadcasts DMI invalidations to every initiator.
#pragma once

#include <tlm_utils/multi_passthrough_initiator_socket.h>
#include <tlm_utils/multi_passthrough_target_socket.h>
#include <string>
#include <systemc>
#include <tlm>
#include <vector>

#include "hw/base/cycles.h"
#include "hw/base/stat_visitor.h"

namespace cvmsim {

class RouterModule : public sc_core::sc_module {
 public:
  tlm_utils::multi_passthrough_target_socket<RouterModule> target_socket;  // initiators bind here
  tlm_utils::multi_passthrough_initiator_socket<RouterModule>
      initiator_socket;  // targets bind here

  RouterModule(sc_core::sc_module_name name, const Clock& clock, Cycles latency);

  // Maps [base, base + size) to the target bound at initiator_socket index `port`.
  void map(uint64_t base, uint64_t size, unsigned port, std::string name);
  void describe_stats(StatVisitor& v) const;

 private:
  struct Range {
    uint64_t base, size;
    unsigned port;
    std::string name;
  };
  const Range* decode(uint64_t addr) const;
  void b_transport(int id, tlm::tlm_generic_payload& gp, sc_core::sc_time& delay);
  unsigned transport_dbg(int id, tlm::tlm_generic_payload& gp);
  bool get_direct_mem_ptr(int id, tlm::tlm_generic_payload& gp, tlm::tlm_dmi& dmi);
  void invalidate_direct_mem_ptr(int port, sc_dt::uint64 start, sc_dt::uint64 end);

  std::vector<Range> map_;
  sc_core::sc_time latency_;
  uint64_t transactions_ = 0;
  uint64_t decode_errors_ = 0;
  uint64_t dmi_invalidations_ = 0;
};

}  // namespace cvmsim
