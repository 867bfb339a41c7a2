#include "hw/mmu/pwc.h"

#include <bit>
#include <cassert>

namespace cvmsim {

Status Pwc::validate(const PwcConfig& cfg) {
  if (cfg.entries == 0) return {};
  if (cfg.ways == 0 || cfg.ways > 64 || cfg.entries % cfg.ways != 0 ||
      !std::has_single_bit(cfg.entries / cfg.ways)) {
    return Errno::kEINVAL;
  }
  return {};
}

Pwc::Pwc(const PwcConfig& cfg) : cfg_(cfg) {
  assert(validate(cfg).ok());
  if (cfg.entries == 0) return;
  ways_ = cfg.ways;
  sets_ = cfg.entries / cfg.ways;
  set_mask_ = sets_ - 1;
  const size_t n = size_t{kMaxLevel - kMinLevel + 1} * cfg.entries;
  keys_.assign(n, 0);
  next_.assign(n, 0);
  stamps_.assign(n, 0);
}

void Pwc::insert(uint16_t asid, unsigned level, Gpa gpa, Pfn next) {
  if (!enabled()) return;
  assert(level >= kMinLevel && level <= kMaxLevel);
  const uint64_t prefix = prefix_of(gpa, level);
  const uint64_t key = key_of(asid, prefix);
  const size_t base = slot_base(level, prefix);
  // Refill in place if present; else the first invalid way; else the least recently used.
  size_t victim = base;
  for (unsigned w = 0; w < ways_; ++w) {
    if (keys_[base + w] == key) {
      next_[base + w] = next.value();
      stamps_[base + w] = ++clock_;
      ++stats_.fills;
      return;
    }
  }
  bool evict = true;
  for (unsigned w = 0; w < ways_; ++w) {
    const size_t i = base + w;
    if (keys_[i] == 0) {
      victim = i;
      evict = false;
      break;
    }
    if (stamps_[i] < stamps_[victim]) victim = i;
  }
  if (evict) ++stats_.evictions;
  keys_[victim] = key;
  next_[victim] = next.value();
  stamps_[victim] = ++clock_;
  ++stats_.fills;
}

void Pwc::drop(size_t i) {
  keys_[i] = 0;
  ++stats_.entries_invalidated;
}

void Pwc::invalidate_all() {
  ++stats_.invalidations_all;
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i] != 0) drop(i);
  }
}

void Pwc::invalidate_asid(uint16_t asid) {
  ++stats_.invalidations_asid;
  const uint64_t asid_mask = ((uint64_t{1} << kPrefixShift) - 1) & ~kValid;
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i] != 0 && (keys_[i] & asid_mask) == (uint64_t{asid} << kAsidShift)) drop(i);
  }
}

void Pwc::invalidate_range(uint16_t asid, Gpa start, uint64_t bytes) {
  ++stats_.invalidations_range;
  if (bytes == 0 || !enabled()) return;
  const uint64_t first = start.value();
  const uint64_t last = first + (bytes - 1);  // inclusive, so a range ending at 2^64 works
  const uint64_t asid_mask = ((uint64_t{1} << kPrefixShift) - 1) & ~kValid;
  const size_t per_level = size_t{sets_} * ways_;
  for (unsigned level = kMinLevel; level <= kMaxLevel; ++level) {
    const unsigned shift = kPageShift + kBitsPerLevel * level;
    const uint64_t lo = first >> shift;
    const uint64_t hi = last >> shift;
    const size_t begin = size_t{level - kMinLevel} * per_level;
    for (size_t i = begin; i < begin + per_level; ++i) {
      const uint64_t k = keys_[i];
      if (k == 0 || (k & asid_mask) != (uint64_t{asid} << kAsidShift)) continue;
      const uint64_t prefix = k >> kPrefixShift;
      if (prefix >= lo && prefix <= hi) drop(i);
    }
  }
}

unsigned Pwc::occupancy() const {
  unsigned n = 0;
  for (uint64_t k : keys_) n += k != 0;
  return n;
}

void Pwc::describe_stats(StatVisitor& v) const {
  v.counter("lookups", stats_.lookups, "count", "page-walk-cache probes (one per level tried)");
  v.counter("hits", stats_.hits, "count", "probes that found a cached non-leaf entry");
  v.counter("fills", stats_.fills, "count", "non-leaf entries inserted");
  v.counter("evictions", stats_.evictions, "count", "valid entries replaced (LRU)");
  v.counter("invalidations_all", stats_.invalidations_all, "count", "full flushes");
  v.counter("invalidations_asid", stats_.invalidations_asid, "count",
            "flushes of one address-space id");
  v.counter("invalidations_range", stats_.invalidations_range, "count",
            "flushes of an address range of one address-space id");
  v.counter("entries_invalidated", stats_.entries_invalidated, "count",
            "valid entries removed by invalidations");
}

}  // namespace cvmsim
