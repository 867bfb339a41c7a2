// guest_memfd lifetime rules at the facade level (kvm-guest-memfd.md §6.2, §4 bind, §13.5-13.7):
// the file pins its VM, memslots do not pin the file, closing the file zaps every bound slot and
// leaves dead slots, one file backs several slots, binding is per VM, and the guest never sees
// stale data (zero on first hand-out, zeros after a punch). Every test runs against both
// attribute stores.
#include <catch2/catch.hpp>

#include "kvm_test_util.h"

using namespace cvmsim;
using namespace cvmsim::kvmtest;

namespace {

constexpr int KEEP = FALLOC_FL_KEEP_SIZE;
constexpr int PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;

bool listed(const Kvm& kvm, const Vm* vm) {
  for (const auto& v : kvm.vms())
    if (v.get() == vm) return true;
  return false;
}

PageFault private_fault(uint64_t gpa) {
  PageFault f;
  f.gfn = gpa_to_gfn(Gpa(gpa));
  f.is_private = true;
  return f;
}

}  // namespace

TEST_CASE("Lifetime: the guest_memfd pins its VM after the VM fd is closed", "[kvm][lifetime]") {
  KvmFixture fx(any_store());
  const int v = fx.new_vm(kSwProt);
  Vm* vm = &fx.vm(v);
  const int g = fx.new_gmem(v, 16 * kPage);
  fx.add_slot(v, 0, 0x100000, 16 * kPage, g);
  CHECK(vm->users() == 2);
  REQUIRE(fx.proc.close(v).ok());
  // The VM lives on: listed, not dead, its memslot still bound.
  CHECK(listed(fx.kvm, vm));
  CHECK(vm->users() == 1);
  CHECK_FALSE(vm->dead());
  CHECK(vm->memslots().find_id(0)->gmem.file == fx.gmem(g).get());
  // The conversion selftest's fallocate after kvm_vm_free(): punch and allocate succeed.
  CHECK(fx.kvm.fallocate(fx.proc, g, PUNCH, 0, 16 * kPage).ok());
  CHECK(fx.kvm.fallocate(fx.proc, g, KEEP, 0, 16 * kPage).ok());
  CHECK(fx.gmem(g)->inode().nr_folios() == 16);
  // No VM ioctl can reach it any more.
  CHECK(err(fx.set_attrs(v, 0, kPage, kPriv)) == Errno::kEBADF);
  // The last reference goes with the file: the VM is destroyed.
  REQUIRE(fx.proc.close(g).ok());
  CHECK_FALSE(listed(fx.kvm, vm));
  CHECK(fx.kvm.vms().empty());
}

TEST_CASE("Lifetime: a vCPU fd pins the VM as well", "[kvm][lifetime]") {
  KvmFixture fx(any_store());
  const int v = fx.new_vm(kDefault);
  Vm* vm = &fx.vm(v);
  const int c = fx.new_vcpu(v);
  REQUIRE(fx.proc.close(v).ok());
  CHECK(listed(fx.kvm, vm));
  REQUIRE(fx.proc.close(c).ok());
  CHECK_FALSE(listed(fx.kvm, vm));
}

TEST_CASE("Lifetime: a guest_memfd passed to another process keeps the VM alive",
          "[kvm][lifetime]") {
  KvmFixture fx(any_store());
  const int v = fx.new_vm(kSwProt);
  Vm* vm = &fx.vm(v);
  const int g = fx.new_gmem(v, 16 * kPage);
  OtherProcess other(fx.kvm, fx.mem, fx.frames, "other");
  auto g2 = other.proc.receive_fd(fx.proc, g);
  REQUIRE(g2.ok());
  REQUIRE(fx.proc.close(g).ok());
  REQUIRE(fx.proc.close(v).ok());
  CHECK(listed(fx.kvm, vm));
  // File operations do not go through the VM's mm check.
  CHECK(fx.kvm.fallocate(other.proc, *g2, KEEP, 0, kPage).ok());
  REQUIRE(other.proc.close(*g2).ok());
  CHECK_FALSE(listed(fx.kvm, vm));
}

