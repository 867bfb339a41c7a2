// KVM_SET_MEMORY_ATTRIBUTES (kvm-guest-memfd.md §5): the five validation rules in order, one
// check per rule asserting the errno; the algorithm's visible effects (early exit without
// invalidation, invalidation only where memslots intersect, zaps and TLB flushes, attributes
// independent of memslots); the x86 mixed-huge-page tracking. Every test runs against both
// attribute stores.
#include <catch2/catch.hpp>

#include "kvm_test_util.h"

using namespace cvmsim;
using namespace cvmsim::kvmtest;

namespace {

struct AttrFx {
  KvmFixture fx;
  int vm_fd;
  explicit AttrFx(uint32_t type = kSwProt) : fx(any_store()), vm_fd(fx.new_vm(type)) {}
  Vm& vm() { return fx.vm(vm_fd); }
  Status set(const kvm_memory_attributes& a) {
    return fx.kvm.set_memory_attributes(fx.proc, vm_fd, &a);
  }
  bool any_private(uint64_t gpa, uint64_t size) {
    return !vm().range_has_memory_attributes({gpa_to_gfn(Gpa(gpa)), gpa_to_gfn(Gpa(gpa + size))},
                                             ~uint64_t{0}, 0);
  }
};

}  // namespace

// ---- Validation, in order
// -------------------------------------------------------------------------

TEST_CASE("SET_MEMORY_ATTRIBUTES rule 1: a failed copy -> EFAULT", "[kvm][uapi][attributes]") {
  AttrFx t;
  CHECK(err(t.fx.kvm.set_memory_attributes(t.fx.proc, t.vm_fd, nullptr)) == Errno::kEFAULT);
}

TEST_CASE("SET_MEMORY_ATTRIBUTES rule 2: flags != 0 -> EINVAL", "[kvm][uapi][attributes]") {
  AttrFx t;
  CHECK(err(t.set(attrs(0, kPage, kPriv, 1))) == Errno::kEINVAL);
  CHECK(err(t.set(attrs(0, kPage, 0, 1ull << 63))) == Errno::kEINVAL);
  CHECK_FALSE(t.any_private(0, kPage));
}

TEST_CASE("SET_MEMORY_ATTRIBUTES rule 3: PRIVATE on a default VM -> EINVAL",
          "[kvm][uapi][attributes]") {
  AttrFx t(kDefault);
  CHECK(err(t.set(attrs(0, kPage, kPriv))) == Errno::kEINVAL);
  CHECK(t.vm().get_memory_attributes(Gfn(0)) == 0);
  CHECK(t.set(attrs(0, kPage, 0)).ok());  // 0 is always supported
}

TEST_CASE("SET_MEMORY_ATTRIBUTES rule 3: reserved R/W/X bits 0-2 and unknown bits -> EINVAL",
          "[kvm][uapi][attributes]") {
  AttrFx t;
  for (uint64_t a : {uint64_t{1}, uint64_t{2}, uint64_t{4}, uint64_t{1} << 4, kPriv | 1,
                     kPriv | (uint64_t{1} << 63)}) {
    CAPTURE(a);
    CHECK(err(t.set(attrs(0, kPage, a))) == Errno::kEINVAL);
  }
  CHECK_FALSE(t.any_private(0, kPage));
  CHECK(t.vm().get_memory_attributes(Gfn(0)) == 0);
}

TEST_CASE("SET_MEMORY_ATTRIBUTES rule 4: size 0 or address + size overflowing -> EINVAL",
          "[kvm][uapi][attributes]") {
  AttrFx t;
  CHECK(err(t.set(attrs(0, 0, kPriv))) == Errno::kEINVAL);
  CHECK(err(t.set(attrs(~uint64_t{0} & ~(kPage - 1), 2 * kPage, kPriv))) == Errno::kEINVAL);
  CHECK_FALSE(t.any_private(0, kPage));
}

TEST_CASE("SET_MEMORY_ATTRIBUTES rule 5: address or size not page aligned -> EINVAL",
          "[kvm][uapi][attributes]") {
  AttrFx t;
  CHECK(err(t.set(attrs(0x800, kPage, kPriv))) == Errno::kEINVAL);
  CHECK(err(t.set(attrs(0, kPage + 8, kPriv))) == Errno::kEINVAL);
  CHECK(err(t.set(attrs(0, 8, kPriv))) == Errno::kEINVAL);
  CHECK_FALSE(t.any_private(0, 2 * kPage));
}

