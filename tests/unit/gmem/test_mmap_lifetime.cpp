// Host userspace mappings, faults and madvise (kvm-guest-memfd.md §6.1, §6.5), and the file's
// lifetime: pinning, close/release, dead slots, inode eviction (§6.2, §6.4, §13.7).
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>

#include "gmem_test_util.h"
#include "models/host/host_mm.h"

using namespace cvmsim;
using namespace cvmsim::test;

namespace {
constexpr int KEEP = FALLOC_FL_KEEP_SIZE;
constexpr int PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
constexpr int RW = PROT_READ | PROT_WRITE;
constexpr uint64_t kShared = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
}  // namespace

// ---- §6.1 mmap, in the kernel's order -----------------------------------------------------------

TEST_CASE("mmap rule: PROT_EXEC -> EPERM (noexec mount), before guest_memfd's own checks",
          "[gmem][mmap]") {
  GmemFixture fx;
  auto mappable = fx.make(4, kShared);
  auto plain = fx.make(4);
  CHECK(err(mappable->mmap(4 * 4096, RW | PROT_EXEC, true)) == Errno::kEPERM);
  CHECK(err(mappable->mmap(4 * 4096, PROT_READ | PROT_EXEC, false)) ==
        Errno::kEPERM);  // also MAP_PRIVATE
  CHECK(err(plain->mmap(4 * 4096, PROT_EXEC, true)) ==
        Errno::kEPERM);  // do_mmap runs before ->mmap
  CHECK(mappable->refcount() == 1);
}

TEST_CASE("mmap rule: no GUEST_MEMFD_FLAG_MMAP -> ENODEV", "[gmem][mmap]") {
  GmemFixture fx;
  auto plain = fx.make(4);
  auto init_shared_only = fx.make(4, GUEST_MEMFD_FLAG_INIT_SHARED);
  CHECK(err(plain->mmap(4 * 4096, RW, true)) == Errno::kENODEV);
  CHECK(err(plain->mmap(4 * 4096, RW, false)) == Errno::kENODEV);  // before the MAP_PRIVATE rule
  CHECK(err(init_shared_only->mmap(4 * 4096, RW, true)) == Errno::kENODEV);
}

TEST_CASE("mmap rule: MAP_PRIVATE -> EINVAL", "[gmem][mmap]") {
  GmemFixture fx;
  auto f = fx.make(4, kShared);
  CHECK(err(f->mmap(4 * 4096, RW, false)) == Errno::kEINVAL);
  CHECK(err(f->mmap(4 * 4096, PROT_READ, false)) == Errno::kEINVAL);
  CHECK(f->refcount() == 1);
}

TEST_CASE("mmap: generic syscall checks (length, offset, closed fd)", "[gmem][mmap]") {
  GmemFixture fx;
  auto f = fx.make(4, kShared);
  CHECK(err(f->mmap(0, RW, true)) == Errno::kEINVAL);
  CHECK(err(f->mmap(4096, RW, true, 100)) == Errno::kEINVAL);
  CHECK(err(f->mmap(~0ull, RW, true)) == Errno::kENOMEM);
  CHECK(err(f->mmap(kTaskSize + 4096, RW, true)) == Errno::kENOMEM);
  CHECK(err(f->mmap(8192, RW, true, (1ull << 63) - 4096)) ==
        Errno::kEOVERFLOW);                           // past MAX_LFS_FILESIZE
  CHECK(f->mmap(8192, RW, true, (1ull << 62)).ok());  // far beyond i_size, but a legal file offset
  REQUIRE(f->close().ok());
  CHECK(err(f->mmap(4096, RW, true)) == Errno::kEBADF);
  CHECK(err(f->mmap(4096, RW, true, 1)) == Errno::kEINVAL);  // the offset is checked before the fd
}

