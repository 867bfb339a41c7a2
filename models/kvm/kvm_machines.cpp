#include "models/kvm/kvm_machines.h"

#include <memory>
#include <string>
#include <vector>

namespace cvmsim::kvm {

namespace {

using V = std::vector<std::string_view>;

std::unique_ptr<sm::Machine> make(bool pr) {
  // State names by index (bit 2 PRIVATE, bit 1 GMEM, bit 0 MAPPED).
  std::vector<std::string> states;
  for (unsigned i = 0; i < 8; ++i) {
    std::string n = (i & kGfnPrivate) ? "PRIVATE" : "SHARED";
    if (i & kGfnBound) n += "+GMEM";
    if (i & kGfnMapped) n += "+MAPPED";
    states.push_back(n);
  }
  const char* S5 = "kvm-guest-memfd.md §5";
  const char* S5z = "kvm-guest-memfd.md §5 (zap with the attribute filter)";
  const char* S6 =
      "kvm-guest-memfd.md §6.1 (PUNCH_HOLE: unmap with KVM_FILTER_PRIVATE, or SHARED if "
      "INIT_SHARED)";
  const char* S62 =
      "kvm-guest-memfd.md §6.2 (release: slots die, then the file's SPTEs are zapped)";
  const char* S7 = "kvm-guest-memfd.md §7";
  const char* S7x =
      "kvm-guest-memfd.md §7, §8 (memory-fault exit: mismatch, no guest_memfd, gmem error)";
  const char* S4 = "kvm-guest-memfd.md §4 (memslot DELETE zaps the slot and unbinds it)";
  const char* N = "kvm-guest-memfd.md §5 notifier (MMU notifier invalidation zaps shared mappings)";
  // Where one table holds both sides (no private root) the filter has no effect: a zap for one
  // side removes the other side's mapping as well.
  auto sp = [&](const char* keep, const char* zapped) { return pr ? keep : zapped; };
  const V all{"*"};
  const V shared{"SHARED", "SHARED+MAPPED", "SHARED+GMEM", "SHARED+GMEM+MAPPED"};
  const V priv{"PRIVATE", "PRIVATE+MAPPED", "PRIVATE+GMEM", "PRIVATE+GMEM+MAPPED"};
  return std::unique_ptr<sm::Machine>(new sm::Machine(
      pr ? "kvm.gfn-private-root" : "kvm.gfn",
      pr ? "KVM's view of a GFN, private root (kvm-guest-memfd.md §5, §7, §10)"
         : "KVM's view of a GFN, one stage-2 table (kvm-guest-memfd.md §5, §7)",
      pr ? "tdx" : "default,sw_protected", states,
      std::vector<std::string>{"SET_ATTR_PRIVATE", "SET_ATTR_SHARED", "FAULT_PRIVATE",
                               "FAULT_SHARED", "GMEM_INVALIDATE", "MMU_NOTIFIER_ZAP",
                               "MEMSLOT_DELETE"},
      std::vector<std::string>{"OK", "RETRY", "MEMORY_FAULT_EXIT", "EMULATE", "NOOP"},
      {
          // KVM_SET_MEMORY_ATTRIBUTES (§5): the store zaps the other side's mappings.
          {{"SHARED"}, "SET_ATTR_PRIVATE", "OK", "PRIVATE", S5},
          {{"SHARED+MAPPED"}, "SET_ATTR_PRIVATE", "OK", "PRIVATE", S5z},
          {{"SHARED+GMEM"}, "SET_ATTR_PRIVATE", "OK", "PRIVATE+GMEM", S5},
          {{"SHARED+GMEM+MAPPED"}, "SET_ATTR_PRIVATE", "OK", "PRIVATE+GMEM", S5z},
          {{"PRIVATE", "PRIVATE+GMEM"}, "SET_ATTR_PRIVATE", "OK", "=", S5},
          {{"PRIVATE+MAPPED"}, "SET_ATTR_PRIVATE", "OK", sp("PRIVATE+MAPPED", "PRIVATE"), S5z},
          {{"PRIVATE+GMEM+MAPPED"},
           "SET_ATTR_PRIVATE",
           "OK",
           sp("PRIVATE+GMEM+MAPPED", "PRIVATE+GMEM"),
           S5z},
          {{"PRIVATE"}, "SET_ATTR_SHARED", "OK", "SHARED", S5},
          {{"PRIVATE+MAPPED"}, "SET_ATTR_SHARED", "OK", "SHARED", S5z},
          {{"PRIVATE+GMEM"}, "SET_ATTR_SHARED", "OK", "SHARED+GMEM", S5},
          {{"PRIVATE+GMEM+MAPPED"}, "SET_ATTR_SHARED", "OK", "SHARED+GMEM", S5z},
          {{"SHARED", "SHARED+GMEM"}, "SET_ATTR_SHARED", "OK", "=", S5},
          {{"SHARED+MAPPED"}, "SET_ATTR_SHARED", "OK", sp("SHARED+MAPPED", "SHARED"), S5z},
          {{"SHARED+GMEM+MAPPED"},
           "SET_ATTR_SHARED",
           "OK",
           sp("SHARED+GMEM+MAPPED", "SHARED+GMEM"),
           S5z},
          {all, "SET_ATTR_PRIVATE", "NOOP", "=",
           "kvm-guest-memfd.md §5 (nothing changes: no invalidation)"},
          {all, "SET_ATTR_SHARED", "NOOP", "=",
           "kvm-guest-memfd.md §5 (nothing changes: no invalidation)"},
          // Private faults (§7): through guest_memfd only.
          {{"PRIVATE+GMEM"}, "FAULT_PRIVATE", "OK", "PRIVATE+GMEM+MAPPED", S7},
          {{"PRIVATE+GMEM+MAPPED"},
           "FAULT_PRIVATE",
           "OK",
           "=",
           "kvm-guest-memfd.md §7 (already mapped: spurious fault)"},
          {{"PRIVATE+GMEM", "PRIVATE+GMEM+MAPPED"},
           "FAULT_PRIVATE",
           "RETRY",
           "=",
           "kvm-guest-memfd.md §7 steps 5, 7 (invalidation in progress / stale mmu_seq)"},
          {{"SHARED", "SHARED+MAPPED", "SHARED+GMEM", "SHARED+GMEM+MAPPED", "PRIVATE",
            "PRIVATE+MAPPED", "PRIVATE+GMEM"},
           "FAULT_PRIVATE",
           "MEMORY_FAULT_EXIT",
           "=",
           S7x},
          // Shared faults (§7): through userspace_addr (or guest_memfd for a gmem-only slot).
          {{"SHARED"}, "FAULT_SHARED", "OK", "SHARED+MAPPED", S7},
          {{"SHARED+GMEM"}, "FAULT_SHARED", "OK", "SHARED+GMEM+MAPPED", S7},
          {{"SHARED+MAPPED", "SHARED+GMEM+MAPPED"},
           "FAULT_SHARED",
           "OK",
           "=",
           "kvm-guest-memfd.md §7 (already mapped: spurious fault)"},
          {shared, "FAULT_SHARED", "RETRY", "=", "kvm-guest-memfd.md §7 steps 5, 7"},
          {{"SHARED", "SHARED+MAPPED"},
           "FAULT_SHARED",
           "EMULATE",
           "=",
           "kvm-guest-memfd.md §4, §7 step 3 (no memslot, or a write to a READONLY slot: emulated "
           "MMIO)"},
          {{"SHARED", "SHARED+GMEM"},
           "FAULT_SHARED",
           "MEMORY_FAULT_EXIT",
           "=",
           "kvm-guest-memfd.md §7 step 6 (no host mapping / guest_memfd error)"},
          {priv, "FAULT_SHARED", "MEMORY_FAULT_EXIT", "=", S7x},
          // guest_memfd invalidation (§6.1): PUNCH_HOLE, truncation, memory failure.
          {{"PRIVATE+GMEM+MAPPED"}, "GMEM_INVALIDATE", "OK", "PRIVATE+GMEM", S6},
          {{"SHARED+GMEM+MAPPED"},
           "GMEM_INVALIDATE",
           "OK",
           sp("SHARED+GMEM+MAPPED", "SHARED+GMEM"),
           S6},
          {{"SHARED+GMEM", "PRIVATE+GMEM"}, "GMEM_INVALIDATE", "OK", "=", S6},
          // The file's release (§6.2): its slots die (no longer bound) first, then every SPTE of
          // the file is zapped with the inode's filter.
          {{"SHARED", "PRIVATE"}, "GMEM_INVALIDATE", "OK", "=", S62},
          {{"PRIVATE+MAPPED"}, "GMEM_INVALIDATE", "OK", "PRIVATE", S62},
          {{"SHARED+MAPPED"}, "GMEM_INVALIDATE", "OK", sp("SHARED+MAPPED", "SHARED"), S62},
          // MMU notifier (munmap, MADV_DONTNEED of the VMM's shared memory).
          {{"SHARED+MAPPED"}, "MMU_NOTIFIER_ZAP", "OK", "SHARED", N},
          {{"SHARED+GMEM+MAPPED"}, "MMU_NOTIFIER_ZAP", "OK", "SHARED+GMEM", N},
          {{"SHARED", "SHARED+GMEM", "PRIVATE", "PRIVATE+GMEM"}, "MMU_NOTIFIER_ZAP", "OK", "=", N},
          {{"PRIVATE+MAPPED"}, "MMU_NOTIFIER_ZAP", "OK", sp("PRIVATE+MAPPED", "PRIVATE"), N},
          {{"PRIVATE+GMEM+MAPPED"},
           "MMU_NOTIFIER_ZAP",
           "OK",
           sp("PRIVATE+GMEM+MAPPED", "PRIVATE+GMEM"),
           N},
          // Memslot deletion: unmapped and unbound; the attribute stays (§5: attributes are per
          // VM).
          {shared, "MEMSLOT_DELETE", "OK", "SHARED", S4},
          {priv, "MEMSLOT_DELETE", "OK", "PRIVATE", S4},
      }));
}

}  // namespace

sm::Machine& gfn_machine(bool private_root) {
  static const std::unique_ptr<sm::Machine> one = make(false);
  static const std::unique_ptr<sm::Machine> root = make(true);
  return private_root ? *root : *one;
}

}  // namespace cvmsim::kvm
