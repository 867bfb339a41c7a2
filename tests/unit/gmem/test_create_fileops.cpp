// KVM_CREATE_GUEST_MEMFD rules 3-4 (kvm-guest-memfd.md §3), fstat, the refused file
// operations (§6.1) and fallocate's checks in the kernel's order (§6.1, vfs_fallocate first).
#include <catch2/catch.hpp>

#include <limits>

#include "gmem_test_util.h"

using namespace cvmsim;
using namespace cvmsim::test;

namespace {
constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr int KEEP = FALLOC_FL_KEEP_SIZE;
constexpr int PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
}  // namespace

// ---- §3 KVM_CREATE_GUEST_MEMFD -------------------------------------------------------------

TEST_CASE("create rule 3: flags outside the VM's supported set -> EINVAL", "[gmem][create]") {
  GmemFixture fx;
  CHECK(err(fx.create(16 * kPage, 1ull << 5)) == Errno::kEINVAL);  // unknown bit
  // A CoCo VM supports MMAP only (§2), so INIT_SHARED is refused for it.
  CHECK(err(fx.create(16 * kPage, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP)) ==
        Errno::kEINVAL);
  CHECK(fx.create(16 * kPage, GUEST_MEMFD_FLAG_MMAP, GUEST_MEMFD_FLAG_MMAP).ok());
  // INIT_SHARED without MMAP is a supported combination in mainline (only the mask is checked).
  CHECK(fx.create(16 * kPage, GUEST_MEMFD_FLAG_INIT_SHARED).ok());
}

TEST_CASE("create rule 4: size <= 0 as a signed loff_t or unaligned -> EINVAL", "[gmem][create]") {
  GmemFixture fx;
  CHECK(err(fx.create(0)) == Errno::kEINVAL);
  CHECK(err(fx.create(1ull << 63)) == Errno::kEINVAL);  // negative as loff_t
  CHECK(err(fx.create(~0ull & ~(kPage - 1))) == Errno::kEINVAL);
  CHECK(err(fx.create(kPage + 1)) == Errno::kEINVAL);
  CHECK(err(fx.create(100)) == Errno::kEINVAL);
  CHECK(fx.create(kPage).ok());
}

TEST_CASE("create: a refused request takes no VM reference and no inode number", "[gmem][create]") {
  GmemFixture fx;
  // Violates rules 3 and 4: rule 3's EINVAL (the same errno, so only the absence of side
  // effects can be observed).
  CHECK(err(fx.create(kPage + 1, 1ull << 7)) == Errno::kEINVAL);
  CHECK(fx.vm.refs == 1);
  CHECK(fx.vm.log.empty());
  auto f = fx.make(1);
  CHECK(f->fstat()->st_ino == 2);  // the first number handed out: nothing was consumed before
}

TEST_CASE("create: the file pins its VM - fstat reports size, PAGE_SIZE blocks, distinct inodes",
          "[gmem][create][lifetime]") {
  GmemFixture fx;
  auto a = fx.make(16);
  CHECK(fx.vm.refs == 2);  // §6.2: kvm_get_kvm at create
  auto b = fx.make(4, GUEST_MEMFD_FLAG_MMAP);
  CHECK(fx.vm.refs == 3);
  auto sa = a->fstat();
  auto sb = b->fstat();
  REQUIRE(sa.ok());
  REQUIRE(sb.ok());
  CHECK(sa->st_size == 16 * 4096);
  CHECK(sa->st_blksize == 4096);
  CHECK(sb->st_size == 4 * 4096);
  CHECK(sa->st_ino != sb->st_ino);
  CHECK(a->inode().nr_folios() == 0);  // nothing is allocated at create
  CHECK(a->refcount() == 1);
  CHECK(b->inode().flags() == GUEST_MEMFD_FLAG_MMAP);
}

// ---- §6.1 refused file operations -------------------------------------------------------------

TEST_CASE("read/write -> EINVAL, pread/pwrite -> ESPIPE, ftruncate -> EINVAL", "[gmem][fileops]") {
  GmemFixture fx;
  auto f = fx.make(4);
  CHECK(err(f->read(64)) == Errno::kEINVAL);
  CHECK(err(f->write(64)) == Errno::kEINVAL);
  // pread/pwrite: the pseudo file has no FMODE_PREAD/PWRITE -> ESPIPE; a negative position is
  // checked first -> EINVAL.
  CHECK(err(f->pread(64, 0)) == Errno::kESPIPE);
  CHECK(err(f->pwrite(64, 0)) == Errno::kESPIPE);
  CHECK(err(f->pread(64, -1)) == Errno::kEINVAL);
  CHECK(err(f->pwrite(64, -1)) == Errno::kEINVAL);
  // The size is immutable: shrinking, growing and "no change" all fail.
  CHECK(err(f->ftruncate(0)) == Errno::kEINVAL);
  CHECK(err(f->ftruncate(8 * 4096)) == Errno::kEINVAL);
  CHECK(err(f->ftruncate(4 * 4096)) == Errno::kEINVAL);
  CHECK(f->fstat()->st_size == 4 * 4096);
  REQUIRE(f->close().ok());
  CHECK(err(f->read(64)) == Errno::kEBADF);
  CHECK(err(f->ftruncate(4096)) == Errno::kEBADF);
  CHECK(err(f->ftruncate(-1)) == Errno::kEINVAL);  // checked before the fd lookup
  CHECK(err(f->pread(64, -1)) == Errno::kEINVAL);  // likewise
  CHECK(err(f->fstat()) == Errno::kEBADF);
  CHECK(err(f->close()) == Errno::kEBADF);  // a second close of the same fd
}