TEST_CASE(
    "SET_MEMORY_ATTRIBUTES covers address up to address + size and is _IOW (nothing written back)",
    "[kvm][uapi][attributes]") {
  AttrFx t;
  const kvm_memory_attributes a = attrs(0x10000, 3 * kPage, kPriv);
  REQUIRE(t.set(a).ok());
  CHECK_FALSE(t.vm().mem_is_private(Gfn(0xf)));
  CHECK(t.vm().mem_is_private(Gfn(0x10)));
  CHECK(t.vm().mem_is_private(Gfn(0x12)));
  CHECK_FALSE(t.vm().mem_is_private(Gfn(0x13)));
  CHECK(a.address == 0x10000);
  CHECK(a.size == 3 * kPage);
  CHECK(t.vm().attributes().kind() == t.fx.kind);
}

TEST_CASE(
    "SET_MEMORY_ATTRIBUTES step 2: xa_reserve failing -> ENOMEM, nothing changed, no invalidation",
    "[kvm][uapi][attributes]") {
  KvmFixture fx(any_store(), 100);  // too little host memory for any attribute entry
  const int v = fx.new_vm(kSwProt);
  fx.add_slot(v, 0, 0x100000, 16 * kPage);
  Vm& vm = fx.vm(v);
  REQUIRE(vm.page_fault(PageFault{gpa_to_gfn(Gpa(0x102000))}).kind == FaultOutcome::kFixed);
  const uint64_t seq = vm.mmu_invalidate_seq();
  CHECK(err(fx.set_attrs(v, 0x100000, 16 * kPage, kPriv)) == Errno::kENOMEM);
  CHECK_FALSE(vm.mem_is_private(gpa_to_gfn(Gpa(0x102000))));
  CHECK(vm.range_has_memory_attributes({gpa_to_gfn(Gpa(0x100000)), gpa_to_gfn(Gpa(0x110000))},
                                       ~uint64_t{0}, 0));
  CHECK(vm.mmu_invalidate_seq() == seq);
  CHECK(KvmFixture::mapped(vm, 0x102000));
  CHECK(vm.attributes().host_bytes() == 0);
  // Setting what is already there needs no memory: the early exit comes first.
  CHECK(fx.set_attrs(v, 0x100000, 16 * kPage, 0).ok());
}

// ---- The algorithm
// ---------------------------------------------------------------------------------

TEST_CASE("SET_MEMORY_ATTRIBUTES needs no memslot and invalidates nothing where no memslot is",
          "[kvm][uapi][attributes]") {
  AttrFx t;
  const uint64_t seq = t.vm().mmu_invalidate_seq();
  REQUIRE(t.set(attrs(0x40000000, 16 * kPage, kPriv)).ok());
  CHECK(t.vm().mem_is_private(gpa_to_gfn(Gpa(0x40000000))));
  CHECK(t.vm().mmu_invalidate_seq() == seq);
}

TEST_CASE("SET_MEMORY_ATTRIBUTES: attributes survive memslot deletion and re-creation",
          "[kvm][uapi][attributes]") {
  AttrFx t;
  const Hva h = t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage);
  REQUIRE(t.fx.set_attrs(t.vm_fd, 0x104000, 2 * kPage, kPriv).ok());
  REQUIRE(t.fx.delete_slot(t.vm_fd, 0).ok());
  CHECK(t.vm().mem_is_private(gpa_to_gfn(Gpa(0x104000))));
  CHECK(t.vm().mem_is_private(gpa_to_gfn(Gpa(0x105000))));
  REQUIRE(t.fx.set_region(t.vm_fd, region2(3, 0x100000, 16 * kPage, h.value())).ok());
  CHECK(t.vm().mem_is_private(gpa_to_gfn(Gpa(0x104000))));
  CHECK_FALSE(t.vm().mem_is_private(gpa_to_gfn(Gpa(0x106000))));
  // A fault sees them: the re-created slot has no guest_memfd, so the private gfn exits.
  PageFault f;
  f.gfn = gpa_to_gfn(Gpa(0x104000));
  f.is_private = true;
  CHECK(t.vm().page_fault(f).kind == FaultOutcome::kMemoryFaultExit);
}

