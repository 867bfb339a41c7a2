// The userspace VMM model (models/vmm) over the KVM facade: setup of a VM with private memory
// (kvm-guest-memfd.md §4), implicit conversion on KVM_EXIT_MEMORY_FAULT (§8), explicit conversion
// through KVM_HC_MAP_GPA_RANGE (§11) and the conversion policy knobs. Every test runs against both
// attribute stores.
#include <catch2/catch.hpp>

#include "models/vmm/vmm.h"

#include "kvm_test_util.h"

using namespace cvmsim;
using namespace cvmsim::kvmtest;
using cvmsim::vmm::RamRegion;
using cvmsim::vmm::Vmm;
using cvmsim::vmm::VmmConfig;

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t ENC = KVM_MAP_GPA_RANGE_ENCRYPTED;
constexpr uint64_t DEC = KVM_MAP_GPA_RANGE_DECRYPTED;

RamRegion ram(uint64_t gpa, uint64_t size, bool gmem, bool priv) {
  RamRegion r;
  r.gpa = Gpa(gpa);
  r.size = size;
  r.guest_memfd = gmem;
  r.initially_private = priv;
  return r;
}

// Region 0: [0, 1 MiB) shared-capable with a guest_memfd, initially shared.
// Region 1: [1 MiB, 2 MiB) with a guest_memfd, initially private.
VmmConfig two_regions(uint32_t type) {
  VmmConfig c;
  c.vm_name = "guest";
  c.vm_type = type;
  c.vcpus = 1;
  c.principal = vm_principal(0);
  c.asid = 1;
  c.ram = {ram(0, kMiB, true, false), ram(kMiB, kMiB, true, true)};
  return c;
}

struct VmmFx {
  KvmFixture fx;
  std::unique_ptr<Vmm> vmm;
  explicit VmmFx(bool register_test = false) : fx(any_store()) {
    if (register_test) fx.register_test_backend();
  }
  Vmm& make(const VmmConfig& c) {
    vmm = std::make_unique<Vmm>(fx.kvm, fx.mem, fx.frames, c);
    REQUIRE(vmm->setup() == "");
    return *vmm;
  }
  Vm& vm() { return vmm->vm(); }
  bool is_private(uint64_t gpa) { return vm().mem_is_private(gpa_to_gfn(Gpa(gpa))); }
  ExitAction exit(const VmExit& e) { return vmm->vcpu(0).handle_exit(0, e); }
  const GmemFolio* folio(unsigned region, uint64_t pgoff) {
    auto f = fx.kvm.gmem_of(vmm->process(), vmm->gmem_fd(region));
    REQUIRE(f != nullptr);
    return f->inode().folio(GmemPgoff(pgoff));
  }
  // Touches the shared backing of gpa (the VMM writes there), so that it is resident.
  void touch_shared(uint64_t gpa) {
    REQUIRE(vmm->mm().write(vmm->hva_of(Gpa(gpa)), std::vector<uint8_t>(8, 0x5a)).ok());
  }
  ~VmmFx() { vmm.reset(); }  // the VMM process goes before the Kvm it uses
};

// kvm_run as KVM fills it for a fault outcome (§8), for driving Vmm::on_exit directly.
kvm_run memory_fault_run(const FaultOutcome& o) {
  kvm_run run;
  run.exit_reason = KVM_EXIT_MEMORY_FAULT;
  run.memory_fault.flags = o.mf_flags;
  run.memory_fault.gpa = o.mf_gpa;
  run.memory_fault.size = o.mf_size;
  return run;
}

}  // namespace

TEST_CASE("VMM setup over sw_protected: guest_memfd slots, private region, EXIT_HYPERCALL enabled",
          "[kvm][vmm]") {
  VmmFx t;
  Vmm& v = t.make(two_regions(kSwProt));
  Vm& vm = t.vm();
  CHECK(vm.type() == kSwProt);
  CHECK(vm.attributes().kind() == t.fx.kind);
  CHECK(vm.exit_hypercall_mask == (uint64_t{1} << KVM_HC_MAP_GPA_RANGE));
  CHECK(vm.memslots().size() == 2);
  for (uint16_t id : {0, 1}) {
    const Memslot* s = vm.memslots().find_id(id);
    REQUIRE(s != nullptr);
    CHECK(s->flags == KVM_MEM_GUEST_MEMFD);
    CHECK(s->gmem.file == t.fx.kvm.gmem_of(v.process(), v.gmem_fd(id)).get());
    CHECK(s->userspace_addr == v.hva_of(Gpa(id * kMiB)));
  }
  CHECK_FALSE(t.is_private(0));
  CHECK_FALSE(t.is_private(kMiB - kPage));
  CHECK(t.is_private(kMiB));
  CHECK(t.is_private(2 * kMiB - kPage));
  CHECK(v.num_vcpus() == 1);
  CHECK(&vm.mm() == &v.mm());  // the VM belongs to the VMM's process, not the fixture's
}

