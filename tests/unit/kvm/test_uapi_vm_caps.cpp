// KVM_CREATE_VM, KVM_CHECK_EXTENSION (kvm-guest-memfd.md §2), KVM_ENABLE_CAP (§2, §11) and the
// generic VM-ioctl check (§3 rule 1) through the uAPI facade. One check per rule, asserting the
// errno; every test runs against both attribute stores.
#include <catch2/catch.hpp>

#include "kvm_test_util.h"

using namespace cvmsim;
using namespace cvmsim::kvmtest;

// ---- KVM_CREATE_VM --------------------------------------------------------------------------

TEST_CASE("KVM_CREATE_VM rule: an unknown or unregistered VM type -> EINVAL",
          "[kvm][uapi][create_vm]") {
  KvmFixture fx(any_store());
  for (uint32_t type : {KVM_X86_SEV_VM, KVM_X86_SEV_ES_VM, KVM_X86_SNP_VM, KVM_X86_TDX_VM,
                        KVM_VM_TYPE_ARM_PROTECTED, 99u, kTestVmType}) {
    CAPTURE(type);
    CHECK(err(fx.kvm.create_vm(fx.proc, fx.kvm_fd, type, "x", vm_principal(0), 1)) ==
          Errno::kEINVAL);
  }
  CHECK(fx.kvm.vms().empty());
  // The registered types are creatable, and a type becomes creatable when its backend registers.
  CHECK(fx.kvm.create_vm(fx.proc, fx.kvm_fd, kDefault, "d", vm_principal(0), 1).ok());
  CHECK(fx.kvm.create_vm(fx.proc, fx.kvm_fd, kSwProt, "s", vm_principal(1), 2).ok());
  fx.register_test_backend();
  CHECK(fx.kvm.create_vm(fx.proc, fx.kvm_fd, kTestVmType, "t", vm_principal(2), 3).ok());
  CHECK(fx.kvm.vms().size() == 3);
}

TEST_CASE("KVM_CREATE_VM rule: only a /dev/kvm fd creates VMs", "[kvm][uapi][create_vm]") {
  KvmFixture fx(any_store());
  const int vm_fd = fx.new_vm(kDefault);
  const int other = fx.proc.open_other("memfd");
  CHECK(err(fx.kvm.create_vm(fx.proc, vm_fd, kDefault, "x", vm_principal(1), 2)) == Errno::kENOTTY);
  CHECK(err(fx.kvm.create_vm(fx.proc, other, kDefault, "x", vm_principal(1), 2)) == Errno::kENOTTY);
  CHECK(err(fx.kvm.create_vm(fx.proc, 77, kDefault, "x", vm_principal(1), 2)) == Errno::kEBADF);
  CHECK(fx.kvm.vms().size() == 1);
}

TEST_CASE("KVM_CREATE_VM: the new fd is the lowest free one and names the new VM",
          "[kvm][uapi][create_vm]") {
  KvmFixture fx(any_store());
  CHECK(fx.kvm_fd == 3);
  const int a = fx.new_vm(kDefault);
  const int b = fx.new_vm(kSwProt);
  CHECK(a == 4);
  CHECK(b == 5);
  CHECK(fx.vm(a).type() == kDefault);
  CHECK(fx.vm(b).type() == kSwProt);
  CHECK(&fx.vm(a).mm() == &fx.mm);
  REQUIRE(fx.proc.close(a).ok());
  CHECK(fx.new_vm(kDefault) == 4);
}

// ---- KVM_CHECK_EXTENSION (§2) ----------------------------------------------------------------

TEST_CASE("KVM_CAP_MEMORY_ATTRIBUTES: PRIVATE at system scope and for private-memory VMs only",
          "[kvm][uapi][caps]") {
  KvmFixture fx(any_store());
  const int d = fx.new_vm(kDefault), s = fx.new_vm(kSwProt);
  auto sys = fx.kvm.check_extension(fx.proc, fx.kvm_fd, KVM_CAP_MEMORY_ATTRIBUTES);
  auto dv = fx.kvm.check_extension(fx.proc, d, KVM_CAP_MEMORY_ATTRIBUTES);
  auto sv = fx.kvm.check_extension(fx.proc, s, KVM_CAP_MEMORY_ATTRIBUTES);
  REQUIRE(sys.ok());
  REQUIRE(dv.ok());
  REQUIRE(sv.ok());
  CHECK(*sys == static_cast<int64_t>(KVM_MEMORY_ATTRIBUTE_PRIVATE));
  CHECK(*dv == 0);
  CHECK(*sv == static_cast<int64_t>(KVM_MEMORY_ATTRIBUTE_PRIVATE));
}

