// The KVM MMU fault path (kvm-guest-memfd.md §7) and KVM_EXIT_MEMORY_FAULT (§8), driven by hw
// VmExit records through Vcpu::handle_exit (with a UserspaceExitHandler test double standing in
// for the VMM) or by Vm::page_fault. Checks what the stage-2 table maps (frame, size,
// permissions) and what kvm_run says. Every test runs against both attribute stores.
#include <catch2/catch.hpp>

#include "kvm_test_util.h"

using namespace cvmsim;
using namespace cvmsim::kvmtest;

namespace {

// A VM with one vCPU whose userspace is a RecordingUserspace.
struct FaultFx {
  KvmFixture fx;
  int vm_fd;
  int vcpu_fd;
  RecordingUserspace user;
  explicit FaultFx(uint32_t type = kSwProt, bool register_test = false) : fx(any_store()) {
    if (register_test) fx.register_test_backend();
    vm_fd = fx.new_vm(type);
    vcpu_fd = fx.new_vcpu(vm_fd);
    vcpu().set_userspace(&user);
  }
  Vm& vm() { return fx.vm(vm_fd); }
  Vcpu& vcpu() { return fx.vcpu(vcpu_fd); }
  ExitAction exit(const VmExit& e) { return vcpu().handle_exit(0, e); }
  // One stage-2 fault; REQUIREs that KVM handled it without going to userspace.
  void fault_ok(uint64_t gpa, bool write = false) {
    const size_t before = user.exits.size();
    const ExitAction a = exit(stage2_exit(gpa, write));
    REQUIRE(a.kind == ExitAction::kRetry);
    REQUIRE(user.exits.size() == before);
  }
  const RecordingUserspace::Exit& last() {
    REQUIRE_FALSE(user.exits.empty());
    return user.exits.back();
  }
};

void check_memory_fault(const RecordingUserspace::Exit& x, Errno e, bool private_access,
                        uint64_t gpa) {
  CHECK(x.err == static_cast<int>(e));
  CHECK(x.run.exit_reason == KVM_EXIT_MEMORY_FAULT);
  CHECK(x.run.memory_fault.flags == (private_access ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0));
  CHECK(x.run.memory_fault.gpa == gpa);
  CHECK(x.run.memory_fault.size == kPage);
}

}  // namespace

// ---- Shared and private faults
// ---------------------------------------------------------------------

TEST_CASE("Fault: a shared fault maps the VMM's page at the slot's userspace address",
          "[kvm][fault]") {
  for (uint32_t type : {kDefault, kSwProt}) {
    CAPTURE(type);
    FaultFx t(type);
    const Hva h = t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage);
    const uint64_t before = t.fx.mm.resident_bytes();
    t.fault_ok(0x105123, true);
    const Stage2Lookup l = KvmFixture::s2(t.vm(), 0x105000);
    REQUIRE(l.mapped());
    CHECK(l.size() == PageSize::k4K);
    CHECK(l.pte.pfn == t.fx.host_pfn(h + 0x5000));  // HostMm::lookup's frame
    CHECK(l.pte.perms == kPermsRWX);
    CHECK(t.fx.mm.resident_bytes() == before + kPage);  // faulted in (GUP) on demand
    CHECK(KvmFixture::leaf_count(t.vm()) == 1);
    // The VMM's write is what the guest's mapping sees.
    const uint8_t msg[4] = {1, 2, 3, 4};
    REQUIRE(t.fx.mm.write(h + 0x5010, msg).ok());
    uint8_t got[4] = {};
    t.fx.mem.read(pfn_to_hpa(l.pte.pfn) + 0x10, got);
    CHECK(std::equal(std::begin(msg), std::end(msg), std::begin(got)));
  }
}