TEST_CASE("VMM setup over a default VM: no private memory, EXIT_HYPERCALL left off", "[kvm][vmm]") {
  VmmFx t;
  VmmConfig c = two_regions(kDefault);
  c.ram[1].initially_private = false;
  t.make(c);
  CHECK(t.vm().exit_hypercall_mask == 0);
  CHECK(t.vm().memslots().size() == 2);
  // Asking for private memory on a default VM fails at KVM_SET_MEMORY_ATTRIBUTES (EINVAL).
  Vmm bad(t.fx.kvm, t.fx.mem, t.fx.frames, two_regions(kDefault));
  const std::string e = bad.setup();
  CHECK(e.find("KVM_SET_MEMORY_ATTRIBUTES") != std::string::npos);
  CHECK(e.find("EINVAL") != std::string::npos);
}

TEST_CASE("VMM implicit conversion to private: attributes flip, the shared page is discarded",
          "[kvm][vmm]") {
  VmmFx t;
  Vmm& v = t.make(two_regions(kSwProt));
  t.touch_shared(0x3000);
  PageFault f;
  f.gfn = gpa_to_gfn(Gpa(0x3000));
  REQUIRE(t.vm().page_fault(f).kind == FaultOutcome::kFixed);
  const uint64_t resident = v.mm().resident_bytes();
  // A private access to the shared gfn (a racing conversion on sw_protected): the mismatch exit.
  f.is_private = true;
  const FaultOutcome o = t.vm().page_fault(f);
  REQUIRE(o.kind == FaultOutcome::kMemoryFaultExit);
  kvm_run run = memory_fault_run(o);
  std::string why;
  CHECK(v.on_exit(v.vcpu(0), static_cast<int>(Errno::kEFAULT), run, why));
  CHECK(why.empty());
  CHECK(t.is_private(0x3000));
  CHECK_FALSE(t.is_private(0x4000));
  CHECK(v.mm().resident_bytes() == resident - kPage);
  CHECK_FALSE(v.mm().lookup(v.hva_of(Gpa(0x3000))).has_value());
  CHECK_FALSE(KvmFixture::mapped(t.vm(), 0x3000));
  // The re-run fault now maps the guest_memfd page.
  REQUIRE(t.vm().page_fault(f).kind == FaultOutcome::kFixed);
  CHECK(KvmFixture::mapped_pfn(t.vm(), 0x3000) == t.folio(0, 3)->pfn);
}

TEST_CASE("VMM conversion discards the other side unless the backend converts in place",
          "[kvm][vmm]") {
  // kvm-guest-memfd.md §12.1: in-place conversion keeps one frame (and its contents) for both
  // sides, so there is no opposite backing to punch or drop.
  for (const auto contents : {ConversionContents::kLost, ConversionContents::kKept}) {
    VmmFx t(true);
    t.fx.knobs.contents = contents;
    Vmm& v = t.make(two_regions(kTestVmType));
    t.touch_shared(0x3000);
    const uint64_t resident = v.mm().resident_bytes();
    REQUIRE(v.convert(Gpa(0x3000), kPage, true) == 0);
    CHECK(t.is_private(0x3000));
    const bool kept = contents == ConversionContents::kKept;
    CHECK(v.mm().resident_bytes() == (kept ? resident : resident - kPage));
    CHECK(v.mm().lookup(v.hva_of(Gpa(0x3000))).has_value() == kept);
  }
}