TEST_CASE("mmap of private memory succeeds - every fault on it is SIGBUS", "[gmem][mmap][sigbus]") {
  GmemFixture fx;
  auto f = fx.make(4, GUEST_MEMFD_FLAG_MMAP);  // a CoCo VM's file: MMAP without INIT_SHARED
  auto m = f->mmap(4 * 4096, RW, true);
  REQUIRE(m.ok());
  auto fault = f->user_fault(*m, 0, false);
  REQUIRE(fault.ok());
  CHECK(fault->signal == Signal::kSigbus);
  std::array<uint8_t, 8> buf{};
  auto rd = f->host_read(*m, 4096, buf);
  REQUIRE(rd.ok());
  CHECK(rd->signal == Signal::kSigbus);
  CHECK(rd->bytes == 0);
  CHECK(f->inode().nr_folios() == 0);  // SIGBUS before any allocation
  CHECK(f->inode().stats().sigbus == 2);
}

TEST_CASE("user fault beyond i_size -> SIGBUS", "[gmem][mmap][sigbus]") {
  GmemFixture fx;
  auto f = fx.make(2, kShared);
  auto m = f->mmap(4 * 4096, RW, true);  // mapping larger than the file is allowed
  REQUIRE(m.ok());
  auto inside = f->user_fault(*m, 4096 + 17, true);
  REQUIRE(inside.ok());
  CHECK(inside->signal == Signal::kNone);
  auto beyond = f->user_fault(*m, 2 * 4096, false);
  REQUIRE(beyond.ok());
  CHECK(beyond->signal == Signal::kSigbus);
  // A write straddling EOF transfers the first page's part, then signals.
  std::vector<uint8_t> data(200, 0x42);
  auto wr = f->host_write(*m, 2 * 4096 - 100, data);
  REQUIRE(wr.ok());
  CHECK(wr->signal == Signal::kSigbus);
  CHECK(wr->bytes == 100);
  // With an offset: the mapping's pgoff counts.
  auto m2 = f->mmap(4096, RW, true, 2 * 4096);
  REQUIRE(m2.ok());
  CHECK(f->user_fault(*m2, 0, false)->signal == Signal::kSigbus);
}

TEST_CASE("INIT_SHARED: the fault zeroes once and host accesses reach the guest's frame",
          "[gmem][mmap]") {
  GmemFixture fx;
  auto f = fx.make(4, kShared);
  REQUIRE(f->bind(fx.vm, slot(1), Gfn(0x80), 4, 0).ok());
  REQUIRE(f->fallocate(KEEP, 0, 4096).ok());
  const Pfn pfn = f->inode().folio(GmemPgoff(0))->pfn;
  fx.scribble(pfn, 0x99, vm_principal(3));  // stale data in the allocated frame
  auto m = f->mmap(4 * 4096, RW, true);
  REQUIRE(m.ok());
  std::array<uint8_t, 16> in{};
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<uint8_t>(i + 1);
  auto wr = f->host_write(*m, 40, in);
  REQUIRE(wr.ok());
  CHECK(wr->signal == Signal::kNone);
  CHECK(wr->faults == 1);
  CHECK(f->user_pte(*m, 0) == pfn);
  CHECK(fx.byte_at(pfn, 0) == 0);   // zeroed by the fault, not the stale 0x99
  CHECK(fx.byte_at(pfn, 40) == 1);  // the write landed in PhysMem at the folio's pfn
  CHECK(fx.mem.meta(pfn).label == kHostUser);
  std::array<uint8_t, 16> out{};
  auto rd = f->host_read(*m, 40, out);
  REQUIRE(rd.ok());
  CHECK(rd->faults == 0);  // the PTE is present
  CHECK(out == in);
  // A gmem-only slot's guest fault uses the same physical page, already uptodate.
  auto g = f->get_pfn(slot(1), Gfn(0x80), Gfn(0x80), GmemPgoff(0));
  REQUIRE(g.ok());
  CHECK(g->pfn == pfn);
  CHECK(g->bytes_zeroed == 0);
  CHECK(fx.byte_at(g->pfn, 41) == 2);
}

