// KVM's configuration from a scenario's platform section, shared by the SystemC platform
// (sim/platform/run.cpp) and random exploration (sim/explore), so that both build KVM with the
// same policies (docs/scenario-format.md, platform.kvm). Pure C++ (no SystemC).
#pragma once

#include "models/kvm/kvm_config.h"
#include "sim/config/scenario_config.h"

namespace cvmsim::scenario {

inline kvm::KvmConfig kvm_config(const config::PlatformConfig& p) {
  kvm::KvmConfig k;
  k.attr_store = p.kvm.attr_store;
  k.gmem_rebind = p.kvm.gmem_rebind;
  k.gmem_zero_on_handout = p.kvm.gmem_zero_on_handout;
  k.gmem_huge_folios = p.kvm.gmem_huge_folios;
  k.flush_tlb_after_zap = p.kvm.flush_tlb_after_zap;
  k.costs = p.kvm.costs.to_costs(static_cast<double>(p.costs.mem_bytes_per_cycle),
                                 p.costs.hypercall_cycles);
  return k;
}

}  // namespace cvmsim::scenario
