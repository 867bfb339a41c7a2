// KVM_SET_USER_MEMORY_REGION (v1) and KVM_SET_USER_MEMORY_REGION2 (kvm-guest-memfd.md §4): one
// check per validation rule in the spec's order, asserting the errno, plus the delete, modify,
// overlap and guest_memfd bind rules. Every test runs against both attribute stores.
#include <catch2/catch.hpp>

#include "kvm_test_util.h"

using namespace cvmsim;
using namespace cvmsim::kvmtest;

namespace {

// A VM with 64 KiB of anonymous backing ready for a slot at gpa 0x100000.
struct SlotFx {
  KvmFixture fx;
  int vm_fd;
  Hva hva;
  static constexpr uint64_t kGpa = 0x100000, kSize = 16 * kPage;
  explicit SlotFx(uint32_t type = kSwProt)
      : fx(any_store()), vm_fd(fx.new_vm(type)), hva(fx.anon(kSize)) {}
  Vm& vm() { return fx.vm(vm_fd); }
  Status set(const kvm_userspace_memory_region2& r) { return fx.set_region(vm_fd, r); }
  kvm_userspace_memory_region2 good(uint32_t slot = 0) const {
    return region2(slot, kGpa, kSize, hva.value());
  }
};

}  // namespace

// ---- The ioctl handler (§4 first list) --------------------------------------------------------

TEST_CASE("REGION v1 rule: a failed copy -> EFAULT", "[kvm][uapi][memslot]") {
  SlotFx t;
  CHECK(err(t.fx.kvm.set_user_memory_region(t.fx.proc, t.vm_fd, nullptr)) == Errno::kEFAULT);
}

TEST_CASE("REGION v1 rule: KVM_MEM_GUEST_MEMFD is v2-only -> EINVAL", "[kvm][uapi][memslot]") {
  SlotFx t;
  const int g = t.fx.new_gmem(t.vm_fd, SlotFx::kSize);
  kvm_userspace_memory_region v1;
  v1.slot = 0;
  v1.flags = KVM_MEM_GUEST_MEMFD;
  v1.guest_phys_addr = SlotFx::kGpa;
  v1.memory_size = SlotFx::kSize;
  v1.userspace_addr = t.hva.value();
  CHECK(err(t.fx.kvm.set_user_memory_region(t.fx.proc, t.vm_fd, &v1)) == Errno::kEINVAL);
  CHECK(t.vm().memslots().size() == 0);
  // The same request through v2 (which carries the fd) is fine.
  CHECK(t.set(region2(0, SlotFx::kGpa, SlotFx::kSize, t.hva.value(), KVM_MEM_GUEST_MEMFD, g)).ok());
}

TEST_CASE("REGION v1: LOG_DIRTY_PAGES and READONLY are accepted, other bits -> EINVAL",
          "[kvm][uapi][memslot]") {
  SlotFx t;
  kvm_userspace_memory_region v1;
  v1.guest_phys_addr = SlotFx::kGpa;
  v1.memory_size = SlotFx::kSize;
  v1.userspace_addr = t.hva.value();
  v1.flags = 1u << 3;
  CHECK(err(t.fx.kvm.set_user_memory_region(t.fx.proc, t.vm_fd, &v1)) == Errno::kEINVAL);
  v1.flags = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY;
  REQUIRE(t.fx.kvm.set_user_memory_region(t.fx.proc, t.vm_fd, &v1).ok());
  const Memslot* s = t.vm().memslots().find_id(0);
  REQUIRE(s != nullptr);
  CHECK(s->flags == (KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY));
  CHECK_FALSE(s->has_gmem());
}

TEST_CASE("REGION2 rule: a failed copy -> EFAULT", "[kvm][uapi][memslot]") {
  SlotFx t;
  CHECK(err(t.fx.kvm.set_user_memory_region2(t.fx.proc, t.vm_fd, nullptr)) == Errno::kEFAULT);
}

TEST_CASE("REGION2 rule: slot id >= KVM_USER_MEM_SLOTS -> EINVAL", "[kvm][uapi][memslot]") {
  SlotFx t;
  CHECK(err(t.set(t.good(KVM_USER_MEM_SLOTS))) == Errno::kEINVAL);
  CHECK(err(t.set(t.good(0xffff))) == Errno::kEINVAL);
  CHECK(t.vm().memslots().size() == 0);
  CHECK(t.set(t.good(KVM_USER_MEM_SLOTS - 1)).ok());
  CHECK(t.vm().memslots().find_id(KVM_USER_MEM_SLOTS - 1) != nullptr);
}

