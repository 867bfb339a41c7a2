#include "hw/platform/router_module.h"

namespace cvmsim {

RouterModule::RouterModule(sc_core::sc_module_name name, const Clock& clock, Cycles latency)
    : sc_module(name),
      target_socket("target_socket"),
      initiator_socket("initiator_socket"),
      latency_(sc_core::sc_time::from_value(clock.to_ps(latency))) {
  target_socket.register_b_transport(this, &RouterModule::b_transport);
  target_socket.register_transport_dbg(this, &RouterModule::transport_dbg);
  target_socket.register_get_direct_mem_ptr(this, &RouterModule::get_direct_mem_ptr);
  initiator_socket.register_invalidate_direct_mem_ptr(this,
                                                      &RouterModule::invalidate_direct_mem_ptr);
}

void RouterModule::map(uint64_t base, uint64_t size, unsigned port, std::string name) {
  map_.push_back({base, size, port, std::move(name)});
}

const RouterModule::Range* RouterModule::decode(uint64_t addr) const {
  for (const auto& r : map_)
    if (addr >= r.base && addr - r.base < r.size) return &r;
  return nullptr;
}

void RouterModule::b_transport(int, tlm::tlm_generic_payload& gp, sc_core::sc_time& delay) {
  const uint64_t addr = gp.get_address();
  const Range* r = decode(addr);
  ++transactions_;
  if (!r || gp.get_data_length() > r->size - (addr - r->base)) {
    ++decode_errors_;
    gp.set_response_status(tlm::TLM_ADDRESS_ERROR_RESPONSE);
    return;
  }
  gp.set_address(addr - r->base);
  delay += latency_;
  initiator_socket[r->port]->b_transport(gp, delay);
  gp.set_address(addr);
}

unsigned RouterModule::transport_dbg(int, tlm::tlm_generic_payload& gp) {
  const uint64_t addr = gp.get_address();
  const Range* r = decode(addr);
  if (!r) return 0;
  gp.set_address(addr - r->base);
  const unsigned n = initiator_socket[r->port]->transport_dbg(gp);
  gp.set_address(addr);
  return n;
}

bool RouterModule::get_direct_mem_ptr(int, tlm::tlm_generic_payload& gp, tlm::tlm_dmi& dmi) {
  const uint64_t addr = gp.get_address();
  const Range* r = decode(addr);
  if (!r) return false;
  gp.set_address(addr - r->base);
  const bool ok = initiator_socket[r->port]->get_direct_mem_ptr(gp, dmi);
  gp.set_address(addr);
  // Back into the initiator's address view, clipped to the range.
  dmi.set_start_address(dmi.get_start_address() + r->base);
  dmi.set_end_address(std::min<uint64_t>(dmi.get_end_address() + r->base, r->base + r->size - 1));
  dmi.set_read_latency(dmi.get_read_latency() + latency_);
  dmi.set_write_latency(dmi.get_write_latency() + latency_);
  return ok;
}

void RouterModule::invalidate_direct_mem_ptr(int port, sc_dt::uint64 start, sc_dt::uint64 end) {
  ++dmi_invalidations_;
  for (const auto& r : map_) {
    if (static_cast<int>(r.port) != port) continue;
    for (unsigned i = 0; i < target_socket.size(); ++i)
      target_socket[i]->invalidate_direct_mem_ptr(start + r.base, end + r.base);
  }
}

void RouterModule::describe_stats(StatVisitor& v) const {
  v.counter("transactions", transactions_, "transactions", "b_transport calls routed");
  v.counter("decode_errors", decode_errors_, "transactions", "transactions to an unmapped address");
  v.counter("dmi_invalidations", dmi_invalidations_, "count",
            "DMI invalidations broadcast to initiators");
}

}  // namespace cvmsim
