// The MMU invalidation/retry protocol (kvm-guest-memfd.md §5 "MMU invalidation protocol", §7
// steps 1, 5 and 7): a fault that resolved its frame before an invalidation must not install
// it; every source of invalidation (attributes, guest_memfd punch/close/poison, memslot
// delete/move, host mm notifier) zaps stage-2 leaves and flushes the vCPUs' TLBs and page-walk
// caches. Every test runs against both attribute stores.
#include <catch2/catch.hpp>

#include "kvm_test_util.h"

using namespace cvmsim;
using namespace cvmsim::kvmtest;

namespace {

constexpr int PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;

// A sw_protected VM with slot 0 = [0x100000, +16 pages), shared backing plus a guest_memfd, and a
// vCPU whose TLB and page-walk cache are real hw models.
struct InvFx {
  KvmFixture fx;
  int vm_fd, vcpu_fd, gmem_fd;
  Hva hva;
  Tlb tlb;
  Pwc pwc;
  static constexpr uint64_t kBase = 0x100000;
  InvFx() : fx(any_store()) {
    vm_fd = fx.new_vm(kSwProt);
    vcpu_fd = fx.new_vcpu(vm_fd);
    fx.vcpu(vcpu_fd).attach(&tlb, &pwc);
    gmem_fd = fx.new_gmem(vm_fd, 16 * kPage);
    hva = fx.add_slot(vm_fd, 0, kBase, 16 * kPage, gmem_fd);
  }
  // The TLB and PWC go before the fixture does, and closing its files flushes TLBs: detach them.
  ~InvFx() { fx.vcpu(vcpu_fd).attach(nullptr, nullptr); }
  Vm& vm() { return fx.vm(vm_fd); }
  static Gfn gfn(uint64_t gpa) { return gpa_to_gfn(Gpa(gpa)); }
  Vm::FaultContext start(uint64_t gpa, bool is_private = false) {
    Vm::FaultContext ctx;
    ctx.fault.gfn = gfn(gpa);
    ctx.fault.is_private = is_private;
    auto early = vm().faultin(ctx);
    REQUIRE_FALSE(early.has_value());
    REQUIRE(ctx.resolved);
    return ctx;
  }
  void map(uint64_t gpa, bool is_private = false) {
    PageFault f;
    f.gfn = gfn(gpa);
    f.is_private = is_private;
    REQUIRE(vm().page_fault(f).kind == FaultOutcome::kFixed);
  }
  // Caches gpa's translation in the vCPU's TLB and a walk entry in its page-walk cache.
  void cache(uint64_t gpa) {
    tlb.fill(vm().asid(), Gpa(gpa), KvmFixture::mapped_pfn(vm(), gpa), PageSize::k4K, kPermsRWX);
    pwc.insert(vm().asid(), 1, Gpa(gpa), vm().stage2().root());
    REQUIRE(tlb.peek(vm().asid(), Gpa(gpa)) != nullptr);
  }
  bool flushed(uint64_t gpa) {
    return tlb.peek(vm().asid(), Gpa(gpa)) == nullptr && pwc.occupancy() == 0;
  }
};

}  // namespace

// ---- A fault racing with each kind of invalidation retries and installs nothing
// ------------------------

TEST_CASE("Retry: faultin, then an attribute change, then install -> kRetry",
          "[kvm][invalidation]") {
  InvFx t;
  auto ctx = t.start(InvFx::kBase + 0x3000);
  REQUIRE(t.fx.set_attrs(t.vm_fd, InvFx::kBase + 0x3000, kPage, kPriv).ok());
  const FaultOutcome o = t.vm().install(ctx);
  CHECK(o.kind == FaultOutcome::kRetry);
  CHECK(KvmFixture::leaf_count(t.vm()) == 0);
  // The refault sees the new attribute: the shared access is now a mismatch.
  PageFault f;
  f.gfn = InvFx::gfn(InvFx::kBase + 0x3000);
  CHECK(t.vm().page_fault(f).kind == FaultOutcome::kMemoryFaultExit);
}

