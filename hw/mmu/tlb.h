// A per-vCPU TLB for stage-2 (guest-physical to host-physical) translations, tagged by an
// address-space id (VPID / ASID / VMID: whatever the backend uses to tell address spaces apart).
//
// Set-associative with `sets` x `ways` entries shared by all page sizes; each size indexes with
// its own page number (gpa >> 12, >> 21, >> 30), as a unified STLB does. A lookup probes only
// the sizes that currently have entries (per-size population counts), so a TLB holding only
// 4 KiB entries costs one set probe. Replacement is true LRU: every hit or fill stamps the entry
// with a per-TLB counter and the victim is the oldest valid way (an invalid way first).
//
// This is the simulator's hot path: lookup() is inline, allocates nothing and makes no virtual
// call; an entry's key (page number, asid, size, valid) is one 64-bit compare.
#pragma once

#include <cstdint>
#include <vector>

#include "hw/base/addr.h"
#include "hw/base/page_size.h"
#include "hw/base/result.h"
#include "hw/base/stat_visitor.h"
#include "hw/mmu/perms.h"

namespace cvmsim {

struct TlbConfig {
  unsigned sets = 64;  // power of two, >= 1
  unsigned ways = 8;   // >= 1
};

struct TlbEntry {
  Gfn gfn;                   // first guest frame covered (aligned to size)
  Pfn pfn;                   // first host frame (aligned to size)
  uint64_t tag = 0;          // opaque to the TLB (the CPU may keep a key id here)
  void* host_ptr = nullptr;  // opaque to the TLB (the CPU's DMI pointer); dropped on invalidation
  uint16_t asid = 0;
  PageSize size = PageSize::k4K;
  Perms perms;
  uint16_t sw = 0;  // the leaf's software bits

  Gpa base() const { return gfn_to_gpa(gfn); }
  // The 4 KiB host frame gpa lands in. Precondition: the entry covers gpa.
  Pfn pfn_for(Gpa gpa) const { return pfn + ((gpa - base()) >> kPageShift); }
};

class Tlb {
 public:
  struct Stats {
    uint64_t lookups = 0;
    uint64_t hits = 0;
    uint64_t misses = 0;
    uint64_t fills = 0;
    uint64_t evictions = 0;
    uint64_t invalidations_addr = 0;
    uint64_t invalidations_range = 0;
    uint64_t invalidations_asid = 0;
    uint64_t invalidations_all = 0;
    uint64_t entries_invalidated = 0;
  };

  // Guest-physical addresses at or above 2^57 (the widest input, 5-level paging) never hit.
  static constexpr unsigned kMaxInputBits = 57;

  // EINVAL unless sets is a power of two and ways >= 1.
  static Status validate(const TlbConfig& cfg);
  static Result<Tlb> create(const TlbConfig& cfg);
  // Precondition: validate(cfg) is ok (asserted).
  explicit Tlb(const TlbConfig& cfg = {});
  Tlb(unsigned sets, unsigned ways) : Tlb(TlbConfig{sets, ways}) {}

  // The entry translating gpa for asid, or nullptr. Counts a lookup and a hit or miss and
  // refreshes LRU. The pointer stays valid until the next fill or invalidation.
  TlbEntry* lookup(uint16_t asid, Gpa gpa) {
    ++stats_.lookups;
    if ((gpa.value() >> kMaxInputBits) == 0) {
      for (unsigned s = 0; s < kSizes; ++s) {
        if (population_[s] == 0) continue;
        const int i = find(asid, gpa, static_cast<PageSize>(s));
        if (i >= 0) {
          stamps_[i] = ++clock_;
          ++stats_.hits;
          return &entries_[i];
        }
      }
    }
    ++stats_.misses;
    return nullptr;
  }
  // As lookup() but without statistics or LRU update (for checkers and tests).
  const TlbEntry* peek(uint16_t asid, Gpa gpa) const {
    if ((gpa.value() >> kMaxInputBits) != 0) return nullptr;
    for (unsigned s = 0; s < kSizes; ++s) {
      if (population_[s] == 0) continue;
      const int i = find(asid, gpa, static_cast<PageSize>(s));
      if (i >= 0) return &entries_[i];
    }
    return nullptr;
  }

