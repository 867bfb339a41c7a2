// Generic KVM's state machine of one GFN, as data (hw/base/state_machine.h, docs/coverage.md):
// its memory attribute (shared/private, kvm-guest-memfd.md §5), whether its memslot is bound to a
// live guest_memfd (§4, §6.2) and whether KVM has a stage-2 mapping for it (shared table or the
// backend's private root, §7, §10). Vm records the faults, the attribute changes and the
// invalidations into it (vm.cpp). Two variants, because a zap's attribute filter means something
// only where private mappings live in a separate root (§5 "attr_filter"): kvm.gfn for backends with
// one stage-2 table (default, sw_protected: a zap removes both sides), kvm.gfn-private-root for
// backends with a private root (tdx: the filter spares the other side).
#pragma once

#include <cstdint>

#include "hw/base/state_machine.h"

namespace cvmsim::kvm {

sm::Machine& gfn_machine(bool private_root);

// State index: bit 2 PRIVATE, bit 1 GMEM (bound), bit 0 MAPPED.
inline constexpr uint8_t kGfnPrivate = 4, kGfnBound = 2, kGfnMapped = 1;

// Operation and outcome indices of gfn_machine().
enum class GfnOp : uint8_t {
  kSetAttrPrivate,
  kSetAttrShared,
  kFaultPrivate,
  kFaultShared,
  kGmemInvalidate,
  kMmuNotifierZap,
  kMemslotDelete,
};
enum class GfnOutcome : uint8_t { kOk, kRetry, kMemoryFaultExit, kEmulate, kNoop };

}  // namespace cvmsim::kvm