TEST_CASE("KVM_CAP_GUEST_MEMFD_FLAGS: INIT_SHARED only without private memory",
          "[kvm][uapi][caps]") {
  KvmFixture fx(any_store());
  const int d = fx.new_vm(kDefault), s = fx.new_vm(kSwProt);
  const int64_t both = static_cast<int64_t>(GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
  CHECK(*fx.kvm.check_extension(fx.proc, fx.kvm_fd, KVM_CAP_GUEST_MEMFD_FLAGS) == both);
  CHECK(*fx.kvm.check_extension(fx.proc, d, KVM_CAP_GUEST_MEMFD_FLAGS) == both);
  CHECK(*fx.kvm.check_extension(fx.proc, s, KVM_CAP_GUEST_MEMFD_FLAGS) ==
        static_cast<int64_t>(GUEST_MEMFD_FLAG_MMAP));
}

TEST_CASE("KVM_CAP_VM_TYPES: a bitmask of the registered VM types", "[kvm][uapi][caps]") {
  KvmFixture fx(any_store());
  const int64_t want = (int64_t{1} << KVM_X86_DEFAULT_VM) | (int64_t{1} << KVM_X86_SW_PROTECTED_VM);
  CHECK(*fx.kvm.check_extension(fx.proc, fx.kvm_fd, KVM_CAP_VM_TYPES) == want);
  const int d = fx.new_vm(kDefault);
  CHECK(*fx.kvm.check_extension(fx.proc, d, KVM_CAP_VM_TYPES) == want);
  fx.register_test_backend();
  CHECK(*fx.kvm.check_extension(fx.proc, fx.kvm_fd, KVM_CAP_VM_TYPES) ==
        (want | (int64_t{1} << kTestVmType)));
}

TEST_CASE(
    "KVM_CAP_USER_MEMORY2, GUEST_MEMFD, PRE_FAULT_MEMORY, MEMORY_FAULT_INFO are 1 in every scope",
    "[kvm][uapi][caps]") {
  KvmFixture fx(any_store());
  const int d = fx.new_vm(kDefault), s = fx.new_vm(kSwProt);
  for (uint32_t cap : {KVM_CAP_USER_MEMORY2, KVM_CAP_GUEST_MEMFD, KVM_CAP_PRE_FAULT_MEMORY,
                       KVM_CAP_MEMORY_FAULT_INFO}) {
    CAPTURE(cap);
    for (int fd : {fx.kvm_fd, d, s}) {
      CAPTURE(fd);
      auto r = fx.kvm.check_extension(fx.proc, fd, cap);
      REQUIRE(r.ok());
      CHECK(*r == 1);
    }
  }
}

TEST_CASE("KVM_CAP_EXIT_HYPERCALL reports BIT(KVM_HC_MAP_GPA_RANGE), unknown caps 0",
          "[kvm][uapi][caps]") {
  KvmFixture fx(any_store());
  const int s = fx.new_vm(kSwProt);
  CHECK(*fx.kvm.check_extension(fx.proc, fx.kvm_fd, KVM_CAP_EXIT_HYPERCALL) == (int64_t{1} << 12));
  CHECK(*fx.kvm.check_extension(fx.proc, s, KVM_CAP_EXIT_HYPERCALL) == (int64_t{1} << 12));
  CHECK(*fx.kvm.check_extension(fx.proc, s, 249) ==
        0);  // KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES: PROPOSED
  CHECK(*fx.kvm.check_extension(fx.proc, s, 100000) == 0);
}

TEST_CASE("KVM_CHECK_EXTENSION on a closed fd -> EBADF, on a non-KVM file -> ENOTTY",
          "[kvm][uapi][caps]") {
  KvmFixture fx(any_store());
  const int other = fx.proc.open_other("eventfd");
  CHECK(err(fx.kvm.check_extension(fx.proc, 99, KVM_CAP_USER_MEMORY2)) == Errno::kEBADF);
  CHECK(err(fx.kvm.check_extension(fx.proc, other, KVM_CAP_USER_MEMORY2)) == Errno::kENOTTY);
}

TEST_CASE("KVM_CHECK_EXTENSION on a VM fd is a VM ioctl: another mm or a dead VM -> EIO",
          "[kvm][uapi][caps][eio]") {
  KvmFixture fx(any_store());
  const int s = fx.new_vm(kSwProt);
  OtherProcess other(fx.kvm, fx.mem, fx.frames, "other");
  auto s2 = other.proc.receive_fd(fx.proc, s);
  auto k2 = other.proc.receive_fd(fx.proc, fx.kvm_fd);
  REQUIRE(s2.ok());
  REQUIRE(k2.ok());
  CHECK(err(fx.kvm.check_extension(other.proc, *s2, KVM_CAP_MEMORY_ATTRIBUTES)) == Errno::kEIO);
  // /dev/kvm is not a VM: the system scope answers any process.
  CHECK(*fx.kvm.check_extension(other.proc, *k2, KVM_CAP_MEMORY_ATTRIBUTES) ==
        static_cast<int64_t>(KVM_MEMORY_ATTRIBUTE_PRIVATE));
  REQUIRE(other.proc.close(*s2).ok());
  REQUIRE(other.proc.close(*k2).ok());
  fx.vm(s).mark_dead();
  CHECK(err(fx.kvm.check_extension(fx.proc, s, KVM_CAP_USER_MEMORY2)) == Errno::kEIO);
}

// ---- KVM_ENABLE_CAP ----------------------------------------------------------------------------

TEST_CASE("KVM_ENABLE_CAP rule: copy_from_user fails -> EFAULT", "[kvm][uapi][enable_cap]") {
  KvmFixture fx(any_store());
  const int s = fx.new_vm(kSwProt);
  CHECK(err(fx.kvm.enable_cap(fx.proc, s, nullptr)) == Errno::kEFAULT);
}

TEST_CASE("KVM_ENABLE_CAP rule: flags != 0 -> EINVAL", "[kvm][uapi][enable_cap]") {
  KvmFixture fx(any_store());
  const int s = fx.new_vm(kSwProt);
  kvm_enable_cap c;
  c.cap = KVM_CAP_EXIT_HYPERCALL;
  c.flags = 1;
  c.args[0] = uint64_t{1} << KVM_HC_MAP_GPA_RANGE;
  CHECK(err(fx.kvm.enable_cap(fx.proc, s, &c)) == Errno::kEINVAL);
  CHECK(fx.vm(s).exit_hypercall_mask == 0);
}

TEST_CASE("KVM_ENABLE_CAP(EXIT_HYPERCALL) rule: bits outside the valid mask -> EINVAL",
          "[kvm][uapi][enable_cap]") {
  KvmFixture fx(any_store());
  const int s = fx.new_vm(kSwProt);
  const uint64_t valid = uint64_t{1} << KVM_HC_MAP_GPA_RANGE;
  CHECK(err(fx.enable_exit_hypercall(s, uint64_t{1} << 3)) == Errno::kEINVAL);
  CHECK(err(fx.enable_exit_hypercall(s, valid | (uint64_t{1} << 63))) == Errno::kEINVAL);
  CHECK(fx.vm(s).exit_hypercall_mask == 0);
  REQUIRE(fx.enable_exit_hypercall(s, valid).ok());
  CHECK(fx.vm(s).exit_hypercall_mask == valid);
  // A refused request leaves the enabled mask alone; 0 disables.
  CHECK(err(fx.enable_exit_hypercall(s, uint64_t{1} << 11)) == Errno::kEINVAL);
  CHECK(fx.vm(s).exit_hypercall_mask == valid);
  REQUIRE(fx.enable_exit_hypercall(s, 0).ok());
  CHECK(fx.vm(s).exit_hypercall_mask == 0);
}

TEST_CASE("KVM_ENABLE_CAP(KVM_CAP_MEMORY_FAULT_INFO) -> EINVAL", "[kvm][uapi][enable_cap]") {
  KvmFixture fx(any_store());
  for (uint32_t type : {kDefault, kSwProt}) {
    const int v = fx.new_vm(type);
    kvm_enable_cap c;
    c.cap = KVM_CAP_MEMORY_FAULT_INFO;
    CHECK(err(fx.kvm.enable_cap(fx.proc, v, &c)) == Errno::kEINVAL);
  }
}

// ---- The generic VM-ioctl check (§3 rule 1) and fd kinds ----------------------------------------

TEST_CASE("VM ioctls from a process whose mm is not the VM's -> EIO", "[kvm][uapi][eio]") {
  KvmFixture fx(any_store());
  const int s = fx.new_vm(kSwProt);
  const int vcpu = fx.new_vcpu(s);
  const Hva h = fx.anon(16 * kPage);
  OtherProcess other(fx.kvm, fx.mem, fx.frames, "other");
  auto s2 = other.proc.receive_fd(fx.proc, s);
  auto v2 = other.proc.receive_fd(fx.proc, vcpu);
  REQUIRE(s2.ok());
  REQUIRE(v2.ok());
  const auto r = region2(0, 0, 16 * kPage, h.value());
  const auto a = attrs(0, kPage, kPriv);
  kvm_enable_cap c;
  c.cap = KVM_CAP_EXIT_HYPERCALL;
  kvm_create_guest_memfd g;
  g.size = 16 * kPage;
  kvm_pre_fault_memory pf;
  pf.gpa = 0;
  pf.size = kPage;
  CHECK(err(fx.kvm.set_user_memory_region2(other.proc, *s2, &r)) == Errno::kEIO);
  CHECK(err(fx.kvm.set_memory_attributes(other.proc, *s2, &a)) == Errno::kEIO);
  CHECK(err(fx.kvm.enable_cap(other.proc, *s2, &c)) == Errno::kEIO);
  CHECK(err(fx.kvm.create_guest_memfd(other.proc, *s2, &g)) == Errno::kEIO);
  CHECK(err(fx.kvm.create_vcpu(other.proc, *s2, 1)) == Errno::kEIO);
  CHECK(err(fx.kvm.pre_fault_memory(other.proc, *v2, &pf)) == Errno::kEIO);
  // EIO comes first: even a null argument is not looked at.
  CHECK(err(fx.kvm.set_memory_attributes(other.proc, *s2, nullptr)) == Errno::kEIO);
  // Nothing happened to the VM.
  CHECK(fx.vm(s).memslots().size() == 0);
  CHECK_FALSE(fx.vm(s).mem_is_private(Gfn(0)));
  CHECK(fx.vm(s).num_vcpus() == 1);
  // The owner still can.
  CHECK(fx.kvm.set_user_memory_region2(fx.proc, s, &r).ok());
  REQUIRE(other.proc.close(*s2).ok());
  REQUIRE(other.proc.close(*v2).ok());
}

TEST_CASE("VM ioctls on a dead VM -> EIO", "[kvm][uapi][eio]") {
  KvmFixture fx(any_store());
  const int s = fx.new_vm(kSwProt);
  fx.vm(s).mark_dead();
  const auto a = attrs(0, kPage, kPriv);
  CHECK(err(fx.kvm.set_memory_attributes(fx.proc, s, &a)) == Errno::kEIO);
  CHECK(err(fx.create_gmem(s, 16 * kPage)) == Errno::kEIO);
}

TEST_CASE("VM ioctls on a non-VM fd -> ENOTTY, on a closed fd -> EBADF", "[kvm][uapi]") {
  KvmFixture fx(any_store());
  const int s = fx.new_vm(kSwProt);
  const int g = fx.new_gmem(s, 16 * kPage);
  const auto a = attrs(0, kPage, kPriv);
  CHECK(err(fx.kvm.set_memory_attributes(fx.proc, fx.kvm_fd, &a)) == Errno::kENOTTY);
  CHECK(err(fx.kvm.set_memory_attributes(fx.proc, g, &a)) == Errno::kENOTTY);
  CHECK(err(fx.kvm.set_memory_attributes(fx.proc, 42, &a)) == Errno::kEBADF);
  kvm_pre_fault_memory pf;
  pf.size = kPage;
  CHECK(err(fx.kvm.pre_fault_memory(fx.proc, s, &pf)) == Errno::kENOTTY);  // a vCPU ioctl
  CHECK(err(fx.kvm.pre_fault_memory(fx.proc, 42, &pf)) == Errno::kEBADF);
}

TEST_CASE("KVM_CREATE_VCPU: ids are unique and below KVM_MAX_VCPU_IDS, each vCPU pins the VM",
          "[kvm][uapi]") {
  KvmFixture fx(any_store());
  const int s = fx.new_vm(kSwProt);
  Vm& vm = fx.vm(s);
  CHECK(vm.users() == 1);
  fx.new_vcpu(s, 0);
  CHECK(err(fx.kvm.create_vcpu(fx.proc, s, 0)) == Errno::kEEXIST);
  CHECK(err(fx.kvm.create_vcpu(fx.proc, s, 4096)) == Errno::kEINVAL);
  CHECK(fx.kvm.create_vcpu(fx.proc, s, 4095).ok());
  CHECK(vm.num_vcpus() == 2);
  CHECK(vm.users() == 3);
}