TEST_CASE("Lifetime: memslots do not pin the guest_memfd, closing it leaves dead slots",
          "[kvm][lifetime]") {
  KvmFixture fx(any_store());
  const int v = fx.new_vm(kSwProt);
  Vm& vm = fx.vm(v);
  const int g = fx.new_gmem(v, 16 * kPage);
  fx.add_slot(v, 0, 0x100000, 8 * kPage, g, 0);
  fx.add_slot(v, 1, 0x300000, 8 * kPage, g, 8 * kPage);
  const std::shared_ptr<GmemFile> file = fx.gmem(g);  // keeps the C++ object inspectable only
  CHECK(file->refcount() == 1);                       // the fd alone: the slots took none
  REQUIRE(fx.proc.close(g).ok());
  CHECK(file->released());
  CHECK(file->inode().evicted());  // the last file of the inode: the memory went too
  for (uint16_t id : {0, 1}) {
    const Memslot* s = vm.memslots().find_id(id);
    REQUIRE(s != nullptr);
    CHECK(s->has_gmem());
    CHECK(s->gmem.file == nullptr);
  }
  CHECK(vm.page_fault(private_fault(0x100000)).kind == FaultOutcome::kMemoryFaultExit);  // mismatch
  REQUIRE(fx.set_attrs(v, 0x100000, 8 * kPage, kPriv).ok());
  const FaultOutcome o = vm.page_fault(private_fault(0x100000));
  CHECK(o.kind == FaultOutcome::kMemoryFaultExit);
  CHECK(o.err == Errno::kEFAULT);
  // Dead slots delete fine, and a new file can take their place.
  REQUIRE(fx.delete_slot(v, 0).ok());
  REQUIRE(fx.delete_slot(v, 1).ok());
  const int g2 = fx.new_gmem(v, 8 * kPage);
  fx.add_slot(v, 0, 0x100000, 8 * kPage, g2);
  CHECK(vm.page_fault(private_fault(0x100000)).kind == FaultOutcome::kFixed);
}

TEST_CASE("Lifetime: closing the guest_memfd zaps the mappings of every bound slot",
          "[kvm][lifetime]") {
  KvmFixture fx(any_store());
  const int v = fx.new_vm(kSwProt);
  Vm& vm = fx.vm(v);
  const int c = fx.new_vcpu(v);
  Tlb tlb;
  fx.vcpu(c).attach(&tlb, nullptr);
  DetachOnExit detach{fx.vcpu(c)};
  const int g = fx.new_gmem(v, 16 * kPage);
  fx.add_slot(v, 0, 0x100000, 8 * kPage, g, 0);
  fx.add_slot(v, 1, 0x300000, 8 * kPage, g, 8 * kPage);
  fx.add_slot(v, 2, 0x500000, 8 * kPage);  // no guest_memfd
  REQUIRE(fx.set_attrs(v, 0x100000, 8 * kPage, kPriv).ok());
  REQUIRE(fx.set_attrs(v, 0x300000, 8 * kPage, kPriv).ok());
  for (uint64_t gpa : {0x100000, 0x107000, 0x300000, 0x305000})
    REQUIRE(vm.page_fault(private_fault(gpa)).kind == FaultOutcome::kFixed);
  PageFault shared;
  shared.gfn = gpa_to_gfn(Gpa(0x500000));
  REQUIRE(vm.page_fault(shared).kind == FaultOutcome::kFixed);
  tlb.fill(vm.asid(), Gpa(0x305000), KvmFixture::mapped_pfn(vm, 0x305000), PageSize::k4K,
           kPermsRWX);
  const uint64_t seq = vm.mmu_invalidate_seq();
  REQUIRE(fx.proc.close(g).ok());
  CHECK(KvmFixture::leaf_count(vm) == 1);  // only the non-gmem slot's leaf is left
  CHECK(KvmFixture::mapped(vm, 0x500000));
  CHECK(tlb.peek(vm.asid(), Gpa(0x305000)) == nullptr);
  CHECK(vm.mmu_invalidate_seq() == seq + 1);
}

TEST_CASE("Lifetime: one guest_memfd backs several slots at their own file offsets",
          "[kvm][lifetime]") {
  KvmFixture fx(any_store());
  const int v = fx.new_vm(kSwProt);
  Vm& vm = fx.vm(v);
  const int g = fx.new_gmem(v, 16 * kPage);
  fx.add_slot(v, 0, 0x100000, 8 * kPage, g, 8 * kPage);
  fx.add_slot(v, 1, 0x300000, 8 * kPage, g, 0);
  REQUIRE(fx.set_attrs(v, 0x100000, 0x300000, kPriv).ok());  // covers both slots and the gap
  REQUIRE(vm.page_fault(private_fault(0x101000)).kind == FaultOutcome::kFixed);
  REQUIRE(vm.page_fault(private_fault(0x301000)).kind == FaultOutcome::kFixed);
  CHECK(KvmFixture::mapped_pfn(vm, 0x101000) == fx.gmem_pfn(g, 9));
  CHECK(KvmFixture::mapped_pfn(vm, 0x301000) == fx.gmem_pfn(g, 1));
  CHECK(KvmFixture::mapped_pfn(vm, 0x101000) != KvmFixture::mapped_pfn(vm, 0x301000));
  // A punch of file pages [0, 10) zaps both, each through its own binding.
  REQUIRE(fx.kvm.fallocate(fx.proc, g, PUNCH, 0, 10 * kPage).ok());
  CHECK(KvmFixture::leaf_count(vm) == 0);
}