// ---- check_memory_region_flags
// --------------------------------------------------------------------

TEST_CASE("REGION2 flag rule: unknown flag bits -> EINVAL", "[kvm][uapi][memslot]") {
  SlotFx t;
  for (uint32_t bit : {3u, 4u, 31u}) {
    auto r = t.good();
    r.flags = 1u << bit;
    CAPTURE(bit);
    CHECK(err(t.set(r)) == Errno::kEINVAL);
  }
  CHECK(t.vm().memslots().size() == 0);
}

TEST_CASE("REGION2 flag rule: GUEST_MEMFD with LOG_DIRTY_PAGES -> EINVAL", "[kvm][uapi][memslot]") {
  SlotFx t;
  const int g = t.fx.new_gmem(t.vm_fd, SlotFx::kSize);
  CHECK(err(t.set(region2(0, SlotFx::kGpa, SlotFx::kSize, t.hva.value(),
                          KVM_MEM_GUEST_MEMFD | KVM_MEM_LOG_DIRTY_PAGES, g))) == Errno::kEINVAL);
  CHECK(t.vm().memslots().size() == 0);
  CHECK(t.fx.gmem(g)->bindings().empty());
}

TEST_CASE("REGION2 flag rule: GUEST_MEMFD with READONLY -> EINVAL", "[kvm][uapi][memslot]") {
  SlotFx t;
  const int g = t.fx.new_gmem(t.vm_fd, SlotFx::kSize);
  CHECK(err(t.set(region2(0, SlotFx::kGpa, SlotFx::kSize, t.hva.value(),
                          KVM_MEM_GUEST_MEMFD | KVM_MEM_READONLY, g))) == Errno::kEINVAL);
  CHECK(t.vm().memslots().size() == 0);
  CHECK(t.fx.gmem(g)->bindings().empty());
}

TEST_CASE("REGION2 flag rule: READONLY without kvm_arch_has_readonly_mem -> EINVAL",
          "[kvm][uapi][memslot]") {
  KvmFixture fx(any_store());
  fx.register_test_backend();
  fx.knobs.has_readonly_mem = false;  // as for VMs with protected state
  const int v = fx.new_vm(kTestVmType);
  const Hva h = fx.anon(16 * kPage);
  CHECK(err(fx.set_region(v, region2(0, 0, 16 * kPage, h.value(), KVM_MEM_READONLY))) ==
        Errno::kEINVAL);
  CHECK(fx.set_region(v, region2(0, 0, 16 * kPage, h.value())).ok());
  // Where the backend has read-only memory the flag is fine.
  const int s = fx.new_vm(kSwProt);
  CHECK(fx.set_region(s, region2(0, 0, 16 * kPage, h.value(), KVM_MEM_READONLY)).ok());
}

TEST_CASE("REGION2: GUEST_MEMFD is a valid flag for every VM type (CONFIG_KVM_GUEST_MEMFD)",
          "[kvm][uapi][memslot]") {
  SlotFx t(kDefault);
  const int g = t.fx.new_gmem(t.vm_fd, SlotFx::kSize);
  REQUIRE(
      t.set(region2(0, SlotFx::kGpa, SlotFx::kSize, t.hva.value(), KVM_MEM_GUEST_MEMFD, g)).ok());
  CHECK(t.vm().memslots().find_id(0)->has_gmem());
}

// ---- kvm_set_memory_region general checks 1-7
// ------------------------------------------------------

TEST_CASE("REGION2 check 1: memory_size not page aligned -> EINVAL", "[kvm][uapi][memslot]") {
  SlotFx t;
  auto r = t.good();
  r.memory_size = SlotFx::kSize - 1;
  CHECK(err(t.set(r)) == Errno::kEINVAL);
  r.memory_size = 100;
  CHECK(err(t.set(r)) == Errno::kEINVAL);
  CHECK(t.vm().memslots().size() == 0);
}

TEST_CASE("REGION2 check 2: guest_phys_addr not page aligned -> EINVAL", "[kvm][uapi][memslot]") {
  SlotFx t;
  auto r = t.good();
  r.guest_phys_addr += 8;
  CHECK(err(t.set(r)) == Errno::kEINVAL);
  CHECK(t.vm().memslots().size() == 0);
}