TEST_CASE("SET_MEMORY_ATTRIBUTES: no change -> early exit without invalidation",
          "[kvm][uapi][attributes]") {
  AttrFx t;
  const int vcpu = t.fx.new_vcpu(t.vm_fd);
  Tlb tlb;
  t.fx.vcpu(vcpu).attach(&tlb, nullptr);
  DetachOnExit detach{t.fx.vcpu(vcpu)};
  t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage);
  REQUIRE(t.vm().page_fault(PageFault{gpa_to_gfn(Gpa(0x100000))}).kind == FaultOutcome::kFixed);
  tlb.fill(t.vm().asid(), Gpa(0x100000), KvmFixture::mapped_pfn(t.vm(), 0x100000), PageSize::k4K,
           kPermsRWX);
  const uint64_t seq = t.vm().mmu_invalidate_seq();
  // Shared over shared memory.
  REQUIRE(t.set(attrs(0x100000, 16 * kPage, 0)).ok());
  CHECK(t.vm().mmu_invalidate_seq() == seq);
  CHECK(KvmFixture::mapped(t.vm(), 0x100000));
  CHECK(tlb.peek(t.vm().asid(), Gpa(0x100000)) != nullptr);
  // Private over private memory, elsewhere in the slot.
  REQUIRE(t.set(attrs(0x108000, 4 * kPage, kPriv)).ok());
  const uint64_t seq2 = t.vm().mmu_invalidate_seq();
  CHECK(seq2 == seq + 1);
  REQUIRE(t.set(attrs(0x108000, 4 * kPage, kPriv)).ok());
  REQUIRE(t.set(attrs(0x109000, kPage, kPriv)).ok());
  CHECK(t.vm().mmu_invalidate_seq() == seq2);
  CHECK(KvmFixture::mapped(t.vm(), 0x100000));
}

TEST_CASE(
    "SET_MEMORY_ATTRIBUTES: a change zaps the range in every intersecting slot and flushes TLBs",
    "[kvm][uapi][attributes]") {
  AttrFx t;
  const int vcpu = t.fx.new_vcpu(t.vm_fd);
  Tlb tlb;
  Pwc pwc;
  t.fx.vcpu(vcpu).attach(&tlb, &pwc);
  DetachOnExit detach{t.fx.vcpu(vcpu)};
  t.fx.add_slot(t.vm_fd, 0, 0x100000, 4 * kPage);
  t.fx.add_slot(t.vm_fd, 1, 0x104000, 4 * kPage);
  Vm& vm = t.vm();
  for (uint64_t gpa : {0x100000, 0x103000, 0x104000, 0x107000})
    REQUIRE(vm.page_fault(PageFault{gpa_to_gfn(Gpa(gpa))}).kind == FaultOutcome::kFixed);
  const uint16_t asid = vm.asid();
  tlb.fill(asid, Gpa(0x103000), KvmFixture::mapped_pfn(vm, 0x103000), PageSize::k4K, kPermsRWX);
  tlb.fill(static_cast<uint16_t>(asid + 100), Gpa(0x103000), Pfn(7), PageSize::k4K,
           kPermsRWX);  // another VM's
  pwc.insert(asid, 1, Gpa(0x103000), vm.stage2().root());
  const uint64_t seq = vm.mmu_invalidate_seq();
  // [0x103000, 0x105000) spans both slots.
  REQUIRE(t.set(attrs(0x103000, 2 * kPage, kPriv)).ok());
  CHECK(vm.mmu_invalidate_seq() == seq + 1);  // one invalidation for the whole call
  CHECK(KvmFixture::mapped(vm, 0x100000));
  CHECK_FALSE(KvmFixture::mapped(vm, 0x103000));
  CHECK_FALSE(KvmFixture::mapped(vm, 0x104000));
  CHECK(KvmFixture::mapped(vm, 0x107000));
  CHECK(tlb.peek(asid, Gpa(0x103000)) == nullptr);
  CHECK(tlb.peek(static_cast<uint16_t>(asid + 100), Gpa(0x103000)) != nullptr);
  CHECK(pwc.occupancy() == 0);
  // And back to shared zaps the (now absent) private mappings again: the seq moves.
  REQUIRE(t.set(attrs(0x103000, 2 * kPage, 0)).ok());
  CHECK(vm.mmu_invalidate_seq() == seq + 2);
}