TEST_CASE("Retry: faultin, then a guest_memfd punch-hole, then install -> kRetry",
          "[kvm][invalidation]") {
  InvFx t;
  REQUIRE(t.fx.set_attrs(t.vm_fd, InvFx::kBase, 16 * kPage, kPriv).ok());
  auto ctx = t.start(InvFx::kBase + 0x2000, true);
  const Pfn stale = ctx.pfn;
  CHECK(stale == t.fx.gmem_pfn(t.gmem_fd, 2));
  REQUIRE(t.fx.kvm.fallocate(t.fx.proc, t.gmem_fd, PUNCH, 2 * kPage, kPage).ok());
  CHECK(t.fx.gmem(t.gmem_fd)->inode().folio(GmemPgoff(2)) == nullptr);  // the frame was freed
  CHECK(t.vm().install(ctx).kind == FaultOutcome::kRetry);
  CHECK(KvmFixture::leaf_count(t.vm()) == 0);
}

TEST_CASE("Retry: faultin, then a memslot delete, then install -> kRetry", "[kvm][invalidation]") {
  InvFx t;
  auto ctx = t.start(InvFx::kBase + 0x1000);
  REQUIRE(t.fx.delete_slot(t.vm_fd, 0).ok());
  CHECK(t.vm().install(ctx).kind == FaultOutcome::kRetry);
  CHECK(KvmFixture::leaf_count(t.vm()) == 0);
}

TEST_CASE("Retry: faultin, then a memslot move, then install -> kRetry", "[kvm][invalidation]") {
  KvmFixture fx(any_store());
  const int v = fx.new_vm(kDefault);
  const Hva h = fx.add_slot(v, 0, 0x100000, 16 * kPage);
  Vm& vm = fx.vm(v);
  Vm::FaultContext ctx;
  ctx.fault.gfn = gpa_to_gfn(Gpa(0x101000));
  REQUIRE_FALSE(vm.faultin(ctx).has_value());
  REQUIRE(fx.set_region(v, region2(0, 0x400000, 16 * kPage, h.value())).ok());
  CHECK(vm.install(ctx).kind == FaultOutcome::kRetry);
  CHECK(KvmFixture::leaf_count(vm) == 0);
}

TEST_CASE(
    "Retry: faultin, then MADV_DONTNEED on the shared backing (MMU notifier), then install -> "
    "kRetry",
    "[kvm][invalidation][notifier]") {
  InvFx t;
  auto ctx = t.start(InvFx::kBase + 0x4000);
  CHECK(ctx.pfn == t.fx.host_pfn(t.hva + 0x4000));
  const uint64_t seq = t.vm().mmu_invalidate_seq();
  REQUIRE(t.fx.mm.madvise_dontneed(t.hva + 0x4000, kPage).ok());
  CHECK(t.vm().mmu_invalidate_seq() == seq + 1);
  CHECK_FALSE(t.fx.mm.lookup(t.hva + 0x4000).has_value());  // the frame went back to the host
  CHECK(t.vm().install(ctx).kind == FaultOutcome::kRetry);
  CHECK(KvmFixture::leaf_count(t.vm()) == 0);
  // The refault maps the fresh page.
  t.map(InvFx::kBase + 0x4000);
  CHECK(KvmFixture::mapped_pfn(t.vm(), InvFx::kBase + 0x4000) == t.fx.host_pfn(t.hva + 0x4000));
}

TEST_CASE("Retry: faultin, then munmap of the shared backing, then install -> kRetry",
          "[kvm][invalidation][notifier]") {
  InvFx t;
  auto ctx = t.start(InvFx::kBase);
  REQUIRE(t.fx.mm.munmap(t.hva, 16 * kPage).ok());
  CHECK(t.vm().install(ctx).kind == FaultOutcome::kRetry);
  CHECK(KvmFixture::leaf_count(t.vm()) == 0);
}

TEST_CASE("Retry: faultin, then a guest_memfd memory failure, then install -> kRetry",
          "[kvm][invalidation]") {
  InvFx t;
  REQUIRE(t.fx.set_attrs(t.vm_fd, InvFx::kBase, 16 * kPage, kPriv).ok());
  auto ctx = t.start(InvFx::kBase + 0x6000, true);
  REQUIRE(t.fx.gmem(t.gmem_fd)->memory_failure(GmemPgoff(6)).ok());
  CHECK(t.vm().install(ctx).kind == FaultOutcome::kRetry);
  CHECK(KvmFixture::leaf_count(t.vm()) == 0);
}

TEST_CASE("Retry: faultin, then closing the guest_memfd, then install -> kRetry",
          "[kvm][invalidation][lifetime]") {
  InvFx t;
  REQUIRE(t.fx.set_attrs(t.vm_fd, InvFx::kBase, 16 * kPage, kPriv).ok());
  auto ctx = t.start(InvFx::kBase + 0x9000, true);
  REQUIRE(t.fx.proc.close(t.gmem_fd).ok());  // release: dead slot, folios freed with the inode
  CHECK(t.vm().install(ctx).kind == FaultOutcome::kRetry);
  CHECK(KvmFixture::leaf_count(t.vm()) == 0);
}