TEST_CASE("REGION2 check 3: userspace_addr unaligned or failing access_ok -> EINVAL, 0 is legal",
          "[kvm][uapi][memslot]") {
  SlotFx t;
  auto r = t.good();
  r.userspace_addr += 0x10;
  CHECK(err(t.set(r)) == Errno::kEINVAL);
  r.userspace_addr = kTaskSize - SlotFx::kSize + kPage;  // crosses TASK_SIZE_MAX
  CHECK(err(t.set(r)) == Errno::kEINVAL);
  r.userspace_addr = ~uint64_t{0} & ~(kPage - 1);  // wraps
  CHECK(err(t.set(r)) == Errno::kEINVAL);
  CHECK(t.vm().memslots().size() == 0);
  // Exactly up to TASK_SIZE_MAX is fine; so is NULL (the selftest's gmem-only slot).
  r.userspace_addr = kTaskSize - SlotFx::kSize;
  CHECK(t.set(r).ok());
  const int g = t.fx.new_gmem(t.vm_fd, SlotFx::kSize);
  CHECK(t.set(region2(1, 0x800000, SlotFx::kSize, 0, KVM_MEM_GUEST_MEMFD, g)).ok());
}

TEST_CASE("REGION2 check 4: guest_memfd_offset unaligned or offset + size overflowing -> EINVAL",
          "[kvm][uapi][memslot]") {
  SlotFx t;
  const int g = t.fx.new_gmem(t.vm_fd, SlotFx::kSize);
  auto r = region2(0, SlotFx::kGpa, SlotFx::kSize, t.hva.value(), KVM_MEM_GUEST_MEMFD, g, 0x800);
  CHECK(err(t.set(r)) == Errno::kEINVAL);
  r.guest_memfd_offset = ~uint64_t{0} & ~(kPage - 1);  // + size wraps
  CHECK(err(t.set(r)) == Errno::kEINVAL);
  CHECK(t.vm().memslots().size() == 0);
  CHECK(t.fx.gmem(g)->bindings().empty());
  // Without KVM_MEM_GUEST_MEMFD the offset (and fd) are not looked at.
  auto plain = t.good();
  plain.guest_memfd_offset = 0x801;
  plain.guest_memfd = 12345;
  CHECK(t.set(plain).ok());
}

TEST_CASE("REGION2 check 5: address-space id >= nr_address_spaces -> EINVAL",
          "[kvm][uapi][memslot]") {
  SlotFx t;
  auto r = t.good();
  r.slot = (2u << 16) | 0;
  CHECK(err(t.set(r)) == Errno::kEINVAL);
  r.slot = (0xffffu << 16) | 3;
  CHECK(err(t.set(r)) == Errno::kEINVAL);
  CHECK(t.vm().memslots(0).size() == 0);
  CHECK(t.vm().memslots(1).size() == 0);
  // Address space 1 (x86 SMM) exists, and its slots are apart from address space 0's: the same
  // gpa range does not overlap across address spaces.
  r.slot = (1u << 16) | 0;
  REQUIRE(t.set(r).ok());
  CHECK(t.vm().memslots(1).size() == 1);
  CHECK(t.set(t.good(0)).ok());
  CHECK(t.vm().memslots(0).size() == 1);
}

TEST_CASE("REGION2 check 6: guest_phys_addr + memory_size overflowing -> EINVAL",
          "[kvm][uapi][memslot]") {
  SlotFx t;
  auto r = t.good();
  r.guest_phys_addr = ~uint64_t{0} & ~(kPage - 1);
  CHECK(err(t.set(r)) == Errno::kEINVAL);
  CHECK(t.vm().memslots().size() == 0);
}

TEST_CASE("REGION2 check 7: npages > KVM_MEM_MAX_NR_PAGES -> EINVAL", "[kvm][uapi][memslot]") {
  SlotFx t(kDefault);
  const uint64_t uaddr = 0x10000000;
  auto r = region2(0, 0, (KVM_MEM_MAX_NR_PAGES + 1) * kPage, uaddr);
  CHECK(err(t.set(r)) == Errno::kEINVAL);
  CHECK(t.vm().memslots().size() == 0);
  r.memory_size = KVM_MEM_MAX_NR_PAGES * kPage;  // the limit itself is fine
  REQUIRE(t.set(r).ok());
  CHECK(t.vm().memslots().find_id(0)->npages == KVM_MEM_MAX_NR_PAGES);
}