TEST_CASE("SET_MEMORY_ATTRIBUTES to shared zaps the private mappings", "[kvm][uapi][attributes]") {
  AttrFx t;
  const int g = t.fx.new_gmem(t.vm_fd, 16 * kPage);
  t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage, g);
  REQUIRE(t.fx.set_attrs(t.vm_fd, 0x100000, 16 * kPage, kPriv).ok());
  PageFault f;
  f.gfn = gpa_to_gfn(Gpa(0x102000));
  f.is_private = true;
  REQUIRE(t.vm().page_fault(f).kind == FaultOutcome::kFixed);
  CHECK(KvmFixture::mapped_pfn(t.vm(), 0x102000) == t.fx.gmem_pfn(g, 2));
  REQUIRE(t.fx.set_attrs(t.vm_fd, 0x102000, kPage, 0).ok());
  CHECK_FALSE(KvmFixture::mapped(t.vm(), 0x102000));
  // KVM itself never frees either backing on conversion (§11): the gmem folio is still there.
  CHECK(t.fx.gmem(g)->inode().folio(GmemPgoff(2)) != nullptr);
}

TEST_CASE("kvm_range_has_memory_attributes: mask ANDed with the supported attributes",
          "[kvm][attributes]") {
  AttrFx t;
  REQUIRE(t.fx.set_attrs(t.vm_fd, 0x2000, kPage, kPriv).ok());
  Vm& vm = t.vm();
  const GfnRange r{Gfn(2), Gfn(3)};
  CHECK(vm.range_has_memory_attributes(r, ~uint64_t{0}, kPriv));
  CHECK_FALSE(vm.range_has_memory_attributes(r, ~uint64_t{0}, 0));
  CHECK_FALSE(vm.range_has_memory_attributes(r, ~uint64_t{0}, kPriv | 1));  // bit outside the mask
  CHECK(vm.range_has_memory_attributes(r, 0, 0));                           // nothing to compare
  CHECK_FALSE(vm.range_has_memory_attributes(GfnRange{Gfn(1), Gfn(3)}, ~uint64_t{0}, kPriv));
  CHECK(vm.range_has_memory_attributes(GfnRange{Gfn(3), Gfn(100)}, ~uint64_t{0}, 0));
}

// ---- Mixed huge pages (§5 "Hugepage tracking with mixed attributes")
// ------------------------------------

TEST_CASE("Mixed huge pages: tracked per slot at 2M and 1G, recomputed on every set",
          "[kvm][attributes][lpage]") {
  AttrFx t;
  // A 1 GiB slot of lazily populated 4 KiB backing at a 1 GiB-aligned gpa.
  const uint64_t base = 0x40000000;
  t.fx.add_slot(t.vm_fd, 0, base, 1ull << 30);
  const Memslot* s = t.vm().memslots().find_id(0);
  REQUIRE(s != nullptr);
  REQUIRE(s->lpage != nullptr);
  const Gfn g0 = gpa_to_gfn(Gpa(base));
  CHECK_FALSE(s->lpage->is_mixed(PageSize::k2M, g0));
  CHECK_FALSE(s->lpage->is_mixed(PageSize::k1G, g0));
  // One 4K page private: its 2M page and the 1G page are mixed, the neighbour 2M page is not.
  REQUIRE(t.fx.set_attrs(t.vm_fd, base + 0x201000, kPage, kPriv).ok());
  CHECK(s->lpage->is_mixed(PageSize::k2M, g0 + 512));
  CHECK_FALSE(s->lpage->is_mixed(PageSize::k2M, g0));
  CHECK(s->lpage->is_mixed(PageSize::k1G, g0));
  CHECK(s->lpage->mixed_count(PageSize::k2M) == 1);
  // The rest of that 2M page private: uniform again at 2M, still mixed at 1G.
  REQUIRE(t.fx.set_attrs(t.vm_fd, base + 0x200000, k2M, kPriv).ok());
  CHECK_FALSE(s->lpage->is_mixed(PageSize::k2M, g0 + 512));
  CHECK(s->lpage->is_mixed(PageSize::k1G, g0));
  // The whole 1G private: nothing mixed.
  REQUIRE(t.fx.set_attrs(t.vm_fd, base, 1ull << 30, kPriv).ok());
  CHECK(s->lpage->mixed_count(PageSize::k2M) == 0);
  CHECK_FALSE(s->lpage->is_mixed(PageSize::k1G, g0));
  // A range straddling two 2M pages (head and tail) back to shared: both mixed.
  REQUIRE(t.fx.set_attrs(t.vm_fd, base + 0x3ff000, 2 * kPage, 0).ok());
  CHECK(s->lpage->is_mixed(PageSize::k2M, g0 + 1023));
  CHECK(s->lpage->is_mixed(PageSize::k2M, g0 + 1024));
  CHECK(s->lpage->mixed_count(PageSize::k2M) == 2);
  CHECK(s->lpage->is_mixed(PageSize::k1G, g0));
}