TEST_CASE("Fault: a private fault on sw_protected maps the guest_memfd frame, not the shared one",
          "[kvm][fault]") {
  FaultFx t;
  const int g = t.fx.new_gmem(t.vm_fd, 16 * kPage);
  const Hva h = t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage, g);
  t.fault_ok(0x103000);
  const Pfn shared = KvmFixture::mapped_pfn(t.vm(), 0x103000);
  CHECK(shared == t.fx.host_pfn(h + 0x3000));
  REQUIRE(t.fx.set_attrs(t.vm_fd, 0x103000, kPage, kPriv).ok());
  CHECK_FALSE(KvmFixture::mapped(t.vm(), 0x103000));
  t.fault_ok(0x103000, true);
  const Pfn priv = KvmFixture::mapped_pfn(t.vm(), 0x103000);
  CHECK(priv == t.fx.gmem_pfn(g, 3));
  CHECK(priv != shared);
  CHECK(KvmFixture::s2(t.vm(), 0x103000).pte.perms == kPermsRWX);
  // KVM freed neither backing.
  CHECK(t.fx.host_pfn(h + 0x3000) == shared);
}

TEST_CASE("Fault: the guest_memfd index is gfn - base_gfn + pgoff", "[kvm][fault]") {
  FaultFx t;
  const int g = t.fx.new_gmem(t.vm_fd, 32 * kPage);
  t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage, g, 8 * kPage);
  REQUIRE(t.fx.set_attrs(t.vm_fd, 0x100000, 16 * kPage, kPriv).ok());
  t.fault_ok(0x103000);
  CHECK(KvmFixture::mapped_pfn(t.vm(), 0x103000) == t.fx.gmem_pfn(g, 11));
  CHECK(t.fx.gmem(g)->inode().folio(GmemPgoff(3)) == nullptr);
}

// ---- Exits (§7 steps 2, 3, 6; §8)
// -----------------------------------------------------------------

TEST_CASE("Fault: attribute mismatch -> KVM_EXIT_MEMORY_FAULT, EFAULT, PRIVATE flag = the access",
          "[kvm][fault][memory_fault]") {
  {  // through Vm::page_fault on sw_protected
    FaultFx t;
    const int g = t.fx.new_gmem(t.vm_fd, 16 * kPage);
    t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage, g);
    REQUIRE(t.fx.set_attrs(t.vm_fd, 0x104000, kPage, kPriv).ok());
    PageFault f;
    f.gfn = gpa_to_gfn(Gpa(0x103000));  // shared gfn, private access
    f.is_private = true;
    FaultOutcome o = t.vm().page_fault(f);
    CHECK(o.kind == FaultOutcome::kMemoryFaultExit);
    CHECK(o.err == Errno::kEFAULT);
    CHECK(o.mf_flags == KVM_MEMORY_EXIT_FLAG_PRIVATE);
    CHECK(o.mf_gpa == 0x103000);
    CHECK(o.mf_size == kPage);
    f.gfn = gpa_to_gfn(Gpa(0x104000));  // private gfn, shared access
    f.is_private = false;
    o = t.vm().page_fault(f);
    CHECK(o.kind == FaultOutcome::kMemoryFaultExit);
    CHECK(o.err == Errno::kEFAULT);
    CHECK(o.mf_flags == 0);
    CHECK(o.mf_gpa == 0x104000);
    CHECK(KvmFixture::leaf_count(t.vm()) == 0);  // never installs a mapping
    CHECK(t.fx.gmem(g)->inode().nr_folios() == 0);
  }
}

TEST_CASE("Fault: attribute mismatch through Vcpu::handle_exit sets kvm_run.memory_fault",
          "[kvm][fault][memory_fault]") {
  {  // private-ness from the access (shared-bit backend)
    FaultFx t(kTestVmType, true);
    const int g = t.fx.new_gmem(t.vm_fd, 16 * kPage);
    t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage, g);
    REQUIRE(t.fx.set_attrs(t.vm_fd, 0x104000, kPage, kPriv).ok());
    // Private access (shared bit clear) to a shared gfn, at an unaligned gpa.
    ExitAction a = t.exit(stage2_exit(0x103abc, true));
    CHECK(a.kind == ExitAction::kRetry);  // the VMM asked to run again
    REQUIRE(t.user.exits.size() == 1);
    check_memory_fault(t.last(), Errno::kEFAULT, true, 0x103000);
    // Shared access (shared bit set) to a private gfn: the gpa reported has the bit stripped.
    a = t.exit(stage2_exit(kSharedBit | 0x104008));
    REQUIRE(t.user.exits.size() == 2);
    check_memory_fault(t.last(), Errno::kEFAULT, false, 0x104000);
    CHECK(KvmFixture::leaf_count(t.vm()) == 0);
    // The matching accesses are fine.
    t.fault_ok(kSharedBit | 0x103000);
    t.fault_ok(0x104000);
    CHECK(KvmFixture::mapped_pfn(t.vm(), 0x104000) == t.fx.gmem_pfn(g, 4));
  }
}