TEST_CASE("REGION2: the general checks come before the overlap and bind rules",
          "[kvm][uapi][memslot]") {
  SlotFx t;
  REQUIRE(t.set(t.good(0)).ok());
  // Overlapping slot 0 and gpa unaligned: check 2 answers, not EEXIST.
  auto r = t.good(1);
  r.guest_phys_addr += 8;
  CHECK(err(t.set(r)) == Errno::kEINVAL);
  // Overlapping and naming a closed fd: EEXIST (the overlap check) before EBADF (the bind).
  CHECK(err(t.set(region2(1, SlotFx::kGpa, SlotFx::kSize, t.hva.value(), KVM_MEM_GUEST_MEMFD,
                          99))) == Errno::kEEXIST);
}

// ---- Delete
// ---------------------------------------------------------------------------------------

TEST_CASE("REGION2 delete: a missing slot -> EINVAL", "[kvm][uapi][memslot]") {
  SlotFx t;
  CHECK(err(t.fx.delete_slot(t.vm_fd, 0)) == Errno::kEINVAL);
  REQUIRE(t.set(t.good(0)).ok());
  CHECK(t.fx.delete_slot(t.vm_fd, 0).ok());
  CHECK(t.vm().memslots().size() == 0);
  CHECK(err(t.fx.delete_slot(t.vm_fd, 0)) == Errno::kEINVAL);  // deleted twice
}

TEST_CASE("REGION2 delete: flags are checked, guest_memfd and offset ignored",
          "[kvm][uapi][memslot]") {
  SlotFx t;
  const int g = t.fx.new_gmem(t.vm_fd, SlotFx::kSize);
  REQUIRE(
      t.set(region2(0, SlotFx::kGpa, SlotFx::kSize, t.hva.value(), KVM_MEM_GUEST_MEMFD, g)).ok());
  // Unknown flags and GUEST_MEMFD|LOG_DIRTY_PAGES are still refused on delete.
  CHECK(err(t.set(region2(0, 0, 0, 0, 1u << 5))) == Errno::kEINVAL);
  CHECK(err(t.set(region2(0, 0, 0, 0, KVM_MEM_GUEST_MEMFD | KVM_MEM_LOG_DIRTY_PAGES, -1))) ==
        Errno::kEINVAL);
  REQUIRE(t.vm().memslots().size() == 1);
  // The selftest's delete: flags = GUEST_MEMFD, fd = -1.
  REQUIRE(t.set(region2(0, 0, 0, 0, KVM_MEM_GUEST_MEMFD, -1)).ok());
  CHECK(t.vm().memslots().size() == 0);
  CHECK(t.fx.gmem(g)->bindings().empty());  // unbound
}

// ---- Modify
// ---------------------------------------------------------------------------------------

TEST_CASE("REGION2 modify: a guest_memfd slot is immutable -> EINVAL", "[kvm][uapi][memslot]") {
  SlotFx t;
  const int g = t.fx.new_gmem(t.vm_fd, 2 * SlotFx::kSize);
  const auto orig = region2(0, SlotFx::kGpa, SlotFx::kSize, t.hva.value(), KVM_MEM_GUEST_MEMFD, g);
  REQUIRE(t.set(orig).ok());
  // Even the identical request: it carries KVM_MEM_GUEST_MEMFD (§4).
  CHECK(err(t.set(orig)) == Errno::kEINVAL);
  auto moved = orig;
  moved.guest_phys_addr = 0x800000;
  CHECK(err(t.set(moved)) == Errno::kEINVAL);
  // A request without the flag (a MOVE in the baseline code) is refused too: the documented intent.
  moved.flags = 0;
  CHECK(err(t.set(moved)) == Errno::kEINVAL);
  auto flags_only = orig;
  flags_only.flags = 0;
  CHECK(err(t.set(flags_only)) == Errno::kEINVAL);
  const Memslot* s = t.vm().memslots().find_id(0);
  REQUIRE(s != nullptr);
  CHECK(s->base_gfn == gpa_to_gfn(Gpa(SlotFx::kGpa)));
  CHECK(s->flags == KVM_MEM_GUEST_MEMFD);
}

