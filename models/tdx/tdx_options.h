// The TDX backend's scenario options (docs/scenario-format.md): the platform section
// platform.tdx and each TD's vms[].tdx, declared once here with visit() (hw/base/schema.h) and
// registered with the backend (models/tdx/tdx_register.cpp), so that sim/ reads, validates,
// writes and lists them without knowing them.
#pragma once

#include <cstdint>
#include <vector>

#include "hw/base/pattern.h"
#include "hw/base/schema.h"
#include "models/guest/tdx_guest_kernel.h"
#include "models/tdx/tdx_costs.h"

namespace cvmsim::tdx {

using config::array_field;
using config::bool_field;
using config::enum_field;
using config::EnumName;
using config::object_field;
using config::uint_field;

inline constexpr uint64_t kOptKiB = 1ull << 10;

inline constexpr EnumName<PatternKind> kImagePatternNames[] = {
    {PatternKind::kValue, "value"}, {PatternKind::kSeeded, "seeded"}, {PatternKind::kZero, "zero"}};

// platform.tdx.hkid_reuse (kvm_tdx.h HkidReuse; docs/tdx-model.md "HKID reuse").
inline constexpr EnumName<HkidReuse> kHkidReuseNames[] = {
    {HkidReuse::kFlush, "flush"}, {HkidReuse::kUnsafeNoFlush, "unsafe_no_flush"}};

struct TdxPlatformOptions {
  HkidReuse hkid_reuse = HkidReuse::kFlush;
  TdxCosts costs;
  template <class V>
  void visit(V& v) {
    v(enum_field("hkid_reuse", hkid_reuse, kHkidReuseNames,
                 "how a TD's HKID goes back to the allocator at teardown: flush (mainline: "
                 "VP.FLUSH, VPFLUSHDONE, TDH.PHYMEM.CACHE.WB on every package, KEY.FREEID, then "
                 "reuse) or unsafe_no_flush (UNSAFE: KVM skips CACHE.WB on a module with a "
                 "modelled FREEID erratum, so the next TD gets the HKID while lines tagged with it "
                 "are still cached; ISO-8 and T6 catch it)"));
    v(object_field("costs", costs, "cost of the TDX module's work (docs/costs.md, TDX module)"));
  }
};

// One piece of a TD's initial image (KVM_TDX_INIT_MEM_REGION before KVM_TDX_FINALIZE_VM).
struct InitialImageConfig {
  uint64_t gpa = 0;
  uint64_t size = 4 * kOptKiB;
  PatternKind pattern = PatternKind::kSeeded;
  uint64_t value = 1;
  bool measure = true;
  template <class V>
  void visit(V& v) {
    v(uint_field(
          "gpa", gpa,
          "first guest physical address (private, without the SHARED bit) the piece is added at")
          .bytes()
          .aligned(4 * kOptKiB));
    v(uint_field("size", size, "bytes added: every 4 KiB page gets TDH.MEM.PAGE.ADD")
          .bytes()
          .min(4 * kOptKiB)
          .aligned(4 * kOptKiB));
    v(enum_field("pattern", pattern, kImagePatternNames,
                 "contents of the VMM's source buffer, keyed by guest physical address as guest "
                 "loads check them"));
    v(uint_field("value", value, "pattern parameter (see docs/scenario-format.md, patterns)"));
    v(bool_field("measure", measure,
                 "also extend the MRTD with the contents (TDH.MR.EXTEND x16 per page, "
                 "KVM_TDX_MEASURE_MEMORY_REGION); PAGE.ADD extends it with the GPA either way"));
  }
};

// A TD's bounce buffer (swiotlb): shared memory guest I/O copies into.
struct BounceBufferConfig {
  uint64_t gpa = 0;
  uint64_t size = 0;
  template <class V>
  void visit(V& v) {
    v(uint_field("gpa", gpa,
                 "first guest physical address (without the SHARED bit); must lie in a shared "
                 "(private: false) memory region of the VM")
          .bytes()
          .aligned(4 * kOptKiB));
    v(uint_field("size", size, "bytes; 0: no bounce buffer").bytes().aligned(4 * kOptKiB));
  }
};

inline constexpr EnumName<guest::AcceptPolicy> kAcceptPolicyNames[] = {
    {guest::AcceptPolicy::kBoot, "boot"}, {guest::AcceptPolicy::kLazy, "lazy"}};

struct TdxVmOptions {
  std::vector<InitialImageConfig> initial_image;
  guest::AcceptPolicy accept = guest::AcceptPolicy::kBoot;
  bool sept_ve_disable = true;
  bool huge_private = false;
  uint64_t accept_interrupt_cycles = 0;
  BounceBufferConfig bounce_buffer;
  template <class V>
  void visit(V& v) {
    v(array_field(
        "initial_image", initial_image,
        "pages the VMM adds before the TD is finalized (PAGE.ADD: MAPPED, no ACCEPT needed); each "
        "piece lies in a private region of the VM; pieces must not overlap"));
    v(enum_field("accept", accept, kAcceptPolicyNames,
                 "the guest kernel's acceptance of private memory: boot (TDG.MEM.PAGE.ACCEPT of "
                 "every private region before the workload, 2 MiB where aligned, 4 KiB after "
                 "PAGE_SIZE_MISMATCH) or lazy (accept a page when its first access gets a #VE; "
                 "needs sept_ve_disable false). Conversions to private accept at once either way"));
    v(bool_field("sept_ve_disable", sept_ve_disable,
                 "TD ATTRIBUTES.SEPT_VE_DISABLE (bit 28; Linux guests require it): a guest access "
                 "to a PENDING page is then a TD exit, which KVM treats as fatal (the vCPU stops), "
                 "instead of a #VE to the guest"));
    v(bool_field(
        "huge_private", huge_private,
        "map private memory with 2 MiB S-EPT leaves (SEPT.ADD to level 2, PAGE.AUG 2M) where "
        "guest_memfd hands out a 2 MiB folio (platform.kvm.gmem_huge_folios) and the attributes "
        "allow; KVM's TDX huge-page support is not in mainline (false: 4 KiB)"));
    v(uint_field("accept_interrupt_cycles", accept_interrupt_cycles,
                 "an interrupt becomes pending for the guest every this many cycles of its "
                 "TDG.MEM.PAGE.ACCEPT work (0: never); a 2 MiB ACCEPT with one pending zeroes one "
                 "4 KiB chunk, saves its ACCEPT_COUNTER and returns interrupted, and the guest "
                 "re-issues it (platform.tdx.accept_interrupts counts them)")
          .unit("cycles"));
    v(object_field("bounce_buffer", bounce_buffer,
                   "a shared area guest I/O copies private data into (step guest_io): a deliberate "
                   "share the leak checker does not report"));
  }
};

}  // namespace cvmsim::tdx