TEST_CASE("Lifetime: a guest_memfd binds only to the VM that created it", "[kvm][lifetime]") {
  KvmFixture fx(any_store());
  const int a = fx.new_vm(kSwProt), b = fx.new_vm(kSwProt);
  const int g = fx.new_gmem(a, 16 * kPage);
  const Hva h = fx.anon(16 * kPage);
  CHECK(err(fx.set_region(b, region2(0, 0x100000, 16 * kPage, h.value(), KVM_MEM_GUEST_MEMFD,
                                     g))) == Errno::kEINVAL);
  // Closing the creator's fd does not change that: the file still names VM a.
  REQUIRE(fx.proc.close(a).ok());
  CHECK(err(fx.set_region(b, region2(0, 0x100000, 16 * kPage, h.value(), KVM_MEM_GUEST_MEMFD,
                                     g))) == Errno::kEINVAL);
  CHECK(fx.vm(b).memslots().size() == 0);
}

TEST_CASE("Lifetime: the guest is handed zeroed guest_memfd pages, not what the frame held",
          "[kvm][lifetime][zero]") {
  KvmFixture fx(any_store());
  const int v = fx.new_vm(kSwProt);
  Vm& vm = fx.vm(v);
  const int g = fx.new_gmem(v, 16 * kPage);
  fx.add_slot(v, 0, 0x100000, 16 * kPage, g);
  REQUIRE(fx.set_attrs(v, 0x100000, 16 * kPage, kPriv).ok());
  // Allocation does not zero: a stale frame sits in the page cache.
  REQUIRE(fx.kvm.fallocate(fx.proc, g, KEEP, 0, 4 * kPage).ok());
  const Pfn p = fx.gmem_pfn(g, 2);
  fx.scribble(p, 0xa5);
  CHECK_FALSE(fx.gmem(g)->inode().folio(GmemPgoff(2))->uptodate);
  REQUIRE(vm.page_fault(private_fault(0x102000)).kind == FaultOutcome::kFixed);
  CHECK(KvmFixture::mapped_pfn(vm, 0x102000) == p);
  CHECK(fx.frame_is(p, 0));
  // Once uptodate it is not zeroed again: the guest's data stays across refaults.
  fx.scribble(p, 0x3c);
  REQUIRE(fx.set_attrs(v, 0x102000, kPage, 0).ok());  // zaps the leaf; KVM keeps the folio
  REQUIRE(fx.set_attrs(v, 0x102000, kPage, kPriv).ok());
  REQUIRE(vm.page_fault(private_fault(0x102000)).kind == FaultOutcome::kFixed);
  CHECK(KvmFixture::mapped_pfn(vm, 0x102000) == p);
  CHECK(fx.frame_is(p, 0x3c));
}

TEST_CASE("Lifetime: after a punch-hole the next fault sees a zeroed page",
          "[kvm][lifetime][zero]") {
  KvmFixture fx(any_store());
  const int v = fx.new_vm(kSwProt);
  Vm& vm = fx.vm(v);
  const int g = fx.new_gmem(v, 16 * kPage);
  fx.add_slot(v, 0, 0x100000, 16 * kPage, g);
  REQUIRE(fx.set_attrs(v, 0x100000, 16 * kPage, kPriv).ok());
  REQUIRE(vm.page_fault(private_fault(0x105000)).kind == FaultOutcome::kFixed);
  const Pfn before = KvmFixture::mapped_pfn(vm, 0x105000);
  fx.scribble(before, 0x77);  // the guest's private data
  REQUIRE(fx.kvm.fallocate(fx.proc, g, PUNCH, 5 * kPage, kPage).ok());
  CHECK_FALSE(KvmFixture::mapped(vm, 0x105000));
  CHECK(fx.gmem(g)->inode().folio(GmemPgoff(5)) == nullptr);
  REQUIRE(vm.page_fault(private_fault(0x105000)).kind == FaultOutcome::kFixed);
  const Pfn after = KvmFixture::mapped_pfn(vm, 0x105000);
  CHECK(after == fx.gmem_pfn(g, 5));
  CHECK(fx.frame_is(after, 0));  // whether or not the allocator handed back the same frame
}

TEST_CASE("Lifetime: when everything is closed every frame is back with the allocator",
          "[kvm][lifetime]") {
  KvmFixture fx(any_store());
  const uint64_t free0 = fx.frames.free_frames();
  {
    const int v = fx.new_vm(kSwProt);
    Vm& vm = fx.vm(v);
    const int c = fx.new_vcpu(v);
    const int g = fx.new_gmem(v, 16 * kPage);
    const Hva h = fx.add_slot(v, 0, 0x100000, 16 * kPage, g);
    REQUIRE(fx.set_attrs(v, 0x100000, 8 * kPage, kPriv).ok());
    for (uint64_t i = 0; i < 16; ++i) {
      PageFault f;
      f.gfn = gpa_to_gfn(Gpa(0x100000 + i * kPage));
      f.is_private = i < 8;
      REQUIRE(vm.page_fault(f).kind == FaultOutcome::kFixed);
    }
    CHECK(fx.frames.free_frames() < free0);
    REQUIRE(fx.proc.close(v).ok());
    REQUIRE(fx.proc.close(c).ok());
    REQUIRE(fx.proc.close(g).ok());
    CHECK(fx.kvm.vms().empty());
    REQUIRE(fx.mm.munmap(h, 16 * kPage).ok());
  }
  CHECK(fx.frames.free_frames() == free0);
}
