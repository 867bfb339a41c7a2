// Small vocabulary shared by the KVM layer's parts (attributes, guest_memfd, memslots, MMU).
#pragma once

#include <cstdint>

#include "hw/base/addr.h"

namespace cvmsim::kvm {

// A half-open GFN range [start, end).
struct GfnRange {
  Gfn start{};
  Gfn end{};
  uint64_t pages() const { return end - start; }
  bool empty() const { return !(start < end); }
  bool contains(Gfn g) const { return start <= g && g < end; }
  bool operator==(const GfnRange&) const = default;
};

// Which mappings an invalidation zaps (Linux's KVM_FILTER_PRIVATE / KVM_FILTER_SHARED,
// kvm-guest-memfd.md §5 x86 hooks). On VM types with one root set the filter has no effect.
enum class AttrFilter : uint8_t { kPrivate = 1, kShared = 2, kBoth = 3 };

// Address-space id and slot id as packed in kvm_userspace_memory_region::slot.
struct SlotId {
  uint16_t as_id = 0;
  uint16_t id = 0;
  bool operator==(const SlotId&) const = default;
  auto operator<=>(const SlotId&) const = default;
};

}  // namespace cvmsim::kvm