TEST_CASE("user accesses outside the mapping or against its protection -> SIGSEGV",
          "[gmem][mmap]") {
  GmemFixture fx;
  auto f = fx.make(4, kShared);
  auto ro = f->mmap(2 * 4096, PROT_READ, true);
  REQUIRE(ro.ok());
  std::array<uint8_t, 4> b{};
  CHECK(f->host_write(*ro, 0, b)->signal == Signal::kSigsegv);
  CHECK(f->host_read(*ro, 0, b)->signal == Signal::kNone);
  CHECK(f->host_read(*ro, 2 * 4096, b)->signal == Signal::kSigsegv);  // past the VMA
  auto none = f->mmap(4096, PROT_NONE, true);
  REQUIRE(none.ok());
  CHECK(f->host_read(*none, 0, b)->signal == Signal::kSigsegv);
  REQUIRE(f->munmap(*ro).ok());
  CHECK(f->host_read(*ro, 0, b)->signal == Signal::kSigsegv);  // unmapped
}

TEST_CASE("punch hole takes pages away from user mappings - the next access sees zeros",
          "[gmem][mmap][punch]") {
  GmemFixture fx;
  auto f = fx.make(4, kShared);
  auto m = f->mmap(4 * 4096, RW, true);
  REQUIRE(m.ok());
  std::vector<uint8_t> data(4096, 0x5a);
  REQUIRE(f->host_write(*m, 4096, data)->signal == Signal::kNone);
  const Pfn old = *f->user_pte(*m, 4096);
  REQUIRE(f->fallocate(PUNCH, 4096, 4096).ok());
  CHECK_FALSE(f->user_pte(*m, 4096).has_value());
  REQUIRE(fx.vm.invalidated.size() == 1);
  CHECK(fx.vm.invalidated[0].first == old);
  std::vector<uint8_t> out(4096, 0xff);
  auto rd = f->host_read(*m, 4096, out);
  REQUIRE(rd.ok());
  CHECK(rd->faults == 1);
  CHECK(out == std::vector<uint8_t>(4096, 0));
}

// ---- §6.1 madvise
// --------------------------------------------------------------------------------

TEST_CASE("madvise: HUGEPAGE accepted, COLLAPSE -> EINVAL, invalid advice -> EINVAL",
          "[gmem][madvise]") {
  GmemFixture fx;
  auto f = fx.make(4, kShared);
  auto m = f->mmap(4 * 4096, RW, true);
  REQUIRE(m.ok());
  CHECK(f->madvise(*m, 0, 4 * 4096, MADV_HUGEPAGE).ok());
  CHECK(f->madvise(*m, 0, 4 * 4096, MADV_NOHUGEPAGE).ok());
  CHECK(err(f->madvise(*m, 0, 4 * 4096, MADV_COLLAPSE)) == Errno::kEINVAL);
  CHECK(err(f->madvise(*m, 0, 4096, 12345)) == Errno::kEINVAL);
  CHECK(err(f->madvise(*m, 1, 4096, MADV_DONTNEED)) == Errno::kEINVAL);      // unaligned start
  CHECK(err(f->madvise(*m, 0, 8 * 4096, MADV_HUGEPAGE)) == Errno::kENOMEM);  // runs past the VMA
  CHECK(err(f->madvise(GmemMapping{99}, 0, 4096, MADV_NORMAL)) == Errno::kENOMEM);
  CHECK(f->madvise(*m, 0, 0, MADV_COLLAPSE).ok());  // empty range: nothing to do
}