TEST_CASE("REGION2 modify: userspace_addr, npages or READONLY change -> EINVAL",
          "[kvm][uapi][memslot]") {
  SlotFx t;
  REQUIRE(t.set(t.good(0)).ok());
  auto r = t.good(0);
  r.userspace_addr += kPage;
  CHECK(err(t.set(r)) == Errno::kEINVAL);
  r = t.good(0);
  r.memory_size -= kPage;
  CHECK(err(t.set(r)) == Errno::kEINVAL);
  r = t.good(0);
  r.flags = KVM_MEM_READONLY;
  CHECK(err(t.set(r)) == Errno::kEINVAL);
  const Memslot* s = t.vm().memslots().find_id(0);
  CHECK(s->npages == 16);
  CHECK(s->flags == 0);
  CHECK(s->userspace_addr == t.hva);
}

TEST_CASE("REGION2 modify: an identical request is a no-op", "[kvm][uapi][memslot]") {
  SlotFx t;
  REQUIRE(t.set(t.good(0)).ok());
  Vm& vm = t.vm();
  REQUIRE(vm.page_fault(PageFault{gpa_to_gfn(Gpa(SlotFx::kGpa))}).kind == FaultOutcome::kFixed);
  const uint64_t seq = vm.mmu_invalidate_seq();
  CHECK(t.set(t.good(0)).ok());
  CHECK(vm.mmu_invalidate_seq() == seq);        // no invalidation
  CHECK(KvmFixture::mapped(vm, SlotFx::kGpa));  // the mapping survives
}

TEST_CASE("REGION2 modify: MOVE changes the base gfn and zaps the old mappings",
          "[kvm][uapi][memslot]") {
  SlotFx t;
  REQUIRE(t.set(t.good(0)).ok());
  Vm& vm = t.vm();
  REQUIRE(vm.page_fault(PageFault{gpa_to_gfn(Gpa(SlotFx::kGpa))}).kind == FaultOutcome::kFixed);
  const Pfn host = KvmFixture::mapped_pfn(vm, SlotFx::kGpa);
  const uint64_t seq = vm.mmu_invalidate_seq();
  auto r = t.good(0);
  r.guest_phys_addr = 0x400000;
  REQUIRE(t.set(r).ok());
  CHECK(vm.memslots().find_id(0)->base_gfn == gpa_to_gfn(Gpa(0x400000)));
  CHECK(vm.memslots().find_gfn(gpa_to_gfn(Gpa(SlotFx::kGpa))) == nullptr);
  CHECK_FALSE(KvmFixture::mapped(vm, SlotFx::kGpa));
  CHECK(vm.mmu_invalidate_seq() > seq);
  // The moved slot maps the same host page at its new gpa.
  REQUIRE(vm.page_fault(PageFault{gpa_to_gfn(Gpa(0x400000))}).kind == FaultOutcome::kFixed);
  CHECK(KvmFixture::mapped_pfn(vm, 0x400000) == host);
  // Moving by one page overlaps only itself: fine.
  r.guest_phys_addr = 0x401000;
  CHECK(t.set(r).ok());
}

TEST_CASE("REGION2 modify: a flags-only change (dirty logging) is accepted",
          "[kvm][uapi][memslot]") {
  SlotFx t;
  REQUIRE(t.set(t.good(0)).ok());
  auto r = t.good(0);
  r.flags = KVM_MEM_LOG_DIRTY_PAGES;
  REQUIRE(t.set(r).ok());
  CHECK(t.vm().memslots().find_id(0)->flags == KVM_MEM_LOG_DIRTY_PAGES);
  CHECK(t.vm().memslots().find_id(0)->base_gfn == gpa_to_gfn(Gpa(SlotFx::kGpa)));
}

// ---- Overlap
// ----------------------------------------------------------------------------------------

TEST_CASE("REGION2 overlap: CREATE over another slot's gfns -> EEXIST", "[kvm][uapi][memslot]") {
  SlotFx t;
  REQUIRE(t.set(t.good(0)).ok());  // [0x100000, 0x110000)
  const Hva h = t.fx.anon(64 * kPage);
  for (auto [gpa, size] : {std::pair<uint64_t, uint64_t>{0x100000, 16 * kPage},  // same
                           {0x0ff000, 2 * kPage},                                // head
                           {0x10f000, 4 * kPage},                                // tail
                           {0x104000, kPage},                                    // inside
                           {0x0f0000, 64 * kPage}}) {                            // around
    CAPTURE(gpa, size);
    CHECK(err(t.set(region2(1, gpa, size, h.value()))) == Errno::kEEXIST);
  }
  CHECK(t.vm().memslots().size() == 1);
  // Adjacent on both sides is fine.
  CHECK(t.set(region2(1, 0x0ff000, kPage, h.value())).ok());
  CHECK(t.set(region2(2, 0x110000, kPage, h.value())).ok());
}