TEST_CASE("VMM implicit conversion end to end through KVM_RUN exits (shared-bit backend)",
          "[kvm][vmm]") {
  VmmFx t(true);
  Vmm& v = t.make(two_regions(kTestVmType));
  // A private access (shared bit clear) to shared gfn 0x5000: exit, convert, retry, map.
  ExitAction a = t.exit(stage2_exit(0x5000, true));
  CHECK(a.kind == ExitAction::kRetry);
  CHECK(t.is_private(0x5000));
  a = t.exit(stage2_exit(0x5000, true));
  CHECK(a.kind == ExitAction::kRetry);
  CHECK(KvmFixture::mapped_pfn(t.vm(), 0x5000) == t.folio(0, 5)->pfn);
  // A shared access to private gfn 1 MiB + 0x2000 (fault the private page in first): the
  // conversion to shared punches the guest_memfd page.
  REQUIRE(t.exit(stage2_exit(kMiB + 0x2000)).kind == ExitAction::kRetry);
  REQUIRE(t.folio(1, 2) != nullptr);
  a = t.exit(stage2_exit(kSharedBit | (kMiB + 0x2000)));
  CHECK(a.kind == ExitAction::kRetry);
  CHECK_FALSE(t.is_private(kMiB + 0x2000));
  CHECK(t.folio(1, 2) == nullptr);
  CHECK_FALSE(KvmFixture::mapped(t.vm(), kMiB + 0x2000));
  REQUIRE(t.exit(stage2_exit(kSharedBit | (kMiB + 0x2000))).kind == ExitAction::kRetry);
  CHECK(KvmFixture::mapped_pfn(t.vm(), kMiB + 0x2000) ==
        v.mm().lookup(v.hva_of(Gpa(kMiB + 0x2000)))->pfn);
  CHECK(v.vcpu(0).stats().memory_fault_exits == 2);
}

TEST_CASE("VMM explicit conversion via KVM_HC_MAP_GPA_RANGE", "[kvm][vmm][hypercall]") {
  VmmFx t;
  Vmm& v = t.make(two_regions(kSwProt));
  t.touch_shared(0x10000);
  t.touch_shared(0x11000);
  const uint64_t resident = v.mm().resident_bytes();
  // To private: gpa, npages, attrs = ENCRYPTED | 4K.
  ExitAction a =
      t.exit(hypercall_exit(KVM_HC_MAP_GPA_RANGE, 0x10000, 4, ENC | KVM_MAP_GPA_RANGE_PAGE_SZ_4K));
  CHECK(a.kind == ExitAction::kResume);
  CHECK(a.ret == 0);
  for (uint64_t p = 0; p < 4; ++p) CHECK(t.is_private(0x10000 + p * kPage));
  CHECK_FALSE(t.is_private(0x14000));
  CHECK(v.mm().resident_bytes() == resident - 2 * kPage);
  // What KVM put in kvm_run for the VMM.
  const kvm_run& run = v.vcpu(0).run();
  CHECK(run.exit_reason == KVM_EXIT_HYPERCALL);
  CHECK(run.hypercall.nr == KVM_HC_MAP_GPA_RANGE);
  CHECK(run.hypercall.args[0] == 0x10000);
  CHECK(run.hypercall.args[1] == 4);
  CHECK(run.hypercall.args[2] == ENC);
  CHECK((run.hypercall.flags & KVM_EXIT_HYPERCALL_LONG_MODE) != 0);
  // Back to shared, after the guest used one page privately: the guest_memfd page is punched.
  PageFault f;
  f.gfn = gpa_to_gfn(Gpa(0x11000));
  f.is_private = true;
  REQUIRE(t.vm().page_fault(f).kind == FaultOutcome::kFixed);
  REQUIRE(t.folio(0, 0x11) != nullptr);
  a = t.exit(hypercall_exit(KVM_HC_MAP_GPA_RANGE, 0x10000, 4, DEC));
  CHECK(a.kind == ExitAction::kResume);
  CHECK(a.ret == 0);
  CHECK_FALSE(t.is_private(0x11000));
  CHECK(t.folio(0, 0x11) == nullptr);
  CHECK_FALSE(KvmFixture::mapped(t.vm(), 0x11000));
}

TEST_CASE("VMM explicit conversion: -KVM_ENOSYS unless EXIT_HYPERCALL is enabled for it",
          "[kvm][vmm][hypercall]") {
  VmmFx t;
  Vmm& v = t.make(two_regions(kSwProt));
  const uint64_t enosys = static_cast<uint64_t>(-static_cast<int64_t>(KVM_ENOSYS));
  // Another hypercall number never exits.
  ExitAction a = t.exit(hypercall_exit(5, 0x10000, 1, ENC));
  CHECK(a.kind == ExitAction::kResume);
  CHECK(a.ret == enosys);
  // Disabled by the VMM.
  kvm_enable_cap c;
  c.cap = KVM_CAP_EXIT_HYPERCALL;
  REQUIRE(t.fx.kvm.enable_cap(v.process(), v.vm_fd(), &c).ok());
  a = t.exit(hypercall_exit(KVM_HC_MAP_GPA_RANGE, 0x10000, 1, ENC));
  CHECK(a.kind == ExitAction::kResume);
  CHECK(a.ret == enosys);
  CHECK_FALSE(t.is_private(0x10000));
  CHECK(v.vcpu(0).stats().exits_userspace == 0);
  CHECK(v.vcpu(0).stats().hypercalls_enosys == 2);
}

