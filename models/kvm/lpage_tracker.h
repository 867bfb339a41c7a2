// x86 hugepage tracking with mixed attributes for one memslot (kvm-guest-memfd.md §5 "Hugepage
// tracking with mixed attributes"): Linux keeps, per slot and per level, KVM_LPAGE_MIXED_FLAG
// (bit 31 of lpage_info.disallow_lpage) for every huge page whose gfns do not all have identical
// attributes. A mixed huge page is never mapped huge.
//
// Linux holds an lpage_info array entry for every huge page of the slot. The model keeps only the
// mixed ones, in sorted sets, so host memory grows with the number of mixed huge pages and never
// with the slot's size (a 1 TiB slot with uniform attributes costs nothing).
//
// Levels are 2M (512 pages) and 1G (262144 pages). Only huge pages fully inside the slot are
// tracked; the others are never allowed (misaligned slot head or tail), whatever the attributes.
#pragma once

#include <cstdint>
#include <set>
#include <vector>

#include "hw/base/addr.h"
#include "hw/base/page_size.h"
#include "models/kvm/kvm_types.h"
#include "models/kvm/mem_attributes.h"

namespace cvmsim::kvm {

class LpageTracker {
 public:
  LpageTracker(Gfn base_gfn, uint64_t npages);

  // kvm_mmu_init_memslot_memory_attributes(): computes "mixed" for every fully contained huge
  // page. Linux checks every huge page; the model walks the attribute runs over the slot instead
  // and marks the huge pages that contain a run boundary, which are exactly the mixed ones. Cost
  // is that of the store's for_each_run (per run for range, per present entry for xarray), never
  // per huge page of the slot.
  void init(const MemAttributeStore& attrs);

  // kvm_arch_post_set_memory_attributes() for r, whose gfns were just set to new_attrs in attrs:
  // per level ascending (1G consumes the 2M results), recompute the head huge page if r straddles
  // it, clear every huge page inside r, recompute the tail huge page if r straddles it. Only the
  // intersection of r with the slot matters (kvm_handle_gfn_range clips to the slot).
  void post_set(const MemAttributeStore& attrs, GfnRange r, uint64_t new_attrs);

  // level is 2M or 1G (4K is never mixed); gfn anywhere in the huge page. Untracked huge pages
  // (not contained in the slot) read as not mixed.
  bool is_mixed(PageSize level, Gfn gfn) const;
  // The huge page of this level around gfn lies fully inside the slot (for 4K: gfn is in it).
  bool contained(PageSize level, Gfn gfn) const;
  // kvm_mmu_max_mapping_level()'s lpage_info part: the largest of 4K/2M/1G, at most cap, whose huge
  // page around gfn is contained and not mixed.
  PageSize max_level(Gfn gfn, PageSize cap) const;
  // kvm_arch_pre_set_memory_attributes(): for 2M then 1G, the huge page at r's head and the one at
  // its tail (r clipped to the slot) if it straddles r, is contained and is not currently mixed,
  // as full huge-page ranges, to be added to the ongoing invalidation.
  std::vector<GfnRange> straddling_unmixed(GfnRange r) const;

  uint64_t mixed_count(PageSize level) const;
  // The tracker object plus one set node (~40 B) per mixed huge page.
  uint64_t host_bytes() const;
  GfnRange slot() const { return GfnRange{base_, base_ + npages_}; }

 private:
  static unsigned idx_of(PageSize level) { return level_of(level) - 1; }
  bool contained_at(uint64_t hp_start, uint64_t n) const {
    return hp_start >= base_.value() && hp_start + n <= base_.value() + npages_;
  }
  bool hugepage_has_attrs(const MemAttributeStore& attrs, uint64_t gfn, PageSize level,
                          uint64_t want) const;
  void set_mixed(PageSize level, uint64_t gfn, bool mixed);

  Gfn base_;
  uint64_t npages_;
  std::set<uint64_t> mixed_[2];  // huge-page numbers (gfn >> 9 or >> 18) of mixed 2M / 1G pages
};

}  // namespace cvmsim::kvm