TEST_CASE("REGION2 overlap: MOVE onto another slot's gfns -> EEXIST", "[kvm][uapi][memslot]") {
  SlotFx t;
  REQUIRE(t.set(t.good(0)).ok());
  const Hva h = t.fx.anon(16 * kPage);
  REQUIRE(t.set(region2(1, 0x200000, 16 * kPage, h.value())).ok());
  CHECK(err(t.set(region2(1, 0x10f000, 16 * kPage, h.value()))) == Errno::kEEXIST);
  CHECK(t.vm().memslots().find_id(1)->base_gfn == gpa_to_gfn(Gpa(0x200000)));
}

// ---- kvm_gmem_bind
// ------------------------------------------------------------------------------------

TEST_CASE("REGION2 bind rule: fget fails -> EBADF", "[kvm][uapi][memslot][bind]") {
  SlotFx t;
  CHECK(err(t.set(region2(0, SlotFx::kGpa, SlotFx::kSize, t.hva.value(), KVM_MEM_GUEST_MEMFD,
                          99))) == Errno::kEBADF);
  CHECK(err(t.set(region2(0, SlotFx::kGpa, SlotFx::kSize, t.hva.value(), KVM_MEM_GUEST_MEMFD,
                          -1))) == Errno::kEBADF);
  const int g = t.fx.new_gmem(t.vm_fd, SlotFx::kSize);
  REQUIRE(t.fx.proc.close(g).ok());
  CHECK(err(t.set(region2(0, SlotFx::kGpa, SlotFx::kSize, t.hva.value(), KVM_MEM_GUEST_MEMFD,
                          g))) == Errno::kEBADF);
  CHECK(t.vm().memslots().size() == 0);
}

TEST_CASE("REGION2 bind rule: a file that is not a guest_memfd -> EINVAL",
          "[kvm][uapi][memslot][bind]") {
  SlotFx t;
  const int memfd = t.fx.proc.open_other("memfd");
  for (int fd : {memfd, t.vm_fd, t.fx.kvm_fd, t.fx.new_vcpu(t.vm_fd)}) {
    CAPTURE(fd);
    CHECK(err(t.set(region2(0, SlotFx::kGpa, SlotFx::kSize, t.hva.value(), KVM_MEM_GUEST_MEMFD,
                            fd))) == Errno::kEINVAL);
  }
  CHECK(t.vm().memslots().size() == 0);
}

TEST_CASE("REGION2 bind rule: another VM's guest_memfd -> EINVAL", "[kvm][uapi][memslot][bind]") {
  SlotFx t;
  const int other_vm = t.fx.new_vm(kSwProt);
  const int g = t.fx.new_gmem(other_vm, SlotFx::kSize);
  CHECK(err(t.set(region2(0, SlotFx::kGpa, SlotFx::kSize, t.hva.value(), KVM_MEM_GUEST_MEMFD,
                          g))) == Errno::kEINVAL);
  CHECK(t.vm().memslots().size() == 0);
  CHECK(t.fx.gmem(g)->bindings().empty());
  // Its own VM binds it.
  CHECK(t.fx.set_region(other_vm, region2(0, SlotFx::kGpa, SlotFx::kSize, t.hva.value(),
                                          KVM_MEM_GUEST_MEMFD, g))
            .ok());
}