TEST_CASE("Fault: KVM_RUN stops when the VMM does not resume, or when there is no VMM",
          "[kvm][fault]") {
  FaultFx t;
  REQUIRE(t.fx.set_attrs(t.vm_fd, 0x900000, kPage, kPriv).ok());
  t.user.resume = false;
  ExitAction a = t.exit(stage2_exit(0x900000));
  CHECK(a.kind == ExitAction::kStop);
  CHECK(a.reason == "stopped by the test");
  t.vcpu().set_userspace(nullptr);
  a = t.exit(stage2_exit(0x900000));
  CHECK(a.kind == ExitAction::kStop);
  CHECK(a.reason.find("KVM_EXIT_MEMORY_FAULT") != std::string::npos);
  CHECK(a.reason.find("EFAULT") != std::string::npos);
}

TEST_CASE("Fault: a private access outside every memslot -> memory fault, never MMIO",
          "[kvm][fault][memory_fault]") {
  FaultFx t;
  t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage);
  REQUIRE(t.fx.set_attrs(t.vm_fd, 0x900000, kPage, kPriv).ok());
  t.exit(stage2_exit(0x900010));
  REQUIRE(t.user.exits.size() == 1);
  check_memory_fault(t.last(), Errno::kEFAULT, true, 0x900000);
}

TEST_CASE("Fault: a shared access outside every memslot -> KVM_EXIT_MMIO", "[kvm][fault]") {
  for (uint32_t type : {kDefault, kSwProt}) {
    CAPTURE(type);
    FaultFx t(type);
    t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage);
    const ExitAction a = t.exit(stage2_exit(0xfee00010, true));
    CHECK(a.kind == ExitAction::kRetry);
    REQUIRE(t.user.exits.size() == 1);
    CHECK(t.last().err == 0);
    CHECK(t.last().run.exit_reason == KVM_EXIT_MMIO);
    CHECK(t.last().run.mmio.phys_addr == 0xfee00010);
    CHECK(t.last().run.mmio.is_write == 1);
    CHECK(KvmFixture::leaf_count(t.vm()) == 0);
  }
}

TEST_CASE("Fault: a private access to a slot without guest_memfd -> memory fault",
          "[kvm][fault][memory_fault]") {
  FaultFx t;
  t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage);
  REQUIRE(t.fx.set_attrs(t.vm_fd, 0x102000, kPage, kPriv).ok());
  t.exit(stage2_exit(0x102000, true));
  REQUIRE(t.user.exits.size() == 1);
  check_memory_fault(t.last(), Errno::kEFAULT, true, 0x102000);
  CHECK_FALSE(KvmFixture::mapped(t.vm(), 0x102000));
}

TEST_CASE("Fault: a closed guest_memfd leaves a dead slot -> memory fault EFAULT",
          "[kvm][fault][memory_fault]") {
  FaultFx t;
  const int g = t.fx.new_gmem(t.vm_fd, 16 * kPage);
  t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage, g);
  REQUIRE(t.fx.set_attrs(t.vm_fd, 0x100000, 16 * kPage, kPriv).ok());
  t.fault_ok(0x101000);
  REQUIRE(t.fx.proc.close(g).ok());
  CHECK_FALSE(KvmFixture::mapped(t.vm(), 0x101000));  // release zapped it
  const Memslot* s = t.vm().memslots().find_id(0);
  REQUIRE(s != nullptr);  // the slot remains...
  CHECK(s->flags == KVM_MEM_GUEST_MEMFD);
  CHECK(s->has_gmem());
  CHECK(s->gmem.file == nullptr);  // ...dead
  t.exit(stage2_exit(0x101000));
  REQUIRE(t.user.exits.size() == 1);
  check_memory_fault(t.last(), Errno::kEFAULT, true, 0x101000);
  // Shared accesses to the dead slot still use the shared backing.
  REQUIRE(t.fx.set_attrs(t.vm_fd, 0x102000, kPage, 0).ok());
  t.fault_ok(0x102000);
  // Deleting the dead slot is fine (unbind is a no-op).
  CHECK(t.fx.delete_slot(t.vm_fd, 0).ok());
}