TEST_CASE("VMM explicit conversion: malformed ranges -> -KVM_EINVAL without exiting",
          "[kvm][vmm][hypercall]") {
  VmmFx t;
  Vmm& v = t.make(two_regions(kSwProt));
  const uint64_t einval = static_cast<uint64_t>(-static_cast<int64_t>(KVM_EINVAL));
  for (auto [gpa, npages] :
       {std::pair<uint64_t, uint64_t>{0x10010, 1},          // gpa unaligned
        {0x10000, 0},                                       // npages 0
        {~uint64_t{0} & ~(kPage - 1), 0xfff0000000000001},  // gfn + npages wraps
        {0x10000, ~uint64_t{0}}}) {                         // gfn + npages wraps
    CAPTURE(gpa, npages);
    const ExitAction a = t.exit(hypercall_exit(KVM_HC_MAP_GPA_RANGE, gpa, npages, ENC));
    CHECK(a.kind == ExitAction::kResume);
    CHECK(a.ret == einval);
  }
  CHECK_FALSE(t.is_private(0x10000));
  CHECK(v.vcpu(0).stats().exits_userspace == 0);
  CHECK(v.vcpu(0).stats().hypercalls_einval == 4);
}

TEST_CASE("VMM policy discard_on_convert=false keeps both backings", "[kvm][vmm][policy]") {
  VmmFx t;
  VmmConfig c = two_regions(kSwProt);
  c.policy.discard_on_convert = false;
  Vmm& v = t.make(c);
  t.touch_shared(0x20000);
  const uint64_t resident = v.mm().resident_bytes();
  REQUIRE(v.convert(Gpa(0x20000), kPage, true) == 0);
  CHECK(t.is_private(0x20000));
  CHECK(v.mm().resident_bytes() == resident);
  CHECK(v.mm().lookup(v.hva_of(Gpa(0x20000))).has_value());
  PageFault f;
  f.gfn = gpa_to_gfn(Gpa(0x20000));
  f.is_private = true;
  REQUIRE(t.vm().page_fault(f).kind == FaultOutcome::kFixed);
  REQUIRE(v.convert(Gpa(0x20000), kPage, false) == 0);
  CHECK_FALSE(t.is_private(0x20000));
  CHECK(t.folio(0, 0x20) != nullptr);  // not punched
  CHECK(v.mm().resident_bytes() == resident);
}

TEST_CASE("VMM policy allocate_on_private fallocates the guest_memfd range first",
          "[kvm][vmm][policy]") {
  VmmFx t;
  VmmConfig c = two_regions(kSwProt);
  c.policy.allocate_on_private = true;
  Vmm& v = t.make(c);
  CHECK(t.folio(0, 0x30) == nullptr);
  REQUIRE(v.convert(Gpa(0x30000), 2 * kPage, true) == 0);
  CHECK(t.folio(0, 0x30) != nullptr);
  CHECK(t.folio(0, 0x31) != nullptr);
  CHECK(t.folio(0, 0x32) == nullptr);
}

TEST_CASE("VMM stops the vCPU when no conversion can resolve a memory fault", "[kvm][vmm]") {
  VmmFx t;
  Vmm& v = t.make(two_regions(kSwProt));
  // The private region's guest_memfd is closed: a private fault there fails although the access
  // already matches the attribute.
  REQUIRE(v.process().close(v.gmem_fd(1)).ok());
  const ExitAction a = t.exit(stage2_exit(kMiB));
  CHECK(a.kind == ExitAction::kStop);
  CHECK(a.reason.find("KVM_EXIT_MEMORY_FAULT") != std::string::npos);
  CHECK(a.reason.find("no conversion can resolve it") != std::string::npos);
  CHECK(t.is_private(kMiB));
}

