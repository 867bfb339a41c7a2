// KVM_CREATE_GUEST_MEMFD (kvm-guest-memfd.md §3) and the guest_memfd file operations (§6.1)
// through the uAPI facade: one check per rule in the spec's order, asserting the errno. Every
// test runs against both attribute stores.
#include <catch2/catch.hpp>

#include <set>

#include "kvm_test_util.h"

using namespace cvmsim;
using namespace cvmsim::kvmtest;

namespace {
constexpr int KEEP = FALLOC_FL_KEEP_SIZE;
constexpr int PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
}  // namespace

// ---- KVM_CREATE_GUEST_MEMFD, in order
// --------------------------------------------------------------

TEST_CASE("CREATE_GUEST_MEMFD rule 1: a process whose mm is not the VM's -> EIO",
          "[kvm][uapi][gmem]") {
  KvmFixture fx(any_store());
  const int s = fx.new_vm(kSwProt);
  OtherProcess other(fx.kvm, fx.mem, fx.frames, "other");
  auto fd = other.proc.receive_fd(fx.proc, s);
  REQUIRE(fd.ok());
  kvm_create_guest_memfd g;
  g.size = 16 * kPage;
  CHECK(err(fx.kvm.create_guest_memfd(other.proc, *fd, &g)) == Errno::kEIO);
  // Rule 1 comes before rule 2 (no copy is attempted).
  CHECK(err(fx.kvm.create_guest_memfd(other.proc, *fd, nullptr)) == Errno::kEIO);
  // Both fds name one struct file, which holds the VM's only reference; no guest_memfd took one.
  CHECK(fx.vm(s).users() == 1);
  CHECK(other.proc.open_fds() == 1);
  REQUIRE(other.proc.close(*fd).ok());
  // The creator's process can.
  CHECK(fx.kvm.create_guest_memfd(fx.proc, s, &g).ok());
}

TEST_CASE("CREATE_GUEST_MEMFD rule 2: a failed copy -> EFAULT", "[kvm][uapi][gmem]") {
  KvmFixture fx(any_store());
  const int s = fx.new_vm(kSwProt);
  CHECK(err(fx.kvm.create_guest_memfd(fx.proc, s, nullptr)) == Errno::kEFAULT);
}

TEST_CASE("CREATE_GUEST_MEMFD rule 3: flags outside the VM's supported flags -> EINVAL",
          "[kvm][uapi][gmem]") {
  KvmFixture fx(any_store());
  const int d = fx.new_vm(kDefault), s = fx.new_vm(kSwProt);
  for (int v : {d, s}) {
    CHECK(err(fx.create_gmem(v, 16 * kPage, 1ull << 2)) ==
          Errno::kEINVAL);  // NO_DIRECT_MAP: PROPOSED
    CHECK(err(fx.create_gmem(v, 16 * kPage, 1ull << 63)) == Errno::kEINVAL);
    CHECK(fx.create_gmem(v, 16 * kPage, GUEST_MEMFD_FLAG_MMAP).ok());
  }
  // INIT_SHARED only for VMs without private memory (§2).
  CHECK(err(fx.create_gmem(s, 16 * kPage, GUEST_MEMFD_FLAG_INIT_SHARED)) == Errno::kEINVAL);
  CHECK(err(fx.create_gmem(s, 16 * kPage, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)) ==
        Errno::kEINVAL);
  CHECK(fx.create_gmem(d, 16 * kPage, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED).ok());
  CHECK(fx.create_gmem(d, 16 * kPage, GUEST_MEMFD_FLAG_INIT_SHARED).ok());
}

TEST_CASE("CREATE_GUEST_MEMFD rule 4: size <= 0 as loff_t or not page aligned -> EINVAL",
          "[kvm][uapi][gmem]") {
  KvmFixture fx(any_store());
  const int s = fx.new_vm(kSwProt);
  const size_t fds = fx.proc.open_fds();
  for (uint64_t size : {uint64_t{0}, uint64_t{1}, kPage + 1, kPage - 1, uint64_t{1} << 63,
                        ~uint64_t{0} & ~(kPage - 1)}) {
    CAPTURE(size);
    CHECK(err(fx.create_gmem(s, size)) == Errno::kEINVAL);
  }
  CHECK(fx.proc.open_fds() == fds);
  CHECK(fx.vm(s).users() == 1);  // no failed create pinned the VM
  CHECK(fx.create_gmem(s, kPage).ok());
  CHECK(fx.create_gmem(s, (uint64_t{1} << 63) - kPage).ok());  // the largest loff_t page multiple
}

TEST_CASE("CREATE_GUEST_MEMFD: reserved is not checked, the fd pins the VM, st_ino is distinct",
          "[kvm][uapi][gmem]") {
  KvmFixture fx(any_store());
  const int s = fx.new_vm(kSwProt);
  kvm_create_guest_memfd g;
  g.size = 16 * kPage;
  g.reserved[0] = 0xdead;
  g.reserved[5] = 1;
  auto fd = fx.kvm.create_guest_memfd(fx.proc, s, &g);
  REQUIRE(fd.ok());
  CHECK(*fd == s + 1);  // the lowest free fd
  CHECK(fx.vm(s).users() == 2);
  std::set<uint64_t> inos;
  for (int i = 0; i < 3; ++i) {
    auto st = fx.kvm.fstat(fx.proc, fx.new_gmem(s, (i + 1) * kPage));
    REQUIRE(st.ok());
    CHECK(st->st_size == static_cast<int64_t>((i + 1) * kPage));
    CHECK(st->st_blksize == kPage);
    inos.insert(st->st_ino);
  }
  inos.insert(fx.kvm.fstat(fx.proc, *fd)->st_ino);
  CHECK(inos.size() == 4);
}

