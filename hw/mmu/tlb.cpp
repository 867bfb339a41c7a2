#include "hw/mmu/tlb.h"

#include <bit>
#include <cassert>

namespace cvmsim {

Status Tlb::validate(const TlbConfig& cfg) {
  if (cfg.sets == 0 || !std::has_single_bit(cfg.sets) || cfg.ways == 0) return Errno::kEINVAL;
  // Slot indices are ints in find().
  if (uint64_t{cfg.sets} * cfg.ways > (uint64_t{1} << 30)) return Errno::kEINVAL;
  return {};
}

Result<Tlb> Tlb::create(const TlbConfig& cfg) {
  if (Status s = validate(cfg); !s) return s.error();
  return Tlb(cfg);
}

Tlb::Tlb(const TlbConfig& cfg) : cfg_(cfg) {
  assert(validate(cfg).ok());
  ways_ = cfg.ways;
  set_mask_ = cfg.sets - 1;
  const size_t n = size_t{cfg.sets} * cfg.ways;
  keys_.assign(n, 0);
  stamps_.assign(n, 0);
  entries_.assign(n, TlbEntry{});
  occ_pos_.assign(n, kNotOccupied);
  occupied_.reserve(n);
}

void Tlb::occupy(size_t i) {
  occ_pos_[i] = static_cast<uint32_t>(occupied_.size());
  occupied_.push_back(static_cast<uint32_t>(i));
}

void Tlb::vacate(size_t i) {
  const uint32_t pos = occ_pos_[i];
  const uint32_t last = occupied_.back();
  occupied_[pos] = last;
  occ_pos_[last] = pos;
  occupied_.pop_back();
  occ_pos_[i] = kNotOccupied;
}

TlbEntry* Tlb::fill(uint16_t asid, Gpa gpa, Pfn pfn_base, PageSize size, Perms perms, uint16_t sw,
                    uint64_t tag, void* host_ptr) {
  assert(pfn_base.is_aligned(size));
  assert((gpa.value() >> kMaxInputBits) == 0);
  ++stats_.fills;
  const uint64_t vpn = vpn_of(gpa, size);
  const uint64_t key = key_of(asid, vpn, size);
  const size_t base = (vpn & set_mask_) * ways_;
  size_t victim = base;
  bool replace_same = false;
  bool found_invalid = false;
  for (unsigned w = 0; w < ways_; ++w) {
    if (keys_[base + w] == key) {
      victim = base + w;
      replace_same = true;
      break;
    }
  }
  if (!replace_same) {
    for (unsigned w = 0; w < ways_; ++w) {
      const size_t i = base + w;
      if (keys_[i] == 0) {
        victim = i;
        found_invalid = true;
        break;
      }
      if (stamps_[i] < stamps_[victim]) victim = i;
    }
    if (!found_invalid) {
      ++stats_.evictions;
      --population_[level_of(entries_[victim].size)];
    } else {
      occupy(victim);
    }
    ++population_[level_of(size)];
  }
  keys_[victim] = key;
  stamps_[victim] = ++clock_;
  TlbEntry& e = entries_[victim];
  e.gfn = gpa_to_gfn(gpa.align_down(size));
  e.pfn = pfn_base;
  e.tag = tag;
  e.host_ptr = host_ptr;
  e.asid = asid;
  e.size = size;
  e.perms = perms;
  e.sw = sw;
  return &e;
}

void Tlb::drop(size_t i) {
  keys_[i] = 0;
  vacate(i);
  entries_[i].host_ptr = nullptr;
  --population_[level_of(entries_[i].size)];
  ++stats_.entries_invalidated;
}

unsigned Tlb::invalidate_addr(uint16_t asid, Gpa gpa) {
  ++stats_.invalidations_addr;
  if ((gpa.value() >> kMaxInputBits) != 0) return 0;
  unsigned n = 0;
  for (unsigned s = 0; s < kSizes; ++s) {
    // An entry is unique per (asid, page, size), so one match per size at most.
    if (population_[s] == 0) continue;
    const int i = find(asid, gpa, static_cast<PageSize>(s));
    if (i >= 0) {
      drop(static_cast<size_t>(i));
      ++n;
    }
  }
  return n;
}

unsigned Tlb::invalidate_range(uint16_t asid, Gpa start, uint64_t bytes) {
  ++stats_.invalidations_range;
  if (bytes == 0) return 0;
  const uint64_t first = start.value();
  const uint64_t last = first + (bytes - 1) < first ? ~uint64_t{0} : first + (bytes - 1);
  unsigned n = 0;
  for (size_t k = occupied_.size(); k-- > 0;) {
    const size_t i = occupied_[k];
    if (asid_of_key(keys_[i]) != asid) continue;
    const uint64_t b = entries_[i].base().value();
    const uint64_t e = b + (bytes_of(entries_[i].size) - 1);
    if (b <= last && e >= first) {
      drop(i);
      ++n;
    }
  }
  return n;
}

unsigned Tlb::invalidate_asid(uint16_t asid) {
  ++stats_.invalidations_asid;
  unsigned n = 0;
  // Only occupied slots are visited: a flush costs what the TLB holds, not its capacity.
  for (size_t k = occupied_.size(); k-- > 0;) {
    const size_t i = occupied_[k];
    if (asid_of_key(keys_[i]) == asid) {
      drop(i);
      ++n;
    }
  }
  return n;
}

unsigned Tlb::invalidate_all() {
  ++stats_.invalidations_all;
  unsigned n = 0;
  while (!occupied_.empty()) {
    drop(occupied_.back());
    ++n;
  }
  return n;
}

unsigned Tlb::clear_host_ptrs(Pfn first, uint64_t count) {
  if (count == 0) return 0;
  const uint64_t lo = first.value();
  const uint64_t hi = lo + (count - 1) < lo ? ~uint64_t{0} : lo + (count - 1);  // inclusive
  unsigned n = 0;
  for (const uint32_t i : occupied_) {
    TlbEntry& e = entries_[i];
    if (e.host_ptr == nullptr) continue;
    const uint64_t b = e.pfn.value();
    if (b <= hi && b + (frames_of(e.size) - 1) >= lo) {
      e.host_ptr = nullptr;
      ++n;
    }
  }
  return n;
}

unsigned Tlb::occupancy() const {
  return population_[0] + population_[1] + population_[2];
}

void Tlb::describe_stats(StatVisitor& v) const {
  v.counter("lookups", stats_.lookups, "count", "translations looked up");
  v.counter("hits", stats_.hits, "count", "lookups that found an entry");
  v.counter("misses", stats_.misses, "count", "lookups that found no entry");
  v.counter("fills", stats_.fills, "count", "translations inserted");
  v.counter("evictions", stats_.evictions, "count", "valid entries replaced by a fill (LRU)");
  v.counter("invalidations_addr", stats_.invalidations_addr, "count",
            "invalidations of one address (all page sizes covering it)");
  v.counter("invalidations_range", stats_.invalidations_range, "count",
            "invalidations of an address range of one address-space id");
  v.counter("invalidations_asid", stats_.invalidations_asid, "count",
            "invalidations of a whole address-space id");
  v.counter("invalidations_all", stats_.invalidations_all, "count", "full flushes");
  v.counter("entries_invalidated", stats_.entries_invalidated, "count",
            "valid entries removed by invalidations");
}

}  // namespace cvmsim
