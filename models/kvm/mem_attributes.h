// Per-VM, per-GFN memory attribute storage (kvm->mem_attr_array, kvm-guest-memfd.md §5 "Storage").
//
// Attributes are VM-wide and independent of memslots; an absent entry means 0 (shared). Two
// implementations sit behind one interface and are chosen by configuration (ARCHITECTURE.md
// "Policies are configuration": per-page vs range attribute storage):
//
//   xarray  the reference, Linux's behaviour and cost: a radix tree of 64-slot nodes indexed by gfn
//           holding value entries, one xa_reserve and one xa_store per gfn (KVM loops over every
//           gfn), nodes allocated and freed as lib/xarray.c does. Host memory grows with the
//           number of non-shared pages.
//   range   an interval store: maximal runs of equal non-zero attributes, adjacent equal runs
//           always merged. A set over any range is O(log n) amortised; host memory grows with the
//           number of runs, never with their size.
//
// The store does the bookkeeping only. What a set costs in cycles is the KVM layer's business: it
// reads the cumulative work() counters (per entry for xarray, per range for range) and converts.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "hw/base/addr.h"
#include "hw/base/result.h"
#include "hw/base/stat_visitor.h"
#include "models/kvm/kvm_types.h"

namespace cvmsim::kvm {

enum class AttrStoreKind : uint8_t { kXarray, kRange };

std::string_view name_of(AttrStoreKind k);  // "xarray", "range"
std::optional<AttrStoreKind> parse_attr_store_kind(std::string_view s);

// Host memory the model charges per structure node (for host_bytes()).
// Linux's struct xa_node with XA_CHUNK_SHIFT 6: 8 B header, parent, array, a 16 B list/rcu head,
// 64 slots and 3 mark bitmaps = 576 B.
inline constexpr uint64_t kXaNodeBytes = 576;
inline constexpr unsigned kXaChunkShift = 6;
inline constexpr unsigned kXaChunkSize = 1u << kXaChunkShift;
// A red-black tree node (3 pointers + colour = 32 B) holding {start, end, attrs} (24 B).
inline constexpr uint64_t kRangeNodeBytes = 56;

// Work done, cumulative. The KVM layer converts it to cycles.
struct AttrStoreWork {
  uint64_t lookups = 0;          // root-to-entry searches: xarray tree walks, range-tree searches
  uint64_t entries_written = 0;  // per-index slot writes (xarray: reserve's zero entry, store)
  uint64_t entries_visited = 0;  // entries stepped over by ordered scans (range_has, for_each_run)
  uint64_t ranges_written = 0;   // interval-tree entries inserted, changed or erased (range store)
  uint64_t nodes_allocated = 0;  // xa_node / tree-node allocations
  uint64_t nodes_freed = 0;
};

class MemAttributeStore {
 public:
  virtual ~MemAttributeStore() = default;
  virtual AttrStoreKind kind() const = 0;

  // kvm_get_memory_attributes(); absent = 0 (shared). Counts a lookup.
  virtual uint64_t get(Gfn gfn) const = 0;

  // kvm_range_has_memory_attributes(start, end, mask, attrs), after the caller has ANDed mask with
  // the supported attributes: true iff every gfn in r has (attr & mask) == attrs; false if attrs
  // has bits outside mask; an empty range is true. For attrs == 0 and mask == ~0 this is "no entry
  // present" (Linux's xas_find() fast path).
  virtual bool range_has(GfnRange r, uint64_t mask, uint64_t attrs) const = 0;

  // xa_reserve() of every index of r (kvm-guest-memfd.md §5 step 2). ENOMEM if the configured
  // host-memory limit would be exceeded; then nothing has changed (Linux may leave some indexes
  // reserved, which no lookup can see; the model rolls them back so that host_bytes() is
  // unchanged).
  virtual Status reserve(GfnRange r) = 0;

  // Stores attrs for every gfn of r (§5 step 4); attrs == 0 erases. After a successful reserve(r)
  // this cannot fail. Without one it still succeeds: the limit is enforced by reserve() only.
  virtual void store(GfnRange r, uint64_t attrs) = 0;

  // Visits the maximal runs of equal attributes intersecting r, attrs == 0 gaps included, clipped
  // to r, in ascending order. Cost is per entry (xarray) or per run (range), never per empty gfn.
  virtual void for_each_run(GfnRange r,
                            const std::function<void(GfnRange, uint64_t)>& fn) const = 0;

  virtual uint64_t host_bytes() const = 0;  // host memory held by the structure
  virtual const AttrStoreWork& work() const = 0;
  virtual void describe_stats(StatVisitor& v) const = 0;
};

// max_host_bytes == 0 means unlimited.
std::unique_ptr<MemAttributeStore> make_attr_store(AttrStoreKind kind, uint64_t max_host_bytes = 0);

}  // namespace cvmsim::kvm