TEST_CASE("madvise DONTNEED drops the PTE - the refault finds the same folio and data",
          "[gmem][madvise]") {
  GmemFixture fx;
  auto f = fx.make(4, kShared);
  auto m = f->mmap(4 * 4096, RW, true);
  REQUIRE(m.ok());
  std::vector<uint8_t> data(64, 0x6b);
  REQUIRE(f->host_write(*m, 2 * 4096, data)->signal == Signal::kNone);
  const Pfn pfn = *f->user_pte(*m, 2 * 4096);
  const uint64_t faults = f->inode().stats().user_faults;
  REQUIRE(f->madvise(*m, 0, 4 * 4096, MADV_DONTNEED).ok());
  CHECK_FALSE(f->user_pte(*m, 2 * 4096).has_value());
  CHECK(f->inode().nr_folios() == 1);  // still in the page cache
  std::vector<uint8_t> out(64);
  auto rd = f->host_read(*m, 2 * 4096, out);
  REQUIRE(rd.ok());
  CHECK(rd->faults == 1);
  CHECK(f->inode().stats().user_faults == faults + 1);
  CHECK(f->user_pte(*m, 2 * 4096) == pfn);
  CHECK(out == data);
  CHECK(f->inode().stats().folios_zeroed == 1);  // zeroed on the first fault only
  // DONTNEED past the end of the VMA applies to the mapped part, then reports ENOMEM.
  CHECK(err(f->madvise(*m, 2 * 4096, 8 * 4096, MADV_DONTNEED)) == Errno::kENOMEM);
  CHECK_FALSE(f->user_pte(*m, 2 * 4096).has_value());
}

TEST_CASE("memory failure on a mapped page: the PTE goes, the next access is SIGBUS",
          "[gmem][mmap][hwpoison]") {
  GmemFixture fx;
  auto f = fx.make(4, kShared);
  auto m = f->mmap(4 * 4096, RW, true);
  REQUIRE(m.ok());
  std::array<uint8_t, 8> b{};
  REQUIRE(f->host_write(*m, 0, b)->signal == Signal::kNone);
  REQUIRE(f->memory_failure(GmemPgoff(0)).ok());
  CHECK_FALSE(f->user_pte(*m, 0).has_value());
  CHECK(f->host_read(*m, 0, b)->signal == Signal::kSigbus);
  CHECK(f->host_read(*m, 4096, b)->signal == Signal::kNone);
}

// ---- §6.2 lifetime
// --------------------------------------------------------------------------------

TEST_CASE("a mapping holds a file reference: close keeps the file alive until munmap",
          "[gmem][mmap][lifetime]") {
  GmemFixture fx;
  auto f = fx.make(4, kShared);
  REQUIRE(f->bind(fx.vm, slot(1), Gfn(0x40), 4, 0).ok());
  auto m = f->mmap(4 * 4096, RW, true);
  REQUIRE(m.ok());
  CHECK(f->refcount() == 2);
  REQUIRE(f->close().ok());
  CHECK_FALSE(f->released());
  CHECK(fx.vm.refs == 2);        // still pinned
  CHECK(fx.vm.unbound.empty());  // slots still live
  CHECK(f->get_pfn(slot(1), Gfn(0x41), Gfn(0x40), GmemPgoff(0)).ok());
  std::array<uint8_t, 4> b{1, 2, 3, 4};
  CHECK(f->host_write(*m, 0, b)->signal == Signal::kNone);
  REQUIRE(f->munmap(*m).ok());
  CHECK(f->released());
  CHECK(fx.vm.refs == 1);
  CHECK(fx.vm.unbound == std::vector<SlotId>{slot(1)});
  CHECK(f->munmap(*m).ok());  // already gone: no-op, no double put
  CHECK(fx.vm.refs == 1);
}