// ---- §6.1 fallocate: vfs_fallocate's checks, then kvm_gmem_fallocate's, in order ---------------

TEST_CASE("fallocate vfs rule: offset < 0 or len <= 0 -> EINVAL, before any mode check",
          "[gmem][fallocate]") {
  GmemFixture fx;
  auto f = fx.make(16);
  CHECK(err(f->fallocate(KEEP, -4096, 4096)) == Errno::kEINVAL);
  CHECK(err(f->fallocate(KEEP, 0, 0)) == Errno::kEINVAL);
  CHECK(err(f->fallocate(KEEP, 0, -4096)) == Errno::kEINVAL);
  // A bad mode (EOPNOTSUPP later) does not win over the range check.
  CHECK(err(f->fallocate(0x100 | KEEP, 0, 0)) == Errno::kEINVAL);
  CHECK(err(f->fallocate(FALLOC_FL_PUNCH_HOLE, -1, 4096)) == Errno::kEINVAL);
}

TEST_CASE("fallocate vfs rule: unknown or inconsistent mode -> EOPNOTSUPP", "[gmem][fallocate]") {
  GmemFixture fx;
  auto f = fx.make(16);
  CHECK(err(f->fallocate(0x100 | KEEP, 0, 4096)) == Errno::kEOPNOTSUPP);  // unknown bit
  CHECK(err(f->fallocate(FALLOC_FL_PUNCH_HOLE, 0, 4096)) ==
        Errno::kEOPNOTSUPP);  // punch without KEEP_SIZE
  CHECK(err(f->fallocate(FALLOC_FL_COLLAPSE_RANGE | KEEP, 0, 4096)) == Errno::kEOPNOTSUPP);
  CHECK(err(f->fallocate(PUNCH | FALLOC_FL_ZERO_RANGE, 0, 4096)) ==
        Errno::kEOPNOTSUPP);  // two modes
  // vfs refuses these modes before its overflow check: EOPNOTSUPP, not EFBIG.
  CHECK(err(f->fallocate(FALLOC_FL_PUNCH_HOLE, kI64Max, 4096)) == Errno::kEOPNOTSUPP);
}

TEST_CASE("fallocate vfs rule: offset + len overflow -> EFBIG, before guest_memfd's rules",
          "[gmem][fallocate]") {
  GmemFixture fx;
  auto f = fx.make(16);
  CHECK(errno_name(Errno::kEFBIG) == "EFBIG");
  CHECK(err(f->fallocate(KEEP, kI64Max - 4095, 8192)) == Errno::kEFBIG);
  CHECK(err(f->fallocate(PUNCH, kI64Max, 1)) == Errno::kEFBIG);
  // Mode 0 (no KEEP_SIZE) passes vfs, so the overflow is found before guest_memfd's EOPNOTSUPP;
  // ZERO_RANGE|KEEP_SIZE likewise.
  CHECK(err(f->fallocate(0, kI64Max, 4096)) == Errno::kEFBIG);
  CHECK(err(f->fallocate(FALLOC_FL_ZERO_RANGE | KEEP, kI64Max, 4096)) == Errno::kEFBIG);
  // Unaligned and overflowing: EFBIG comes first.
  CHECK(err(f->fallocate(KEEP, kI64Max - 10, 100)) == Errno::kEFBIG);
}

TEST_CASE("fallocate gmem rule: mode without KEEP_SIZE -> EOPNOTSUPP", "[gmem][fallocate]") {
  GmemFixture fx;
  auto f = fx.make(16);
  CHECK(err(f->fallocate(0, 0, 4096)) == Errno::kEOPNOTSUPP);
  CHECK(err(f->fallocate(FALLOC_FL_ZERO_RANGE, 0, 4096)) == Errno::kEOPNOTSUPP);
  CHECK(err(f->fallocate(FALLOC_FL_UNSHARE_RANGE, 0, 4096)) == Errno::kEOPNOTSUPP);
  // Before the alignment rule.
  CHECK(err(f->fallocate(0, 1, 4096)) == Errno::kEOPNOTSUPP);
  CHECK(f->inode().nr_folios() == 0);
}

