// Page-walk cache: caches non-leaf stage-2 entries so that a walk can start below the root.
// Modelled on the x86 paging-structure caches (Intel SDM Vol. 3A §4.10.3, "Paging-Structure
// Caches": one cache per upper level, tagged by the address bits that select the entry) and
// the Arm walk cache (Arm ARM D8.16 "Translation Lookaside Buffers": intermediate entries may
// be cached and are removed by TLBI IPAS2 with a level hint, or by VMALLS12E1).
//
// One cache per level 1..kMaxStage2Levels-1, each set-associative with the same geometry and
// true LRU. An entry cached for `level` is the entry read from the level-`level` table on gpa's
// path, i.e. it names the level-1 table below it; its tag is (asid, gpa >> (12 + 9*level)).
// Leaves are never cached here (they go to the TLB).
//
// The owner of the page table invalidates: the cache does not see table changes. A merge or
// range unmap that frees a table frame must be followed by invalidate_range (or asid/all).
#pragma once

#include <cstdint>
#include <vector>

#include "hw/base/addr.h"
#include "hw/base/result.h"
#include "hw/base/stat_visitor.h"
#include "hw/mmu/pte_format.h"

namespace cvmsim {

struct PwcConfig {
  unsigned entries = 32;  // per cached level; 0 disables the cache
  unsigned ways = 4;      // entries/ways must be a power of two
};

class Pwc {
 public:
  struct Stats {
    uint64_t lookups = 0;  // probes (a walk may probe several levels)
    uint64_t hits = 0;
    uint64_t fills = 0;
    uint64_t evictions = 0;
    uint64_t invalidations_all = 0;
    uint64_t invalidations_asid = 0;
    uint64_t invalidations_range = 0;
    uint64_t entries_invalidated = 0;
  };
  static constexpr unsigned kMinLevel = 1;
  static constexpr unsigned kMaxLevel = kMaxStage2Levels - 1;

  // EINVAL unless (entries == 0) or (ways >= 1, entries % ways == 0, entries/ways a power of
  // two, ways <= 64).
  static Status validate(const PwcConfig& cfg);
  // Precondition: validate(cfg) is ok (asserted).
  explicit Pwc(const PwcConfig& cfg = {});

  bool enabled() const { return sets_ != 0; }
  const PwcConfig& config() const { return cfg_; }

  // The next-table frame cached for the level-`level` entry on gpa's path.
  bool lookup(uint16_t asid, unsigned level, Gpa gpa, Pfn* next) {
    if (!enabled()) return false;
    ++stats_.lookups;
    const uint64_t prefix = prefix_of(gpa, level);
    const uint64_t key = key_of(asid, prefix);
    const size_t base = slot_base(level, prefix);
    for (unsigned w = 0; w < ways_; ++w) {
      if (keys_[base + w] == key) {
        stamps_[base + w] = ++clock_;
        *next = Pfn(next_[base + w]);
        ++stats_.hits;
        return true;
      }
    }
    return false;
  }
  void insert(uint16_t asid, unsigned level, Gpa gpa, Pfn next);

  void invalidate_all();
  void invalidate_asid(uint16_t asid);
  // Removes every entry of asid whose span (2^(12+9*level) bytes) meets [start, start+bytes).
  void invalidate_range(uint16_t asid, Gpa start, uint64_t bytes);

  // Valid entries held, all levels.
  unsigned occupancy() const;
  const Stats& stats() const { return stats_; }
  void describe_stats(StatVisitor& v) const;

 private:
  static constexpr unsigned kAsidShift = 1;
  static constexpr unsigned kPrefixShift = 17;
  static constexpr uint64_t kValid = 1;

  static uint64_t prefix_of(Gpa gpa, unsigned level) {
    return gpa.value() >> (kPageShift + kBitsPerLevel * level);
  }
  static uint64_t key_of(uint16_t asid, uint64_t prefix) {
    return (prefix << kPrefixShift) | (uint64_t{asid} << kAsidShift) | kValid;
  }
  size_t slot_base(unsigned level, uint64_t prefix) const {
    return (size_t{level - kMinLevel} * sets_ + (prefix & set_mask_)) * ways_;
  }
  void drop(size_t i);

  PwcConfig cfg_;
  unsigned sets_ = 0;
  unsigned ways_ = 0;
  uint64_t set_mask_ = 0;
  uint64_t clock_ = 0;
  std::vector<uint64_t> keys_;  // 0 = invalid
  std::vector<uint64_t> next_;
  std::vector<uint64_t> stamps_;
  Stats stats_;
};

}  // namespace cvmsim
