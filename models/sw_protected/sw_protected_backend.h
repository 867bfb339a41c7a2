// KVM_X86_SW_PROTECTED_VM (kvm-guest-memfd.md §10): private memory from guest_memfd, shared
// memory from the memslot's userspace backing, and no hardware protection at all. A fault is
// private iff the gfn's attribute is PRIVATE (§7), so a mismatch exit can only come from a race.
// There is no prepare or invalidate hook, and the private frame is mapped in the one stage-2
// table like any other: nothing but KVM's own bookkeeping keeps the host from reading it, which
// is what this VM type exists to show.
#pragma once

#include <memory>

#include "models/kvm/backend.h"

namespace cvmsim::kvm {

std::unique_ptr<KvmBackend> make_sw_protected_backend();

}  // namespace cvmsim::kvm