// ---- File operations through the facade (§6.1)
// -------------------------------------------------------

TEST_CASE("guest_memfd fallocate: KEEP_SIZE required, only PUNCH_HOLE beside it",
          "[kvm][uapi][gmem][fallocate]") {
  KvmFixture fx(any_store());
  const int s = fx.new_vm(kSwProt);
  const int g = fx.new_gmem(s, 16 * kPage);
  CHECK(err(fx.kvm.fallocate(fx.proc, g, 0, 0, kPage)) == Errno::kEOPNOTSUPP);
  CHECK(err(fx.kvm.fallocate(fx.proc, g, FALLOC_FL_ZERO_RANGE | KEEP, 0, kPage)) ==
        Errno::kEOPNOTSUPP);
  CHECK(err(fx.kvm.fallocate(fx.proc, g, FALLOC_FL_COLLAPSE_RANGE, 0, kPage)) ==
        Errno::kEOPNOTSUPP);
  CHECK(fx.gmem(g)->inode().nr_folios() == 0);
  CHECK(fx.kvm.fallocate(fx.proc, g, KEEP, 0, kPage).ok());
  CHECK(fx.gmem(g)->inode().nr_folios() == 1);
}

TEST_CASE(
    "guest_memfd fallocate: offset or len unaligned -> EINVAL, allocate beyond i_size -> EINVAL",
    "[kvm][uapi][gmem][fallocate]") {
  KvmFixture fx(any_store());
  const int s = fx.new_vm(kSwProt);
  const int g = fx.new_gmem(s, 16 * kPage);
  CHECK(err(fx.kvm.fallocate(fx.proc, g, KEEP, 1, kPage)) == Errno::kEINVAL);
  CHECK(err(fx.kvm.fallocate(fx.proc, g, KEEP, 0, kPage + 1)) == Errno::kEINVAL);
  CHECK(err(fx.kvm.fallocate(fx.proc, g, PUNCH, 0, 7)) == Errno::kEINVAL);
  CHECK(err(fx.kvm.fallocate(fx.proc, g, KEEP, 0, 17 * kPage)) ==
        Errno::kEINVAL);  // immutable size
  CHECK(err(fx.kvm.fallocate(fx.proc, g, KEEP, -static_cast<int64_t>(kPage), kPage)) ==
        Errno::kEINVAL);
  CHECK(err(fx.kvm.fallocate(fx.proc, g, KEEP, 0, 0)) == Errno::kEINVAL);
  CHECK(fx.gmem(g)->inode().nr_folios() == 0);
  // Punching at or beyond i_size succeeds (a no-op).
  CHECK(fx.kvm.fallocate(fx.proc, g, PUNCH, 16 * kPage, 16 * kPage).ok());
  CHECK(fx.kvm.fallocate(fx.proc, g, KEEP, 0, 16 * kPage).ok());
  CHECK(fx.gmem(g)->inode().nr_folios() == 16);
  CHECK(fx.kvm.fallocate(fx.proc, g, PUNCH, 4 * kPage, 4 * kPage).ok());
  CHECK(fx.gmem(g)->inode().nr_folios() == 12);
}

TEST_CASE("guest_memfd fallocate on a closed fd -> EBADF, on a non-guest_memfd -> EOPNOTSUPP",
          "[kvm][uapi][gmem][fallocate]") {
  KvmFixture fx(any_store());
  const int s = fx.new_vm(kSwProt);
  const int g = fx.new_gmem(s, 16 * kPage);
  REQUIRE(fx.proc.close(g).ok());
  CHECK(err(fx.kvm.fallocate(fx.proc, g, KEEP, 0, kPage)) == Errno::kEBADF);
  CHECK(err(fx.kvm.fallocate(fx.proc, s, KEEP, 0, kPage)) == Errno::kEOPNOTSUPP);
}

TEST_CASE("guest_memfd read/write -> EINVAL, ftruncate -> EINVAL, fstat reports the fixed size",
          "[kvm][uapi][gmem]") {
  KvmFixture fx(any_store());
  const int s = fx.new_vm(kSwProt);
  const int g = fx.new_gmem(s, 16 * kPage);
  CHECK(err(fx.kvm.read(fx.proc, g, 16)) == Errno::kEINVAL);
  CHECK(err(fx.kvm.write(fx.proc, g, 16)) == Errno::kEINVAL);
  CHECK(err(fx.kvm.ftruncate(fx.proc, g, 32 * kPage)) == Errno::kEINVAL);
  CHECK(err(fx.kvm.ftruncate(fx.proc, g, 0)) == Errno::kEINVAL);
  auto st = fx.kvm.fstat(fx.proc, g);
  REQUIRE(st.ok());
  CHECK(st->st_size == static_cast<int64_t>(16 * kPage));
  CHECK(st->st_blksize == kPage);
  CHECK(err(fx.kvm.fstat(fx.proc, 99)) == Errno::kEBADF);
}