TEST_CASE("Fault: a poisoned guest_memfd page -> memory fault with EHWPOISON",
          "[kvm][fault][memory_fault]") {
  FaultFx t;
  const int g = t.fx.new_gmem(t.vm_fd, 16 * kPage);
  t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage, g);
  REQUIRE(t.fx.set_attrs(t.vm_fd, 0x100000, 16 * kPage, kPriv).ok());
  t.fault_ok(0x105000);
  REQUIRE(t.fx.gmem(g)->memory_failure(GmemPgoff(5)).ok());
  CHECK_FALSE(KvmFixture::mapped(t.vm(), 0x105000));  // zapped, not truncated
  t.exit(stage2_exit(0x105000));
  REQUIRE(t.user.exits.size() == 1);
  check_memory_fault(t.last(), Errno::kEHWPOISON, true, 0x105000);
  // Its neighbours are unaffected.
  t.fault_ok(0x106000);
}

TEST_CASE("Fault: a shared fault with no host mapping behind the slot -> memory fault EFAULT",
          "[kvm][fault][memory_fault]") {
  FaultFx t;
  const Hva h = t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage);
  REQUIRE(t.fx.mm.munmap(h, 16 * kPage).ok());
  t.exit(stage2_exit(0x100000));
  REQUIRE(t.user.exits.size() == 1);
  check_memory_fault(t.last(), Errno::kEFAULT, false, 0x100000);
}

// ---- Permissions
// ---------------------------------------------------------------------------------------

TEST_CASE("Fault: a READONLY slot maps without W, and a write to it is emulated MMIO",
          "[kvm][fault]") {
  FaultFx t(kDefault);
  const Hva h =
      t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage, -1, 0, PageSize::k4K, KVM_MEM_READONLY);
  t.fault_ok(0x102000);
  const Stage2Lookup l = KvmFixture::s2(t.vm(), 0x102000);
  REQUIRE(l.mapped());
  CHECK_FALSE(l.pte.perms.write());
  CHECK(l.pte.perms.read());
  CHECK(l.pte.pfn == t.fx.host_pfn(h + 0x2000));
  // §4: read-only slots give emulated-MMIO semantics to writes (a write fault on the present,
  // non-writable leaf must not be "fixed" forever).
  VmExit e = stage2_exit(0x102008, true);
  e.present = true;
  const ExitAction a = t.exit(e);
  CHECK(a.kind == ExitAction::kRetry);
  REQUIRE(t.user.exits.size() == 1);
  CHECK(t.last().err == 0);
  CHECK(t.last().run.exit_reason == KVM_EXIT_MMIO);
  CHECK(t.last().run.mmio.phys_addr == 0x102008);
  CHECK(t.last().run.mmio.is_write == 1);
  // A first-touch write (no leaf yet) is MMIO as well and installs nothing writable.
  t.exit(stage2_exit(0x104000, true));
  REQUIRE(t.user.exits.size() == 2);
  CHECK(t.last().run.exit_reason == KVM_EXIT_MMIO);
  const Stage2Lookup l2 = KvmFixture::s2(t.vm(), 0x104000);
  CHECK((!l2.mapped() || !l2.pte.perms.write()));
}

// ---- Huge mappings and mixed attributes (§5, §13.9)
// ------------------------------------------------------