TEST_CASE("fallocate gmem rule: any bit besides KEEP_SIZE|PUNCH_HOLE -> EOPNOTSUPP",
          "[gmem][fallocate]") {
  GmemFixture fx;
  auto f = fx.make(16);
  CHECK(err(f->fallocate(FALLOC_FL_ZERO_RANGE | KEEP, 0, 4096)) == Errno::kEOPNOTSUPP);
  CHECK(err(f->fallocate(FALLOC_FL_UNSHARE_RANGE | KEEP, 0, 4096)) == Errno::kEOPNOTSUPP);
  CHECK(err(f->fallocate(FALLOC_FL_ZERO_RANGE | KEEP, 1, 4096)) ==
        Errno::kEOPNOTSUPP);  // before alignment
}

TEST_CASE("fallocate gmem rule: unaligned offset or len -> EINVAL", "[gmem][fallocate]") {
  GmemFixture fx;
  auto f = fx.make(16);
  CHECK(err(f->fallocate(KEEP, 1, 4096)) == Errno::kEINVAL);
  CHECK(err(f->fallocate(KEEP, 0, 4097)) == Errno::kEINVAL);
  CHECK(err(f->fallocate(PUNCH, 4096, 100)) == Errno::kEINVAL);
  // Before the allocate-beyond-EOF rule.
  CHECK(err(f->fallocate(KEEP, 1, 64 * 4096)) == Errno::kEINVAL);
  CHECK(f->inode().nr_folios() == 0);
}

TEST_CASE("fallocate allocate: beyond i_size -> EINVAL and nothing is allocated",
          "[gmem][fallocate]") {
  GmemFixture fx;
  auto f = fx.make(16);
  CHECK(err(f->fallocate(KEEP, 0, 17 * 4096)) == Errno::kEINVAL);
  CHECK(err(f->fallocate(KEEP, 16 * 4096, 4096)) == Errno::kEINVAL);
  CHECK(f->inode().nr_folios() == 0);
  CHECK(f->fallocate(KEEP, 15 * 4096, 4096).ok());  // the last page
  CHECK(f->inode().nr_folios() == 1);
}

TEST_CASE("fallocate allocate: folios appear without zeroing or prepare", "[gmem][fallocate]") {
  GmemFixture fx;
  auto f = fx.make(16);
  const uint64_t free_before = fx.frames.free_frames();
  REQUIRE(f->fallocate(KEEP, 4 * 4096, 3 * 4096).ok());
  CHECK(f->inode().nr_folios() == 3);
  CHECK(fx.frames.free_frames() == free_before - 3);
  for (uint64_t i = 4; i < 7; ++i) {
    const GmemFolio* folio = f->inode().folio(GmemPgoff(i));
    REQUIRE(folio);
    CHECK_FALSE(folio->uptodate);
  }
  CHECK(f->inode().folio(GmemPgoff(3)) == nullptr);
  CHECK(f->inode().stats().bytes_zeroed == 0);
  CHECK(fx.vm.prepares.empty());
  // Allocating again is idempotent.
  REQUIRE(f->fallocate(KEEP, 0, 16 * 4096).ok());
  CHECK(f->inode().nr_folios() == 16);
  CHECK(fx.frames.free_frames() == free_before - 16);
}

TEST_CASE("fallocate allocate: allocation failure -> ENOMEM, keeping what was allocated",
          "[gmem][fallocate]") {
  PhysMem mem(2 << 20, MemMode::kData);
  PageAllocator frames(Pfn(0), 3);
  GmemInodeNumbers inos;
  FakeVm vm;
  kvm_create_guest_memfd args;
  args.size = 8 * kPage;
  auto f = GmemFile::create(vm, args, 0, GmemEnv{mem, frames, inos});
  REQUIRE(f.ok());
  CHECK(err((*f)->fallocate(KEEP, 0, 5 * 4096)) == Errno::kENOMEM);
  CHECK((*f)->inode().nr_folios() == 3);
  CHECK(frames.free_frames() == 0);
}

TEST_CASE("fallocate after close -> EBADF (the fd is gone)", "[gmem][fallocate]") {
  GmemFixture fx;
  auto f = fx.make(4);
  REQUIRE(f->close().ok());
  CHECK(err(f->fallocate(KEEP, 0, 4096)) == Errno::kEBADF);
}

TEST_CASE("punch hole at or beyond i_size succeeds as a no-op", "[gmem][punch]") {
  GmemFixture fx;
  auto f = fx.make(4);
  REQUIRE(f->fallocate(KEEP, 0, 4 * 4096).ok());
  REQUIRE(f->bind(fx.vm, slot(1), Gfn(0x100), 4, 0).ok());
  fx.vm.clear();
  CHECK(f->fallocate(PUNCH, 4 * 4096, 4096).ok());
  CHECK(f->fallocate(PUNCH, 100 * 4096, 8 * 4096).ok());
  CHECK(f->inode().nr_folios() == 4);
  CHECK(fx.vm.log.empty());  // no binding there: no invalidation, no free
}