TEST_CASE("Mixed huge pages: a slot created over existing attributes starts with them",
          "[kvm][attributes][lpage]") {
  AttrFx t;
  REQUIRE(t.fx.set_attrs(t.vm_fd, 0x205000, kPage, kPriv).ok());  // before any slot
  t.fx.add_slot(t.vm_fd, 0, 0x200000, 2 * k2M);
  const Memslot* s = t.vm().memslots().find_id(0);
  CHECK(s->lpage->is_mixed(PageSize::k2M, gpa_to_gfn(Gpa(0x200000))));
  CHECK_FALSE(s->lpage->is_mixed(PageSize::k2M, gpa_to_gfn(Gpa(0x400000))));
}

TEST_CASE("Mixed huge pages: not tracked for VMs without private memory",
          "[kvm][attributes][lpage]") {
  AttrFx t(kDefault);
  t.fx.add_slot(t.vm_fd, 0, 0x200000, k2M);
  CHECK(t.vm().memslots().find_id(0)->lpage == nullptr);
}

TEST_CASE("Pre-set hook: unmixed huge pages straddling the range join the ongoing invalidation",
          "[kvm][attributes][lpage][invalidation]") {
  KvmFixture fx(any_store());
  fx.register_test_backend();
  const int v = fx.new_vm(kTestVmType);
  fx.add_slot(v, 0, 0x200000, 2 * k2M);
  Vm& vm = fx.vm(v);
  // Observe, from inside the pre phase, which gfns a racing fault would retry on.
  struct Seen {
    bool head_hp = false, tail_hp = false, far = true;
  } seen;
  fx.knobs.on_pre_set = [&](Vm& m, GfnRange, uint64_t) {
    const uint64_t seq = m.mmu_invalidate_seq();
    seen.head_hp =
        m.mmu_invalidate_retry_gfn(seq, gpa_to_gfn(Gpa(0x200000)));  // same 2M page, outside range
    seen.tail_hp =
        m.mmu_invalidate_retry_gfn(seq, gpa_to_gfn(Gpa(0x5ff000)));  // same 2M page, outside range
    seen.far = m.mmu_invalidate_retry_gfn(seq, gpa_to_gfn(Gpa(0x700000)));  // no slot there
  };
  // [0x3ff000, 0x401000) straddles both 2M pages of the slot, which are not mixed yet.
  REQUIRE(fx.set_attrs(v, 0x3ff000, 2 * kPage, kPriv).ok());
  CHECK(seen.head_hp);
  CHECK(seen.tail_hp);
  CHECK_FALSE(seen.far);
  // Now both are mixed: a further change inside them does not widen the range to them.
  REQUIRE(fx.set_attrs(v, 0x3fe000, kPage, kPriv).ok());
  CHECK_FALSE(seen.head_hp);
  CHECK_FALSE(seen.tail_hp);
  CHECK(vm.mmu_invalidate_seq() == 2);
}