  // Caches a translation of the `size` page containing gpa. An entry with the same (asid,
  // page, size) is replaced in place; otherwise an invalid way or the LRU way of the set is
  // used. Precondition: pfn_base aligned to size, gpa below 2^57 (asserted).
  TlbEntry* fill(uint16_t asid, Gpa gpa, Pfn pfn_base, PageSize size, Perms perms, uint16_t sw = 0,
                 uint64_t tag = 0, void* host_ptr = nullptr);

  // Each returns the number of entries removed.
  // Every entry of asid, of any size, that translates gpa.
  unsigned invalidate_addr(uint16_t asid, Gpa gpa);
  // Every entry of asid that overlaps [start, start+bytes).
  unsigned invalidate_range(uint16_t asid, Gpa start, uint64_t bytes);
  unsigned invalidate_asid(uint16_t asid);
  unsigned invalidate_all();
  // Keeps the entries but drops host_ptr from those mapping any of frames [first, first+count)
  // (DMI revocation); returns how many pointers were dropped.
  unsigned clear_host_ptrs(Pfn first, uint64_t count);

  // f(const TlbEntry&) for every valid entry, in slot order.
  template <class F>
  void for_each_entry(F&& f) const {
    for (size_t i = 0; i < keys_.size(); ++i) {
      if (keys_[i] != 0) f(static_cast<const TlbEntry&>(entries_[i]));
    }
  }
  // f(const TlbEntry&) for every valid entry, in no particular order; costs what the TLB holds,
  // not its capacity (checkers).
  template <class F>
  void for_each_occupied(F&& f) const {
    for (const uint32_t i : occupied_) f(static_cast<const TlbEntry&>(entries_[i]));
  }
  unsigned occupancy() const;
  unsigned population(PageSize s) const { return population_[level_of(s)]; }
  const TlbConfig& config() const { return cfg_; }
  const Stats& stats() const { return stats_; }
  void describe_stats(StatVisitor& v) const;

 private:
  static constexpr unsigned kSizes = 3;
  static constexpr unsigned kSizeShift = 1;
  static constexpr unsigned kAsidShift = 3;
  static constexpr unsigned kVpnShift = 19;  // 45-bit page numbers (2^57 bytes) fit above

  static uint64_t vpn_of(Gpa gpa, PageSize s) { return gpa.value() >> shift_of(s); }
  static uint64_t key_of(uint16_t asid, uint64_t vpn, PageSize s) {
    return (vpn << kVpnShift) | (uint64_t{asid} << kAsidShift) |
           (uint64_t{level_of(s)} << kSizeShift) | 1;
  }
  static uint16_t asid_of_key(uint64_t key) { return static_cast<uint16_t>(key >> kAsidShift); }
  int find(uint16_t asid, Gpa gpa, PageSize s) const {
    const uint64_t vpn = vpn_of(gpa, s);
    const uint64_t key = key_of(asid, vpn, s);
    const size_t base = (vpn & set_mask_) * ways_;
    // Keys are unique within a set (fill replaces a same-key entry in place), so at most one way
    // matches. Scanning every way without an early exit costs a few compares but no branch
    // misprediction: on a hit the matching way is effectively random, so an early-exit loop
    // mispredicts its exit nearly every time.
    const uint64_t* k = keys_.data() + base;
    int way = -1;
    for (unsigned w = 0; w < ways_; ++w) way = k[w] == key ? static_cast<int>(w) : way;
    return way < 0 ? -1 : static_cast<int>(base) + way;
  }
  void drop(size_t i);
  void occupy(size_t i);
  void vacate(size_t i);
  static constexpr uint32_t kNotOccupied = ~uint32_t{0};

  TlbConfig cfg_;
  unsigned ways_ = 1;
  uint64_t set_mask_ = 0;
  uint64_t clock_ = 0;
  unsigned population_[kSizes] = {0, 0, 0};
  std::vector<uint64_t> keys_;  // 0 = invalid
  std::vector<uint64_t> stamps_;
  std::vector<TlbEntry> entries_;
  // The valid slots, so that flushes and DMI revocations cost what the TLB holds rather than its
  // capacity: occupied_ lists them, occ_pos_[slot] is the slot's index in it.
  std::vector<uint32_t> occupied_;
  std::vector<uint32_t> occ_pos_;
  Stats stats_;
};

}  // namespace cvmsim
