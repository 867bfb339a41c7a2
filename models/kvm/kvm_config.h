// Parameters of the KVM layer: its policies and the cost of every KVM operation, declared once
// here with visit() (hw/base/schema.h): the scenario's platform.kvm section.
// Every latency is a named parameter with a documented default (docs/costs.md); the defaults
// are assumptions where no public figure exists, and say so there.
#pragma once

#include <cstdint>

#include "hw/base/cycles.h"
#include "hw/base/schema.h"
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
  // clear_page / memcpy bandwidth: the memory's (platform.costs.mem_bytes_per_cycle), set by
  // the platform builder, not a KVM parameter.
  double zero_bytes_per_cycle = 32;

  template <class V>
  void visit(V& v) {
    using config::cycles_field;
    v(cycles_field("ioctl_cycles", ioctl,
                   "syscall entry/exit and ioctl dispatch of every KVM ioctl and guest_memfd file "
                   "operation (estimate)"));
    v(cycles_field("exit_to_userspace_cycles", exit_to_userspace,
                   "KVM_RUN returning to the VMM and re-entering the guest, on top of the VM exit "
                   "round trip (estimate: a heavyweight exit costs several microseconds)"));
    v(cycles_field(
        "fault_cycles", fault_base,
        "software path of one KVM stage-2 fault, excluding the pieces below (estimate)"));
    v(cycles_field("attr_entry_cycles", attr_per_entry,
                   "attribute update or lookup, per entry touched (xarray store: per page; "
                   "estimate)"));
    v(cycles_field(
        "attr_range_cycles", attr_per_range,
        "attribute update, per range inserted, split or merged (range store; estimate)"));
    v(cycles_field("zap_leaf_cycles", zap_per_leaf,
                   "clearing one stage-2 leaf during an invalidation (estimate)"));
    v(cycles_field("map_leaf_cycles", map_per_leaf,
                   "installing one stage-2 leaf on a fault (estimate)"));
    v(cycles_field("tlb_flush_cycles", tlb_flush,
                   "kvm_flush_remote_tlbs: flushing every vCPU's TLB of the VM (IPIs + INVEPT, "
                   "estimate)"));
    v(cycles_field("gup_cycles", gup_per_page,
                   "resolving a host frame: get_user_pages or a guest_memfd folio lookup "
                   "(estimate)"));
    v(cycles_field("memslot_update_cycles", memslot_update,
                   "creating, moving or deleting a memslot (SRCU swap, estimate)"));
    v(cycles_field("hypercall_cycles", hypercall,
                   "KVM's work for a hypercall, on top of the VM exit round trip (estimate)"));
  }
};

inline constexpr config::EnumName<AttrStoreKind> kAttrStoreNames[] = {
    {AttrStoreKind::kXarray, "xarray"}, {AttrStoreKind::kRange, "range"}};
inline constexpr config::EnumName<GmemRebindPolicy> kRebindNames[] = {
    {GmemRebindPolicy::kForbid, "forbid"},
    {GmemRebindPolicy::kZeroOnUnbind, "zero_on_unbind"},
    {GmemRebindPolicy::kZeroOnBind, "zero_on_bind"},
    {GmemRebindPolicy::kUnsafeNoScrub, "unsafe_no_scrub"}};

// The scenario's platform.kvm section (docs/scenario-format.md): KVM's policies, each defaulting
// to mainline, and its costs.
struct KvmConfig {
  AttrStoreKind attr_store = AttrStoreKind::kXarray;         // Linux's xarray is the reference
  uint64_t attr_store_max_bytes = 0;                         // 0 = unlimited (ENOMEM beyond it)
  GmemRebindPolicy gmem_rebind = GmemRebindPolicy::kForbid;  // mainline
  bool gmem_zero_on_handout = true;                          // mainline; false is unsafe
  bool gmem_huge_folios =
      false;  // 2 MiB guest_memfd folios (PROPOSED hugetlb guest_memfd); mainline false
  bool flush_tlb_after_zap = true;  // mainline; false is unsafe (stale translations survive a zap)
  KvmCosts costs;
  template <class V>
  void visit(V& v) {
    v(config::enum_field(
        "attr_store", attr_store, kAttrStoreNames,
        "memory-attribute storage: xarray (per page, as Linux) or range (interval store)"));
    v(config::enum_field(
        "gmem_rebind", gmem_rebind, kRebindNames,
        "binding a guest_memfd to a VM other than its own: forbid (mainline, EINVAL), "
        "zero_on_unbind (allowed; pages zeroed when the last binding goes), zero_on_bind (allowed "
        "once unbound; zeroed when another VM binds it), unsafe_no_scrub (allowed, pages handed "
        "over as they are: unsafe, the checker's ISO-6 catches it)"));
    v(config::bool_field(
        "gmem_zero_on_handout", gmem_zero_on_handout,
        "zero a guest_memfd page before the guest first gets it (mainline); false is "
        "UNSAFE: freed frames reach the next owner with their old contents"));
    v(config::bool_field(
        "gmem_huge_folios", gmem_huge_folios,
        "guest_memfd hands out 2 MiB folios where a whole aligned 2 MiB block of the file "
        "is unallocated (hugetlb-backed guest_memfd, PROPOSED upstream; mainline is "
        "order-0, false); private memory can then be mapped at 2 MiB where the backend "
        "allows it (vms[].tdx.huge_private)"));
    v(config::bool_field(
        "flush_tlb_after_zap", flush_tlb_after_zap,
        "flush every vCPU's TLB after KVM zaps mappings (mainline); false is UNSAFE: "
        "stale translations survive"));
    v(config::object_field("costs", costs, "cost of KVM operations"));
  }
};

}  // namespace cvmsim::kvm
