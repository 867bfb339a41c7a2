// Parameters of the KVM layer: the attribute store policy and the cost of every KVM operation.
// Every latency is a named parameter with a documented default (docs/costs.md); the defaults
// are assumptions where no public figure exists, and say so there.
#pragma once

#include <cstdint>

#include "hw/base/cycles.h"
#include "models/kvm/guest_memfd.h"
#include "models/kvm/mem_attributes.h"

namespace cvmsim::kvm {

struct KvmCosts {
  Cycles ioctl{400};  // syscall entry/exit and ioctl dispatch
  Cycles exit_to_userspace{
      8000};                    // KVM_RUN returning to the VMM and re-entering (heavyweight exit)
  Cycles fault_base{800};       // kvm_mmu_page_fault software path, excluding the pieces below
  Cycles attr_per_entry{120};   // one xarray store/erase or lookup step of the attribute update
  Cycles attr_per_range{300};   // one range-store insert/split/merge
  Cycles zap_per_leaf{60};      // clearing one stage-2 leaf during an invalidation
  Cycles map_per_leaf{150};     // installing one stage-2 leaf
  Cycles tlb_flush{2000};       // kvm_flush_remote_tlbs: INVEPT/INVLPGA on every vCPU (IPIs)
  Cycles gup_per_page{400};     // get_user_pages / guest_memfd folio lookup
  Cycles memslot_update{6000};  // KVM_SET_USER_MEMORY_REGION2 bookkeeping (SRCU swap)
  Cycles hypercall{200};        // KVM's work for a hypercall, on top of the exit round trip
  double zero_bytes_per_cycle =
      32;  // clear_page / memcpy bandwidth (platform.costs.mem_bytes_per_cycle)
};

struct KvmConfig {
  AttrStoreKind attr_store = AttrStoreKind::kXarray;         // Linux's xarray is the reference
  uint64_t attr_store_max_bytes = 0;                         // 0 = unlimited (ENOMEM beyond it)
  GmemRebindPolicy gmem_rebind = GmemRebindPolicy::kForbid;  // mainline
  bool gmem_zero_on_handout = true;                          // mainline; false is unsafe
  bool gmem_huge_folios =
      false;  // 2 MiB guest_memfd folios (PROPOSED hugetlb guest_memfd); mainline false
  bool flush_tlb_after_zap = true;  // mainline; false is unsafe (stale translations survive a zap)
  KvmCosts costs;
};

}  // namespace cvmsim::kvm