TEST_CASE("Retry: without an intervening invalidation install maps what faultin resolved",
          "[kvm][invalidation]") {
  InvFx t;
  auto ctx = t.start(InvFx::kBase + 0x5000);
  const FaultOutcome o = t.vm().install(ctx);
  CHECK(o.kind == FaultOutcome::kFixed);
  CHECK(KvmFixture::mapped_pfn(t.vm(), InvFx::kBase + 0x5000) == ctx.pfn);
}

// ---- mmu_invalidate_retry_gfn semantics
// -------------------------------------------------------------------

TEST_CASE("mmu_invalidate_retry_gfn: an in-progress range or a changed seq forces a retry",
          "[kvm][invalidation]") {
  InvFx t;
  Vm& vm = t.vm();
  const uint64_t seq = vm.mmu_invalidate_seq();
  CHECK_FALSE(vm.mmu_invalidate_retry_gfn(seq, Gfn(0x105)));
  vm.mmu_invalidate_begin();
  // begin without a range: WARN in Linux, and every gfn retries.
  CHECK(vm.mmu_invalidate_retry_gfn(seq, Gfn(0x999)));
  vm.mmu_invalidate_range_add({Gfn(0x100), Gfn(0x104)});
  vm.mmu_invalidate_range_add({Gfn(0x108), Gfn(0x10a)});  // widened to the union [0x100, 0x10a)
  CHECK(vm.mmu_invalidate_retry_gfn(seq, Gfn(0x100)));
  CHECK(vm.mmu_invalidate_retry_gfn(seq, Gfn(0x105)));  // in the hull, between the two adds
  CHECK(vm.mmu_invalidate_retry_gfn(seq, Gfn(0x109)));
  CHECK_FALSE(vm.mmu_invalidate_retry_gfn(seq, Gfn(0x10a)));
  CHECK_FALSE(vm.mmu_invalidate_retry_gfn(seq, Gfn(0xff)));
  CHECK(vm.mmu_invalidate_seq() == seq);  // begin/add do not move the seq
  vm.mmu_invalidate_end();
  CHECK(vm.mmu_invalidate_seq() == seq + 1);
  // Not in progress any more, but the seq a fault snapshotted before is stale for every gfn.
  CHECK(vm.mmu_invalidate_retry_gfn(seq, Gfn(0xff)));
  CHECK_FALSE(vm.mmu_invalidate_retry_gfn(seq + 1, Gfn(0x105)));
  // The next begin starts from an invalid range again (0 -> 1).
  vm.mmu_invalidate_begin();
  vm.mmu_invalidate_range_add({Gfn(0x200), Gfn(0x201)});
  CHECK_FALSE(vm.mmu_invalidate_retry_gfn(seq + 1, Gfn(0x105)));
  vm.mmu_invalidate_end();
}

TEST_CASE("mmu_invalidate: nested invalidations stay in progress until the last end",
          "[kvm][invalidation]") {
  InvFx t;
  Vm& vm = t.vm();
  const uint64_t seq = vm.mmu_invalidate_seq();
  vm.mmu_invalidate_begin();
  vm.mmu_invalidate_range_add({Gfn(0x100), Gfn(0x101)});
  vm.mmu_invalidate_begin();
  vm.mmu_invalidate_range_add({Gfn(0x300), Gfn(0x301)});
  vm.mmu_invalidate_end();
  CHECK(vm.mmu_invalidate_seq() == seq + 1);
  CHECK(vm.mmu_invalidate_retry_gfn(seq + 1, Gfn(0x100)));  // still in progress
  vm.mmu_invalidate_end();
  CHECK(vm.mmu_invalidate_seq() == seq + 2);
  CHECK_FALSE(vm.mmu_invalidate_retry_gfn(seq + 2, Gfn(0x100)));
}