TEST_CASE("close zaps every bound slot, leaves dead slots, puts the VM, then frees the memory",
          "[gmem][lifetime]") {
  GmemFixture fx;
  auto f = fx.make(16);
  REQUIRE(f->bind(fx.vm, slot(1), Gfn(0x1000), 4, 0).ok());
  REQUIRE(f->bind(fx.vm, slot(7, 1), Gfn(0x8000), 8, 8 * 4096).ok());
  std::vector<Pfn> pfns;
  for (uint64_t i = 0; i < 2; ++i)
    pfns.push_back(f->get_pfn(slot(1), Gfn(0x1000 + i), Gfn(0x1000), GmemPgoff(0))->pfn);
  pfns.push_back(f->get_pfn(slot(7, 1), Gfn(0x8003), Gfn(0x8000), GmemPgoff(8))->pfn);
  REQUIRE(f->fallocate(KEEP, 5 * 4096, 4096).ok());  // an unbound allocated page
  pfns.push_back(f->inode().folio(GmemPgoff(5))->pfn);
  fx.vm.clear();
  const uint64_t free_before = fx.frames.free_frames();

  REQUIRE(f->close().ok());
  CHECK(f->released());
  CHECK(fx.vm.log == std::vector<std::string>{"unbound", "unbound", "begin", "unmap", "unmap",
                                              "flush", "end", "put", "invalidate", "invalidate",
                                              "invalidate", "invalidate"});
  CHECK(fx.vm.unbound == std::vector<SlotId>{slot(1), slot(7, 1)});
  // [0, ~0) in pgoff space maps to each binding's whole gfn range, with the inode's filter.
  REQUIRE(fx.vm.unmaps.size() == 2);
  CHECK(fx.vm.unmaps[0].gfns == GfnRange{Gfn(0x1000), Gfn(0x1004)});
  CHECK(fx.vm.unmaps[1].gfns == GfnRange{Gfn(0x8000), Gfn(0x8008)});
  CHECK(fx.vm.unmaps[1].filter == AttrFilter::kPrivate);
  CHECK(fx.vm.refs == 1);
  // The inode's last reference is gone: every folio freed through kvm_arch_gmem_invalidate.
  REQUIRE(fx.vm.invalidated.size() == 4);
  for (size_t i = 0; i < fx.vm.invalidated.size(); ++i) {
    CHECK(fx.vm.invalidated[i].second == fx.vm.invalidated[i].first + 1);
    CHECK(std::find(pfns.begin(), pfns.end(), fx.vm.invalidated[i].first) != pfns.end());
  }
  CHECK(fx.frames.free_frames() == free_before + 4);
  CHECK(f->inode().nr_folios() == 0);
  CHECK(f->inode().evicted());
  CHECK(f->bindings().empty());
  // Dead slots: a private fault gets EFAULT (-> KVM_EXIT_MEMORY_FAULT); deleting them is fine.
  CHECK(err(f->get_pfn(slot(1), Gfn(0x1000), Gfn(0x1000), GmemPgoff(0))) == Errno::kEFAULT);
  CHECK(err(f->get_pfn(slot(7, 1), Gfn(0x8003), Gfn(0x8000), GmemPgoff(8))) == Errno::kEFAULT);
  f->unbind(slot(1));
  CHECK(fx.vm.log.back() == "invalidate");  // unbind after release: nothing happens
}

TEST_CASE("close of an INIT_SHARED file zaps with the shared filter - no bindings, no zap",
          "[gmem][lifetime]") {
  GmemFixture fx;
  auto shared = fx.make(4, kShared);
  REQUIRE(shared->bind(fx.vm, slot(1), Gfn(0), 4, 0).ok());
  REQUIRE(shared->close().ok());
  REQUIRE(fx.vm.unmaps.size() == 1);
  CHECK(fx.vm.unmaps[0].filter == AttrFilter::kShared);
  fx.vm.clear();
  auto lone = fx.make(4);
  fx.vm.log.clear();
  REQUIRE(lone->close().ok());
  CHECK(fx.vm.log == std::vector<std::string>{"put"});  // nothing bound, nothing allocated
}

TEST_CASE("the file outlives the VM's own fd: fallocate still works", "[gmem][lifetime]") {
  GmemFixture fx;
  auto f = fx.make(8);
  REQUIRE(f->bind(fx.vm, slot(1), Gfn(0), 8, 0).ok());
  fx.vm.kvm_put();         // userspace closes the VM fd (kvm_vm_free in the selftest)
  CHECK(fx.vm.refs == 1);  // the guest_memfd's reference keeps the VM
  CHECK(f->fallocate(PUNCH, 0, 8 * 4096).ok());
  CHECK(f->fallocate(KEEP, 0, 8 * 4096).ok());
  REQUIRE(f->close().ok());
  CHECK(fx.vm.refs == 0);
}