TEST_CASE("Fault: a 2M hugetlb-backed slot maps 2M leaves", "[kvm][fault][huge]") {
  for (uint32_t type : {kDefault, kSwProt}) {
    CAPTURE(type);
    FaultFx t(type);
    const Hva h = t.fx.add_slot(t.vm_fd, 0, 0x200000, 2 * k2M, -1, 0, PageSize::k2M);
    t.fault_ok(0x205000);
    const Stage2Lookup l = KvmFixture::s2(t.vm(), 0x205000);
    REQUIRE(l.mapped());
    CHECK(l.size() == PageSize::k2M);
    CHECK(l.base == Gpa(0x200000));
    auto page = t.fx.mm.lookup(h + 0x5000);
    REQUIRE(page.has_value());
    CHECK(page->size == PageSize::k2M);
    CHECK(l.pte.pfn == page->pfn);
    CHECK(l.pfn_for(Gpa(0x205000)) == t.fx.host_pfn(h + 0x5000));
    t.fault_ok(0x5ff000);
    CHECK(KvmFixture::s2(t.vm(), 0x5ff000).size() == PageSize::k2M);
    CHECK(KvmFixture::leaf_count(t.vm()) == 2);
  }
}

TEST_CASE("Fault: converting one 4K page makes its 2M page mixed, refaults map 4K",
          "[kvm][fault][huge][lpage]") {
  FaultFx t;
  const int g = t.fx.new_gmem(t.vm_fd, k2M);
  const Hva h = t.fx.add_slot(t.vm_fd, 0, 0x200000, k2M, g, 0, PageSize::k2M);
  t.fault_ok(0x205000);
  REQUIRE(KvmFixture::s2(t.vm(), 0x205000).size() == PageSize::k2M);
  const Memslot* s = t.vm().memslots().find_id(0);
  CHECK_FALSE(s->lpage->is_mixed(PageSize::k2M, gpa_to_gfn(Gpa(0x200000))));
  REQUIRE(t.fx.set_attrs(t.vm_fd, 0x201000, kPage, kPriv).ok());
  // The whole 2M leaf went, though only one 4K page changed.
  CHECK_FALSE(KvmFixture::mapped(t.vm(), 0x205000));
  CHECK(KvmFixture::leaf_count(t.vm()) == 0);
  CHECK(s->lpage->is_mixed(PageSize::k2M, gpa_to_gfn(Gpa(0x200000))));
  CHECK(t.vm().max_mapping_level(*s, gpa_to_gfn(Gpa(0x205000)), false) == PageSize::k4K);
  // Shared refault: a 4K leaf into the same host huge page.
  t.fault_ok(0x205000);
  const Stage2Lookup l = KvmFixture::s2(t.vm(), 0x205000);
  CHECK(l.size() == PageSize::k4K);
  CHECK(l.pte.pfn == t.fx.host_pfn(h + 0x5000));
  // Private fault: a 4K leaf to the guest_memfd frame.
  t.fault_ok(0x201000);
  CHECK(KvmFixture::s2(t.vm(), 0x201000).size() == PageSize::k4K);
  CHECK(KvmFixture::mapped_pfn(t.vm(), 0x201000) == t.fx.gmem_pfn(g, 1));
  // Back to shared: not mixed any more, and huge mappings are allowed again.
  REQUIRE(t.fx.set_attrs(t.vm_fd, 0x201000, kPage, 0).ok());
  CHECK_FALSE(s->lpage->is_mixed(PageSize::k2M, gpa_to_gfn(Gpa(0x200000))));
  CHECK(t.vm().max_mapping_level(*s, gpa_to_gfn(Gpa(0x300000)), false) == PageSize::k2M);
}

TEST_CASE(
    "Fault: huge mappings need a huge host page, gfn/hva congruence and a contained huge page",
    "[kvm][fault][huge]") {
  FaultFx t(kDefault);
  // 4K host pages: 4K leaves even in a 2M-aligned slot.
  t.fx.add_slot(t.vm_fd, 0, 0x200000, k2M);
  t.fault_ok(0x200000);
  CHECK(KvmFixture::s2(t.vm(), 0x200000).size() == PageSize::k4K);
  // A 2M host page whose hva is not congruent to the gfn modulo 2M: 4K.
  const Hva h = t.fx.anon(2 * k2M, PageSize::k2M);
  REQUIRE(t.fx.set_region(t.vm_fd, region2(1, 0x801000, 2 * k2M - kPage, h.value())).ok());
  t.fault_ok(0xa00000);
  const Stage2Lookup l = KvmFixture::s2(t.vm(), 0xa00000);
  CHECK(l.size() == PageSize::k4K);
  CHECK(l.pte.pfn == t.fx.host_pfn(h + (0xa00000 - 0x801000)));
}