TEST_CASE(
    "Retry: an in-progress invalidation elsewhere does not stop a fault, one covering the gfn does",
    "[kvm][invalidation]") {
  InvFx t;
  Vm& vm = t.vm();
  vm.mmu_invalidate_begin();
  vm.mmu_invalidate_range_add(
      {InvFx::gfn(InvFx::kBase + 0x8000), InvFx::gfn(InvFx::kBase + 0xa000)});
  // Outside the range, same seq: faultin and install proceed while the invalidation is open.
  auto ctx = t.start(InvFx::kBase + 0x1000);
  CHECK(vm.install(ctx).kind == FaultOutcome::kFixed);
  // Inside the range: faultin itself retries (§7 step 5) ...
  Vm::FaultContext in;
  in.fault.gfn = InvFx::gfn(InvFx::kBase + 0x9000);
  auto early = vm.faultin(in);
  REQUIRE(early.has_value());
  CHECK(early->kind == FaultOutcome::kRetry);
  // ... and a fault that resolved before the range covered it retries at install (step 7).
  Vm::FaultContext late;
  late.fault.gfn = InvFx::gfn(InvFx::kBase + 0xb000);
  REQUIRE_FALSE(vm.faultin(late).has_value());
  vm.mmu_invalidate_range_add(
      {InvFx::gfn(InvFx::kBase + 0xb000), InvFx::gfn(InvFx::kBase + 0xc000)});
  CHECK(vm.install(late).kind == FaultOutcome::kRetry);
  vm.mmu_invalidate_end();
  CHECK_FALSE(KvmFixture::mapped(vm, InvFx::kBase + 0x9000));
  CHECK_FALSE(KvmFixture::mapped(vm, InvFx::kBase + 0xb000));
  // After the end the faults go through.
  t.map(InvFx::kBase + 0x9000);
  t.map(InvFx::kBase + 0xb000);
}

TEST_CASE("Retry: an attribute change outside every memslot does not disturb a racing fault",
          "[kvm][invalidation]") {
  InvFx t;
  auto ctx = t.start(InvFx::kBase + 0x2000);
  REQUIRE(
      t.fx.set_attrs(t.vm_fd, 0x40000000, kPage, kPriv).ok());  // no slot there: no invalidation
  CHECK(t.vm().install(ctx).kind == FaultOutcome::kFixed);
}

TEST_CASE("Retry: any completed invalidation of the VM makes an older fault retry (seq changed)",
          "[kvm][invalidation]") {
  InvFx t;
  auto ctx = t.start(InvFx::kBase + 0x2000);
  REQUIRE(t.fx.set_attrs(t.vm_fd, InvFx::kBase + 0xf000, kPage, kPriv)
              .ok());  // another gfn of the slot
  CHECK(t.vm().install(ctx).kind == FaultOutcome::kRetry);
}

TEST_CASE("Notifier: host mm changes outside every memslot do not invalidate",
          "[kvm][invalidation][notifier]") {
  InvFx t;
  const Hva other = t.fx.anon(4 * kPage);
  REQUIRE(t.fx.mm.write(other, std::vector<uint8_t>(8, 1)).ok());
  const uint64_t seq = t.vm().mmu_invalidate_seq();
  REQUIRE(t.fx.mm.madvise_dontneed(other, 4 * kPage).ok());
  REQUIRE(t.fx.mm.munmap(other, 4 * kPage).ok());
  CHECK(t.vm().mmu_invalidate_seq() == seq);
}

// ---- Zaps remove leaves and flush the attached TLB and page-walk cache
// ---------------------------------

TEST_CASE("Zap: an attribute conversion removes the leaf and flushes the vCPU's TLB and PWC",
          "[kvm][invalidation][tlb]") {
  InvFx t;
  t.map(InvFx::kBase + 0x3000);
  t.cache(InvFx::kBase + 0x3000);
  t.tlb.fill(static_cast<uint16_t>(t.vm().asid() + 1), Gpa(InvFx::kBase + 0x3000), Pfn(3),
             PageSize::k4K, kPermsRWX);
  const uint64_t flushes = t.fx.vcpu(t.vcpu_fd).stats().tlb_flushes;
  REQUIRE(t.fx.set_attrs(t.vm_fd, InvFx::kBase + 0x3000, kPage, kPriv).ok());
  CHECK_FALSE(KvmFixture::mapped(t.vm(), InvFx::kBase + 0x3000));
  CHECK(t.flushed(InvFx::kBase + 0x3000));
  CHECK(t.fx.vcpu(t.vcpu_fd).stats().tlb_flushes == flushes + 1);
  // Only this VM's tag is flushed.
  CHECK(t.tlb.peek(static_cast<uint16_t>(t.vm().asid() + 1), Gpa(InvFx::kBase + 0x3000)) !=
        nullptr);
}