TEST_CASE("REGION2 bind rule: offset negative or offset + size > i_size -> EINVAL",
          "[kvm][uapi][memslot][bind]") {
  SlotFx t;
  const int g = t.fx.new_gmem(t.vm_fd, SlotFx::kSize);
  // A "negative" loff_t that passes the memslot's own overflow check (check 4).
  CHECK(err(t.set(region2(0, SlotFx::kGpa, SlotFx::kSize, t.hva.value(), KVM_MEM_GUEST_MEMFD, g,
                          1ull << 63))) == Errno::kEINVAL);
  CHECK(err(t.set(region2(0, SlotFx::kGpa, SlotFx::kSize, t.hva.value(), KVM_MEM_GUEST_MEMFD, g,
                          kPage))) == Errno::kEINVAL);
  CHECK(err(t.set(region2(0, SlotFx::kGpa, 2 * SlotFx::kSize, t.hva.value(), KVM_MEM_GUEST_MEMFD,
                          g))) == Errno::kEINVAL);
  CHECK(t.vm().memslots().size() == 0);
  // Up to i_size exactly is fine.
  CHECK(
      t.set(region2(0, SlotFx::kGpa, 4 * kPage, t.hva.value(), KVM_MEM_GUEST_MEMFD, g, 12 * kPage))
          .ok());
  CHECK(t.vm().memslots().find_id(0)->gmem.pgoff == GmemPgoff(12));
}

TEST_CASE("REGION2 bind rule: a file range overlapping an existing binding -> EINVAL",
          "[kvm][uapi][memslot][bind]") {
  SlotFx t;
  const int g = t.fx.new_gmem(t.vm_fd, 32 * kPage);
  const Hva h = t.fx.anon(32 * kPage);
  REQUIRE(t.set(region2(0, 0x100000, 8 * kPage, h.value(), KVM_MEM_GUEST_MEMFD, g, 8 * kPage))
              .ok());  // [8,16)
  CHECK(err(t.set(region2(1, 0x200000, 8 * kPage, h.value(), KVM_MEM_GUEST_MEMFD, g,
                          12 * kPage))) == Errno::kEINVAL);
  CHECK(err(t.set(region2(1, 0x200000, 16 * kPage, h.value(), KVM_MEM_GUEST_MEMFD, g, 0))) ==
        Errno::kEINVAL);
  CHECK(t.vm().memslots().size() == 1);
  CHECK(t.fx.gmem(g)->bindings().size() == 1);
}

TEST_CASE("REGION2 bind: the same file at disjoint offsets backs several slots",
          "[kvm][uapi][memslot][bind]") {
  SlotFx t;
  const int g = t.fx.new_gmem(t.vm_fd, 32 * kPage);
  const Hva h = t.fx.anon(32 * kPage);
  REQUIRE(
      t.set(region2(0, 0x100000, 8 * kPage, h.value(), KVM_MEM_GUEST_MEMFD, g, 8 * kPage)).ok());
  REQUIRE(t.set(region2(1, 0x200000, 8 * kPage, h.value(), KVM_MEM_GUEST_MEMFD, g, 0)).ok());
  REQUIRE(
      t.set(region2(2, 0x300000, 16 * kPage, h.value(), KVM_MEM_GUEST_MEMFD, g, 16 * kPage)).ok());
  CHECK(t.fx.gmem(g)->bindings().size() == 3);
  CHECK(t.vm().memslots().find_id(0)->gmem.pgoff == GmemPgoff(8));
  CHECK(t.vm().memslots().find_id(1)->gmem.pgoff == GmemPgoff(0));
  CHECK(t.vm().memslots().find_id(2)->gmem.pgoff == GmemPgoff(16));
  // Deleting a slot frees its file range for another binding.
  REQUIRE(t.fx.delete_slot(t.vm_fd, 0).ok());
  CHECK(t.set(region2(3, 0x400000, 8 * kPage, h.value(), KVM_MEM_GUEST_MEMFD, g, 8 * kPage)).ok());
}

TEST_CASE("REGION2 bind: a slot is GMEM_ONLY iff its file has GUEST_MEMFD_FLAG_MMAP",
          "[kvm][uapi][memslot][bind]") {
  SlotFx t;
  const int plain = t.fx.new_gmem(t.vm_fd, SlotFx::kSize);
  const int mmap = t.fx.new_gmem(t.vm_fd, SlotFx::kSize, GUEST_MEMFD_FLAG_MMAP);
  REQUIRE(
      t.set(region2(0, 0x100000, SlotFx::kSize, t.hva.value(), KVM_MEM_GUEST_MEMFD, plain)).ok());
  REQUIRE(
      t.set(region2(1, 0x200000, SlotFx::kSize, t.hva.value(), KVM_MEM_GUEST_MEMFD, mmap)).ok());
  CHECK_FALSE(t.vm().memslots().find_id(0)->gmem_only);
  CHECK(t.vm().memslots().find_id(1)->gmem_only);
}