TEST_CASE("Fault: private mappings are 4K even over a fully private 2M range",
          "[kvm][fault][huge]") {
  FaultFx t;
  const int g = t.fx.new_gmem(t.vm_fd, k2M);
  t.fx.add_slot(t.vm_fd, 0, 0x200000, k2M, g, 0, PageSize::k2M);
  REQUIRE(t.fx.set_attrs(t.vm_fd, 0x200000, k2M, kPriv).ok());
  CHECK_FALSE(
      t.vm().memslots().find_id(0)->lpage->is_mixed(PageSize::k2M, gpa_to_gfn(Gpa(0x200000))));
  t.fault_ok(0x200000);
  CHECK(KvmFixture::s2(t.vm(), 0x200000).size() == PageSize::k4K);
  CHECK_FALSE(KvmFixture::mapped(t.vm(), 0x201000));
}

// ---- GMEM_ONLY slots (§4 semantics, MMAP flag)
// -----------------------------------------------------------

TEST_CASE("Fault: in a GMEM_ONLY slot shared faults are served from guest_memfd",
          "[kvm][fault][gmem_only]") {
  FaultFx t(kDefault);
  const int g =
      t.fx.new_gmem(t.vm_fd, 16 * kPage, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
  const Hva h = t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage, g);
  t.fault_ok(0x104000, true);
  const Pfn p = KvmFixture::mapped_pfn(t.vm(), 0x104000);
  CHECK(p == t.fx.gmem_pfn(g, 4));
  CHECK_FALSE(t.fx.mm.lookup(h + 0x4000).has_value());  // the anonymous backing is untouched
  // The host's mmap of the file sees the same physical page.
  auto file = t.fx.gmem(g);
  auto m = file->mmap(16 * kPage, PROT_READ | PROT_WRITE, true);
  REQUIRE(m.ok());
  auto uf = file->user_fault(*m, 4 * kPage, false);
  REQUIRE(uf.ok());
  CHECK(uf->signal == Signal::kNone);
  CHECK(uf->pfn == p);
  REQUIRE(file->munmap(*m).ok());
}

// ---- Hypercalls (§11)
// -----------------------------------------------------------------------------------

TEST_CASE(
    "Hypercall: KVM_HC_MAP_GPA_RANGE exits with nr, args, LONG_MODE and ret preset to 0, and the "
    "VMM's ret goes to the guest",
    "[kvm][hypercall]") {
  FaultFx t;
  REQUIRE(t.fx.enable_exit_hypercall(t.vm_fd, uint64_t{1} << KVM_HC_MAP_GPA_RANGE).ok());
  // A userspace that looks at ret before answering.
  struct Peek final : UserspaceExitHandler {
    uint64_t ret_seen = 99;
    uint64_t answer = 0;
    bool on_exit(Vcpu&, int, kvm_run& run, std::string&) override {
      ret_seen = run.hypercall.ret;
      run.hypercall.ret = answer;
      return true;
    }
  } peek;
  t.vcpu().set_userspace(&peek);
  t.vcpu().run().hypercall.ret = 0xdead;  // stale from an earlier exit
  peek.answer = 0x1234;
  const ExitAction a =
      t.exit(hypercall_exit(KVM_HC_MAP_GPA_RANGE, 0x200000, 3, KVM_MAP_GPA_RANGE_ENCRYPTED | 1));
  CHECK(a.kind == ExitAction::kResume);
  CHECK(a.ret == 0x1234);
  CHECK(peek.ret_seen == 0);
  const kvm_run& run = t.vcpu().run();
  CHECK(run.exit_reason == KVM_EXIT_HYPERCALL);
  CHECK(run.hypercall.nr == KVM_HC_MAP_GPA_RANGE);
  CHECK(run.hypercall.args[0] == 0x200000);
  CHECK(run.hypercall.args[1] == 3);
  CHECK(run.hypercall.args[2] == (KVM_MAP_GPA_RANGE_ENCRYPTED | 1));
  CHECK(run.hypercall.flags == KVM_EXIT_HYPERCALL_LONG_MODE);
  // KVM itself converts nothing.
  CHECK_FALSE(t.vm().mem_is_private(gpa_to_gfn(Gpa(0x200000))));
}