TEST_CASE("Zap: a punch-hole removes the private leaf and flushes", "[kvm][invalidation][tlb]") {
  InvFx t;
  REQUIRE(t.fx.set_attrs(t.vm_fd, InvFx::kBase, 16 * kPage, kPriv).ok());
  t.map(InvFx::kBase + 0x2000, true);
  t.map(InvFx::kBase + 0x3000, true);
  t.cache(InvFx::kBase + 0x2000);
  const uint64_t seq = t.vm().mmu_invalidate_seq();
  REQUIRE(t.fx.kvm.fallocate(t.fx.proc, t.gmem_fd, PUNCH, 2 * kPage, kPage).ok());
  CHECK_FALSE(KvmFixture::mapped(t.vm(), InvFx::kBase + 0x2000));
  CHECK(KvmFixture::mapped(t.vm(), InvFx::kBase + 0x3000));
  CHECK(t.flushed(InvFx::kBase + 0x2000));
  CHECK(t.vm().mmu_invalidate_seq() == seq + 1);
  // A punch of a range no slot binds invalidates nothing.
  auto big = t.fx.new_gmem(t.vm_fd, 16 * kPage);
  REQUIRE(t.fx.kvm.fallocate(t.fx.proc, big, PUNCH, 0, 16 * kPage).ok());
  CHECK(t.vm().mmu_invalidate_seq() == seq + 1);
}

TEST_CASE("Zap: MADV_DONTNEED on the shared backing removes the leaf and flushes",
          "[kvm][invalidation][tlb][notifier]") {
  InvFx t;
  t.map(InvFx::kBase + 0x7000);
  t.map(InvFx::kBase + 0x8000);
  t.cache(InvFx::kBase + 0x7000);
  REQUIRE(t.fx.mm.madvise_dontneed(t.hva + 0x7000, kPage).ok());
  CHECK_FALSE(KvmFixture::mapped(t.vm(), InvFx::kBase + 0x7000));
  CHECK(KvmFixture::mapped(t.vm(), InvFx::kBase + 0x8000));
  CHECK(t.flushed(InvFx::kBase + 0x7000));
}

TEST_CASE("Zap: deleting a memslot removes its leaves and flushes", "[kvm][invalidation][tlb]") {
  InvFx t;
  t.map(InvFx::kBase + 0x1000);
  t.cache(InvFx::kBase + 0x1000);
  const Hva h2 = t.fx.add_slot(t.vm_fd, 1, 0x300000, 4 * kPage);
  (void)h2;
  t.map(0x300000);
  REQUIRE(t.fx.delete_slot(t.vm_fd, 0).ok());
  CHECK_FALSE(KvmFixture::mapped(t.vm(), InvFx::kBase + 0x1000));
  CHECK(KvmFixture::mapped(t.vm(), 0x300000));
  CHECK(t.flushed(InvFx::kBase + 0x1000));
}

TEST_CASE("Zap: closing the guest_memfd removes private leaves and flushes",
          "[kvm][invalidation][tlb]") {
  InvFx t;
  REQUIRE(t.fx.set_attrs(t.vm_fd, InvFx::kBase, 2 * kPage, kPriv).ok());
  t.map(InvFx::kBase, true);
  t.map(InvFx::kBase + 0x5000);  // shared
  t.cache(InvFx::kBase);
  REQUIRE(t.fx.proc.close(t.gmem_fd).ok());
  CHECK_FALSE(KvmFixture::mapped(t.vm(), InvFx::kBase));
  CHECK(t.flushed(InvFx::kBase));
}

TEST_CASE("Zap: a huge leaf is zapped whole when any 4K page of it is invalidated",
          "[kvm][invalidation][huge]") {
  KvmFixture fx(any_store());
  const int v = fx.new_vm(kDefault);
  const Hva h = fx.add_slot(v, 0, 0x200000, k2M, -1, 0, PageSize::k2M);
  Vm& vm = fx.vm(v);
  PageFault f;
  f.gfn = gpa_to_gfn(Gpa(0x200000));
  REQUIRE(vm.page_fault(f).level == PageSize::k2M);
  // MADV_DONTNEED of a hugetlb range must cover whole pages; munmap of the whole page zaps the
  // leaf.
  CHECK(err(fx.mm.madvise_dontneed(h + 0x1000, kPage)) == Errno::kEINVAL);
  CHECK(KvmFixture::mapped(vm, 0x3ff000));
  REQUIRE(fx.mm.madvise_dontneed(h, k2M).ok());
  CHECK(KvmFixture::leaf_count(vm) == 0);
}