TEST_CASE("VMM policy implicit_conversion=false stops on a mismatch", "[kvm][vmm][policy]") {
  VmmFx t(true);
  VmmConfig c = two_regions(kTestVmType);
  c.policy.implicit_conversion = false;
  t.make(c);
  const ExitAction a = t.exit(stage2_exit(0x7000));  // private access, shared gfn
  CHECK(a.kind == ExitAction::kStop);
  CHECK(a.reason.find("implicit conversion disabled") != std::string::npos);
  CHECK_FALSE(t.is_private(0x7000));
}

TEST_CASE("VMM stops on KVM_EXIT_MMIO (no device model)", "[kvm][vmm]") {
  VmmFx t;
  t.make(two_regions(kSwProt));
  const ExitAction a = t.exit(stage2_exit(0xfee00000, true));
  CHECK(a.kind == ExitAction::kStop);
  CHECK(a.reason.find("KVM_EXIT_MMIO") != std::string::npos);
}

TEST_CASE("VMM conversion spanning two regions converts and discards in both",
          "[kvm][vmm][hypercall]") {
  VmmFx t;
  Vmm& v = t.make(two_regions(kSwProt));
  t.touch_shared(kMiB - kPage);
  // The private region's first page back to shared first, with its guest_memfd page in use.
  PageFault f;
  f.gfn = gpa_to_gfn(Gpa(kMiB));
  f.is_private = true;
  REQUIRE(t.vm().page_fault(f).kind == FaultOutcome::kFixed);
  REQUIRE(t.folio(1, 0) != nullptr);
  ExitAction a = t.exit(hypercall_exit(KVM_HC_MAP_GPA_RANGE, kMiB - kPage, 2, DEC));
  CHECK(a.ret == 0);
  CHECK_FALSE(t.is_private(kMiB));
  CHECK(t.folio(1, 0) == nullptr);
  const uint64_t resident = v.mm().resident_bytes();
  a = t.exit(hypercall_exit(KVM_HC_MAP_GPA_RANGE, kMiB - kPage, 2, ENC));
  CHECK(a.ret == 0);
  CHECK(t.is_private(kMiB - kPage));
  CHECK(t.is_private(kMiB));
  CHECK(v.mm().resident_bytes() == resident - kPage);  // only the page that was resident
}

TEST_CASE("VMM conversion to private discards hugetlb backing only in whole huge pages",
          "[kvm][vmm][policy][huge]") {
  VmmFx t;
  VmmConfig c = two_regions(kSwProt);
  c.ram = {ram(0, 2 * k2M, true, false)};
  c.ram[0].page_size = PageSize::k2M;
  Vmm& v = t.make(c);
  t.touch_shared(0x1000);
  t.touch_shared(k2M);
  REQUIRE(v.mm().resident_bytes() == 2 * k2M);
  REQUIRE(v.convert(Gpa(0x1000), kPage, true) == 0);  // part of a huge page: kept
  CHECK(t.is_private(0x1000));
  CHECK(v.mm().resident_bytes() == 2 * k2M);
  REQUIRE(v.convert(Gpa(k2M), k2M, true) == 0);  // a whole huge page: dropped
  CHECK(v.mm().resident_bytes() == k2M);
}

TEST_CASE("VMM stops on a memory fault that is not EFAULT (EHWPOISON)", "[kvm][vmm]") {
  VmmFx t;
  Vmm& v = t.make(two_regions(kSwProt));
  REQUIRE(t.exit(stage2_exit(kMiB + 0x4000)).kind == ExitAction::kRetry);
  auto file = t.fx.kvm.gmem_of(v.process(), v.gmem_fd(1));
  REQUIRE(file->memory_failure(GmemPgoff(4)).ok());
  const ExitAction a = t.exit(stage2_exit(kMiB + 0x4000));
  CHECK(a.kind == ExitAction::kStop);
  CHECK(a.reason.find("EHWPOISON") != std::string::npos);
  CHECK(t.is_private(kMiB + 0x4000));  // no conversion was attempted
}

TEST_CASE("A bus-error exit stops the vCPU", "[kvm][vmm]") {
  VmmFx t;
  t.make(two_regions(kSwProt));
  VmExit e;
  e.reason = ExitReason::kBusError;
  e.gpa = Gpa(0x1000);
  const ExitAction a = t.exit(e);
  CHECK(a.kind == ExitAction::kStop);
  CHECK_FALSE(a.reason.empty());
}