// ---- statistics and determinism
// ---------------------------------------------------------------------

TEST_CASE("statistics are named with unit and description and add up into host totals",
          "[gmem][stats]") {
  GmemFixture fx;
  auto a = fx.make(8, kShared);
  auto b = fx.make(8);
  REQUIRE(a->bind(fx.vm, slot(1), Gfn(0), 8, 0).ok());
  REQUIRE(b->bind(fx.vm, slot(2), Gfn(0x100), 8, 0).ok());
  REQUIRE(a->get_pfn(slot(1), Gfn(1), Gfn(0), GmemPgoff(0)).ok());
  REQUIRE(b->get_pfn(slot(2), Gfn(0x101), Gfn(0x100), GmemPgoff(0)).ok());
  CHECK_FALSE(b->get_pfn(slot(2), Gfn(0x200), Gfn(0x100), GmemPgoff(0)).ok());
  auto m = a->mmap(16 * 4096, RW, true);
  REQUIRE(m.ok());
  std::array<uint8_t, 4> x{};
  REQUIRE(a->host_read(*m, 3 * 4096, x)->signal == Signal::kNone);
  REQUIRE(a->host_read(*m, 9 * 4096, x)->signal == Signal::kSigbus);
  REQUIRE(a->fallocate(PUNCH, 0, 8 * 4096).ok());

  RecordingStats s;
  a->describe_stats(s);
  for (const auto& [name, e] : s.counters) {
    INFO(name);
    CHECK_FALSE(e.unit.empty());
    CHECK_FALSE(e.description.empty());
  }
  CHECK(s.at("folios_allocated") == 2);
  CHECK(s.at("folios_freed") == 2);
  CHECK(s.at("bytes_zeroed") == 2 * 4096);
  CHECK(s.at("get_pfn_calls") == 1);
  CHECK(s.at("prepare_calls") == 1);
  CHECK(s.at("user_faults") == 2);
  CHECK(s.at("sigbus") == 1);
  CHECK(s.at("punch_holes") == 1);
  CHECK(s.at("mmu_invalidations") == 1);
  CHECK(s.at("arch_invalidate_calls") == 2);
  RecordingStats t;
  fx.totals.describe_stats(t);
  CHECK(t.at("get_pfn_calls") == 3);
  CHECK(t.at("get_pfn_errors") == 1);
  CHECK(t.at("folios_allocated") == 3);
  CHECK(t.at("binds") == 2);
}

TEST_CASE("the same operations give the same frames and statistics", "[gmem][determinism]") {
  auto run = [] {
    GmemFixture fx;
    auto f = fx.make(32, kShared);
    REQUIRE(f->bind(fx.vm, slot(1), Gfn(0x100), 16, 0).ok());
    std::vector<uint64_t> trace;
    for (uint64_t i = 0; i < 16; i += 3)
      trace.push_back(f->get_pfn(slot(1), Gfn(0x100 + i), Gfn(0x100), GmemPgoff(0))->pfn.value());
    REQUIRE(f->fallocate(PUNCH, 3 * 4096, 6 * 4096).ok());
    REQUIRE(f->fallocate(KEEP, 0, 32 * 4096).ok());
    for (uint64_t i = 0; i < 32; ++i) trace.push_back(f->inode().folio(GmemPgoff(i))->pfn.value());
    for (const auto& [s, e] : fx.vm.invalidated) trace.push_back(s.value());
    RecordingStats st;
    f->describe_stats(st);
    for (const auto& [name, e] : st.counters) trace.push_back(e.value);
    return trace;
  };
  CHECK(run() == run());
}
