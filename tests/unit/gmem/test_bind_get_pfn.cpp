// kvm_gmem_bind/unbind (kvm-guest-memfd.md §4), kvm_gmem_get_pfn (§6.3), populate (§6.6) and
// punch-hole invalidation (§6.1).
#include <catch2/catch.hpp>

#include "gmem_test_util.h"

using namespace cvmsim;
using namespace cvmsim::test;

namespace {
constexpr int KEEP = FALLOC_FL_KEEP_SIZE;
constexpr int PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
}  // namespace

// ---- §4 kvm_gmem_bind, in order --------------------------------------------------------------

TEST_CASE("bind rule: a file created by another VM -> EINVAL", "[gmem][bind]") {
  GmemFixture fx;
  FakeVm other;
  auto f = fx.make(16);
  CHECK(err(f->bind(other, slot(1), Gfn(0), 4, 0)) == Errno::kEINVAL);
  // Also when the request is otherwise wrong in a later rule; and nothing was bound.
  CHECK(err(f->bind(other, slot(1), Gfn(0), 4, 1)) == Errno::kEINVAL);
  CHECK(f->bindings().empty());
  CHECK(other.log.empty());
  CHECK(f->bind(fx.vm, slot(1), Gfn(0), 4, 0).ok());
}

TEST_CASE("bind rule: offset < 0, unaligned, or offset + size > i_size -> EINVAL", "[gmem][bind]") {
  GmemFixture fx;
  auto f = fx.make(16);
  CHECK(err(f->bind(fx.vm, slot(1), Gfn(0), 4, -4096)) == Errno::kEINVAL);
  CHECK(err(f->bind(fx.vm, slot(1), Gfn(0), 4, 100)) == Errno::kEINVAL);
  CHECK(err(f->bind(fx.vm, slot(1), Gfn(0), 17, 0)) == Errno::kEINVAL);
  CHECK(err(f->bind(fx.vm, slot(1), Gfn(0), 4, 13 * 4096)) == Errno::kEINVAL);
  CHECK(err(f->bind(fx.vm, slot(1), Gfn(0), 1ull << 60, 4096)) ==
        Errno::kEINVAL);  // size overflows
  CHECK(f->bindings().empty());
  CHECK(f->bind(fx.vm, slot(1), Gfn(0), 4, 12 * 4096).ok());  // exactly up to i_size
}

TEST_CASE("bind rule: a file range overlapping an existing binding -> EINVAL", "[gmem][bind]") {
  GmemFixture fx;
  auto f = fx.make(32);
  REQUIRE(f->bind(fx.vm, slot(1), Gfn(0x100), 8, 8 * 4096).ok());                  // pages [8, 16)
  CHECK(err(f->bind(fx.vm, slot(2), Gfn(0x900), 8, 8 * 4096)) == Errno::kEINVAL);  // same
  CHECK(err(f->bind(fx.vm, slot(2), Gfn(0x900), 4, 4 * 4096 + 4096)) == Errno::kEINVAL);  // [5, 9)
  CHECK(err(f->bind(fx.vm, slot(2), Gfn(0x900), 4, 15 * 4096)) == Errno::kEINVAL);  // [15, 19)
  CHECK(err(f->bind(fx.vm, slot(2), Gfn(0x900), 2, 10 * 4096)) == Errno::kEINVAL);  // inside
  CHECK(err(f->bind(fx.vm, slot(2), Gfn(0x900), 32, 0)) == Errno::kEINVAL);         // around
  // Adjacent ranges are fine on both sides.
  CHECK(f->bind(fx.vm, slot(2), Gfn(0x900), 8, 0).ok());
  CHECK(f->bind(fx.vm, slot(3), Gfn(0xa00), 16, 16 * 4096).ok());
  CHECK(f->bindings().size() == 3);
  // The range check comes before the overlap check: both wrong -> the range rule's EINVAL, and
  // an overlap with an unaligned offset never looks at the bindings.
  CHECK(err(f->bind(fx.vm, slot(4), Gfn(0), 4, 8 * 4096 + 1)) == Errno::kEINVAL);
}

TEST_CASE("bind: slot pgoff and GMEM_ONLY - the memslot does not pin the file",
          "[gmem][bind][lifetime]") {
  GmemFixture fx;
  auto plain = fx.make(16);
  auto mappable = fx.make(16, GUEST_MEMFD_FLAG_MMAP);
  auto b1 = plain->bind(fx.vm, slot(1), Gfn(0x100), 4, 8 * 4096);
  auto b2 = mappable->bind(fx.vm, slot(2), Gfn(0x200), 4, 0);
  REQUIRE(b1.ok());
  REQUIRE(b2.ok());
  CHECK(b1->pgoff == GmemPgoff(8));
  CHECK_FALSE(b1->gmem_only);
  CHECK(b2->gmem_only);           // §4: a file with GUEST_MEMFD_FLAG_MMAP makes the slot gmem-only
  CHECK(plain->refcount() == 1);  // fget's reference was dropped
  REQUIRE(plain->close().ok());
  CHECK(plain->released());  // the binding did not keep it alive
}

TEST_CASE("bind after close -> EBADF", "[gmem][bind]") {
  GmemFixture fx;
  auto f = fx.make(4);
  REQUIRE(f->close().ok());
  CHECK(err(f->bind(fx.vm, slot(1), Gfn(0), 4, 0)) == Errno::kEBADF);
}

TEST_CASE("one file backs several slots of the same VM at disjoint offsets",
          "[gmem][bind][get_pfn]") {
  GmemFixture fx;
  auto f = fx.make(16);
  REQUIRE(f->bind(fx.vm, slot(1), Gfn(0x1000), 8, 0).ok());
  REQUIRE(f->bind(fx.vm, slot(2, 1), Gfn(0x1000), 8, 8 * 4096).ok());  // another address space
  auto p1 = f->get_pfn(slot(1), Gfn(0x1003), Gfn(0x1000), GmemPgoff(0));
  auto p2 = f->get_pfn(slot(2, 1), Gfn(0x1003), Gfn(0x1000), GmemPgoff(8));
  REQUIRE(p1.ok());
  REQUIRE(p2.ok());
  CHECK(p1->pfn != p2->pfn);
  CHECK(f->inode().folio(GmemPgoff(3))->pfn == p1->pfn);  // index = gfn - base + pgoff
  CHECK(f->inode().folio(GmemPgoff(11))->pfn == p2->pfn);
  // The same gfn again: the same folio.
  CHECK(f->get_pfn(slot(1), Gfn(0x1003), Gfn(0x1000), GmemPgoff(0))->pfn == p1->pfn);
  // A slot asking for an index bound to the other slot is a KVM bug -> EIO.
  CHECK(err(f->get_pfn(slot(1), Gfn(0x1009), Gfn(0x1000), GmemPgoff(0))) == Errno::kEIO);
}

TEST_CASE("unbind clears the range: get_pfn -> EIO, the range can be bound again", "[gmem][bind]") {
  GmemFixture fx;
  auto f = fx.make(16);
  REQUIRE(f->bind(fx.vm, slot(1), Gfn(0x100), 8, 0).ok());
  REQUIRE(f->get_pfn(slot(1), Gfn(0x100), Gfn(0x100), GmemPgoff(0)).ok());
  f->unbind(slot(1));
  CHECK(f->bindings().empty());
  CHECK(err(f->get_pfn(slot(1), Gfn(0x100), Gfn(0x100), GmemPgoff(0))) == Errno::kEIO);
  CHECK(f->inode().nr_folios() == 1);  // unbinding frees nothing: memory belongs to the inode
  f->unbind(slot(1));                  // unknown slot: no-op
  CHECK(f->bind(fx.vm, slot(5), Gfn(0x500), 8, 0).ok());
}

// ---- §6.3 kvm_gmem_get_pfn ----------------------------------------------------------------------

TEST_CASE("get_pfn rule: released file -> EFAULT (dead slot)", "[gmem][get_pfn]") {
  GmemFixture fx;
  auto f = fx.make(8);
  REQUIRE(f->bind(fx.vm, slot(1), Gfn(0), 8, 0).ok());
  REQUIRE(f->close().ok());
  CHECK(err(f->get_pfn(slot(1), Gfn(0), Gfn(0), GmemPgoff(0))) == Errno::kEFAULT);
  CHECK(err(f->populate_get_pfn(slot(1), Gfn(0), Gfn(0), GmemPgoff(0))) == Errno::kEFAULT);
}

TEST_CASE("get_pfn rule: index not bound to this slot -> EIO", "[gmem][get_pfn]") {
  GmemFixture fx;
  auto f = fx.make(8);
  CHECK(err(f->get_pfn(slot(1), Gfn(0), Gfn(0), GmemPgoff(0))) == Errno::kEIO);  // nothing bound
  REQUIRE(f->bind(fx.vm, slot(1), Gfn(0x40), 4, 0).ok());
  CHECK(err(f->get_pfn(slot(2), Gfn(0x40), Gfn(0x40), GmemPgoff(0))) == Errno::kEIO);  // other slot
  CHECK(err(f->get_pfn(slot(1), Gfn(0x44), Gfn(0x40), GmemPgoff(0))) ==
        Errno::kEIO);                  // past the slot
  CHECK(f->inode().nr_folios() == 0);  // checked before any allocation
  CHECK(fx.vm.prepares.empty());
}

TEST_CASE("get_pfn rule: allocation failure -> ENOMEM", "[gmem][get_pfn]") {
  PhysMem mem(2 << 20, MemMode::kData);
  PageAllocator frames(Pfn(0), 1);
  GmemInodeNumbers inos;
  FakeVm vm;
  kvm_create_guest_memfd args;
  args.size = 4 * kPage;
  auto f = *GmemFile::create(vm, args, 0, GmemEnv{mem, frames, inos});
  REQUIRE(f->bind(vm, slot(1), Gfn(0), 4, 0).ok());
  REQUIRE(f->get_pfn(slot(1), Gfn(0), Gfn(0), GmemPgoff(0)).ok());
  CHECK(err(f->get_pfn(slot(1), Gfn(1), Gfn(0), GmemPgoff(0))) == Errno::kENOMEM);
  CHECK(vm.prepares.size() == 1);
}

TEST_CASE("get_pfn rule: hwpoison -> EHWPOISON (after memory_failure)",
          "[gmem][get_pfn][hwpoison]") {
  GmemFixture fx;
  auto f = fx.make(8);
  REQUIRE(f->bind(fx.vm, slot(1), Gfn(0x100), 8, 0).ok());
  auto p = f->get_pfn(slot(1), Gfn(0x102), Gfn(0x100), GmemPgoff(0));
  REQUIRE(p.ok());
  fx.vm.clear();
  REQUIRE(f->memory_failure(GmemPgoff(2)).ok());
  // §6.1: invalidate begin/end over the folio in every binding, no truncation.
  CHECK(fx.vm.log == std::vector<std::string>{"begin", "unmap", "flush", "end"});
  REQUIRE(fx.vm.unmaps.size() == 1);
  CHECK(fx.vm.unmaps[0].gfns == GfnRange{Gfn(0x102), Gfn(0x103)});
  CHECK(fx.vm.invalidated.empty());
  REQUIRE(f->inode().folio(GmemPgoff(2)));
  CHECK(f->inode().folio(GmemPgoff(2))->hwpoison);
  CHECK(err(f->get_pfn(slot(1), Gfn(0x102), Gfn(0x100), GmemPgoff(0))) == Errno::kEHWPOISON);
  CHECK(err(f->populate_get_pfn(slot(1), Gfn(0x102), Gfn(0x100), GmemPgoff(0))) ==
        Errno::kEHWPOISON);
  CHECK(f->get_pfn(slot(1), Gfn(0x103), Gfn(0x100), GmemPgoff(0)).ok());  // neighbours unaffected
  CHECK(err(f->memory_failure(GmemPgoff(2))) == Errno::kEHWPOISON);       // already poisoned
  CHECK(err(f->memory_failure(GmemPgoff(7))) == Errno::kENOENT);          // no folio there
}

TEST_CASE("get_pfn zeroes on first hand-out, not at allocation, and scrubs the label",
          "[gmem][get_pfn][zero]") {
  GmemFixture fx;
  auto f = fx.make(8);
  REQUIRE(f->bind(fx.vm, slot(1), Gfn(0x100), 8, 0).ok());
  REQUIRE(f->fallocate(KEEP, 0, 4096).ok());
  const Pfn pfn = f->inode().folio(GmemPgoff(0))->pfn;
  // Stale data of a previous owner in the frame after allocation: fallocate left it alone.
  fx.scribble(pfn, 0xa5, vm_principal(7));
  fx.mem.set_key(pfn, 9);
  CHECK(fx.byte_at(pfn, 100) == 0xa5);
  auto p = f->get_pfn(slot(1), Gfn(0x100), Gfn(0x100), GmemPgoff(0));
  REQUIRE(p.ok());
  CHECK(p->pfn == pfn);
  CHECK(p->max_order == 0);
  CHECK(p->bytes_zeroed == 4096);
  CHECK(fx.mem.is_zero(pfn));
  CHECK(fx.mem.meta(pfn).label == kNobody);  // no stale secret label survives the scrub
  CHECK(fx.mem.meta(pfn).key_id == 0);
  CHECK(f->inode().folio(GmemPgoff(0))->uptodate);
  // The guest's own data is not zeroed by later calls.
  fx.scribble(pfn, 0x3c);
  auto again = f->get_pfn(slot(1), Gfn(0x100), Gfn(0x100), GmemPgoff(0));
  REQUIRE(again.ok());
  CHECK(again->bytes_zeroed == 0);
  CHECK(fx.byte_at(pfn) == 0x3c);
  CHECK(f->inode().stats().bytes_zeroed == 4096);
}

TEST_CASE("get_pfn calls arch prepare every time, for the right gfn and pfn",
          "[gmem][get_pfn][prepare]") {
  GmemFixture fx;
  auto f = fx.make(16);
  REQUIRE(f->bind(fx.vm, slot(3), Gfn(0x2000), 8, 8 * 4096).ok());
  for (int i = 0; i < 3; ++i)
    REQUIRE(f->get_pfn(slot(3), Gfn(0x2005), Gfn(0x2000), GmemPgoff(8)).ok());
  REQUIRE(fx.vm.prepares.size() == 3);  // no "prepared" tracking in the mainline baseline
  const Pfn pfn = f->inode().folio(GmemPgoff(13))->pfn;
  for (const auto& p : fx.vm.prepares) {
    CHECK(p.gfn == Gfn(0x2005));
    CHECK(p.pfn == pfn);
    CHECK(p.order == 0);
  }
  CHECK(f->inode().stats().prepare_calls == 3);
}

TEST_CASE("get_pfn returns the arch prepare error - the folio stays zeroed",
          "[gmem][get_pfn][prepare]") {
  GmemFixture fx;
  auto f = fx.make(4);
  REQUIRE(f->bind(fx.vm, slot(1), Gfn(0), 4, 0).ok());
  fx.vm.prepare_error = Error(Errno::kENOENT);  // e.g. SNP: RMP lookup failure
  CHECK(err(f->get_pfn(slot(1), Gfn(1), Gfn(0), GmemPgoff(0))) == Errno::kENOENT);
  CHECK(f->inode().folio(GmemPgoff(1))->uptodate);
  const ArchStatus busy{StatusDomain::kSnp, 6};
  fx.vm.prepare_error = Error(busy);
  auto r = f->get_pfn(slot(1), Gfn(1), Gfn(0), GmemPgoff(0));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error() == Error(busy));
  fx.vm.prepare_error.reset();
  auto ok = f->get_pfn(slot(1), Gfn(1), Gfn(0), GmemPgoff(0));
  REQUIRE(ok.ok());
  CHECK(ok->bytes_zeroed == 0);
  CHECK(f->inode().stats().prepare_errors == 2);
}

// ---- §6.6 populate ------------------------------------------------------------------------------

TEST_CASE("populate: no zeroing, no prepare - marked uptodate, the guest sees the contents",
          "[gmem][populate]") {
  GmemFixture fx;
  auto f = fx.make(8);
  REQUIRE(f->bind(fx.vm, slot(1), Gfn(0x100), 8, 0).ok());
  auto p = f->populate_get_pfn(slot(1), Gfn(0x101), Gfn(0x100), GmemPgoff(0));
  REQUIRE(p.ok());
  CHECK(p->bytes_zeroed == 0);
  CHECK(fx.vm.prepares.empty());
  fx.scribble(p->pfn, 0x77);  // post_populate copies the measured source
  CHECK(f->mark_uptodate(GmemPgoff(1)));
  auto g = f->get_pfn(slot(1), Gfn(0x101), Gfn(0x100), GmemPgoff(0));
  REQUIRE(g.ok());
  CHECK(g->pfn == p->pfn);
  CHECK(g->bytes_zeroed == 0);
  CHECK(fx.byte_at(p->pfn) == 0x77);
  // Without mark_uptodate (post_populate failed), the first guest use zeroes.
  auto q = f->populate_get_pfn(slot(1), Gfn(0x102), Gfn(0x100), GmemPgoff(0));
  REQUIRE(q.ok());
  fx.scribble(q->pfn, 0x55);
  auto h = f->get_pfn(slot(1), Gfn(0x102), Gfn(0x100), GmemPgoff(0));
  REQUIRE(h.ok());
  CHECK(h->bytes_zeroed == 4096);
  CHECK(fx.mem.is_zero(q->pfn));
  CHECK_FALSE(f->mark_uptodate(GmemPgoff(5)));  // no folio there
  CHECK(err(f->populate_get_pfn(slot(9), Gfn(0x101), Gfn(0x100), GmemPgoff(0))) == Errno::kEIO);
}

// ---- §6.1 punch hole ----------------------------------------------------------------------------

TEST_CASE("punch zaps every overlapping binding with the spec's gfn ranges, then frees",
          "[gmem][punch]") {
  GmemFixture fx;
  auto f = fx.make(32);
  REQUIRE(f->bind(fx.vm, slot(1), Gfn(0x1000), 8, 0).ok());          // pages [0, 8)
  REQUIRE(f->bind(fx.vm, slot(2), Gfn(0x5000), 8, 8 * 4096).ok());   // pages [8, 16)
  REQUIRE(f->bind(fx.vm, slot(3), Gfn(0x9000), 8, 24 * 4096).ok());  // pages [24, 32)
  std::vector<Pfn> pfns;
  for (uint64_t i = 0; i < 16; ++i) {
    const bool first = i < 8;
    auto p = f->get_pfn(first ? slot(1) : slot(2), Gfn((first ? 0x1000 : 0x5000) + i % 8),
                        Gfn(first ? 0x1000 : 0x5000), GmemPgoff(first ? 0 : 8));
    REQUIRE(p.ok());
    pfns.push_back(p->pfn);
  }
  fx.vm.clear();
  const uint64_t free_before = fx.frames.free_frames();
  REQUIRE(f->fallocate(PUNCH, 6 * 4096, 4 * 4096).ok());  // pages [6, 10)
  // One invalidation for the VM, an unmap per overlapping binding, one flush, the frees, the end.
  CHECK(fx.vm.log == std::vector<std::string>{"begin", "unmap", "unmap", "flush", "invalidate",
                                              "invalidate", "invalidate", "invalidate", "end"});
  REQUIRE(fx.vm.unmaps.size() == 2);
  CHECK(fx.vm.unmaps[0].slot == slot(1));
  CHECK(fx.vm.unmaps[0].gfns == GfnRange{Gfn(0x1006), Gfn(0x1008)});
  CHECK(fx.vm.unmaps[0].filter == AttrFilter::kPrivate);
  CHECK(fx.vm.unmaps[1].slot == slot(2));
  CHECK(fx.vm.unmaps[1].gfns == GfnRange{Gfn(0x5000), Gfn(0x5002)});
  // kvm_arch_gmem_invalidate(pfn, pfn + 1) for each freed folio, frames back to the allocator.
  REQUIRE(fx.vm.invalidated.size() == 4);
  for (int i = 0; i < 4; ++i) {
    CHECK(fx.vm.invalidated[i].first == pfns[6 + i]);
    CHECK(fx.vm.invalidated[i].second == pfns[6 + i] + 1);
  }
  CHECK(fx.frames.free_frames() == free_before + 4);
  CHECK(f->inode().nr_folios() == 12);
  CHECK(f->inode().folio(GmemPgoff(7)) == nullptr);
  CHECK(f->inode().folio(GmemPgoff(10)) != nullptr);
  CHECK(f->inode().stats().punched_folios == 4);
}

TEST_CASE("punch: no flush unless an unmap asks - no begin/end without an overlapping binding",
          "[gmem][punch]") {
  GmemFixture fx;
  auto f = fx.make(16);
  REQUIRE(f->bind(fx.vm, slot(1), Gfn(0x100), 4, 0).ok());
  REQUIRE(f->fallocate(KEEP, 0, 16 * 4096).ok());
  fx.vm.clear();
  fx.vm.unmap_wants_flush = false;
  REQUIRE(f->fallocate(PUNCH, 0, 4096).ok());
  CHECK(fx.vm.log == std::vector<std::string>{"begin", "unmap", "invalidate", "end"});
  fx.vm.clear();
  REQUIRE(f->fallocate(PUNCH, 8 * 4096, 2 * 4096).ok());  // unbound part of the file
  CHECK(fx.vm.log == std::vector<std::string>{"invalidate", "invalidate"});
  CHECK(f->inode().nr_folios() == 13);
}

TEST_CASE("punch on an INIT_SHARED inode zaps with the shared filter", "[gmem][punch]") {
  GmemFixture fx;
  auto f = fx.make(4, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
  REQUIRE(f->bind(fx.vm, slot(1), Gfn(0), 4, 0).ok());
  REQUIRE(f->fallocate(PUNCH, 0, 4 * 4096).ok());
  REQUIRE(fx.vm.unmaps.size() == 1);
  CHECK(fx.vm.unmaps[0].filter == AttrFilter::kShared);
  CHECK(fx.vm.unmaps[0].gfns == GfnRange{Gfn(0), Gfn(4)});
}

TEST_CASE("after a punch the next get_pfn hands out a fresh zeroed page", "[gmem][punch][zero]") {
  GmemFixture fx;
  auto f = fx.make(4);
  REQUIRE(f->bind(fx.vm, slot(1), Gfn(0x10), 4, 0).ok());
  auto first = f->get_pfn(slot(1), Gfn(0x12), Gfn(0x10), GmemPgoff(0));
  REQUIRE(first.ok());
  fx.scribble(first->pfn, 0xc3);  // private guest data
  REQUIRE(f->fallocate(PUNCH, 2 * 4096, 4096).ok());
  // Another user of the host allocator gets the frame and writes into it, so whichever frame
  // comes next was dirty.
  fx.scribble(first->pfn, 0xd4, kHostKernel);
  auto second = f->get_pfn(slot(1), Gfn(0x12), Gfn(0x10), GmemPgoff(0));
  REQUIRE(second.ok());
  CHECK(second->bytes_zeroed == 4096);
  CHECK(fx.mem.is_zero(second->pfn));
  CHECK(fx.mem.meta(second->pfn).label == kNobody);
}

TEST_CASE("punch of a hwpoison folio invalidates it but never returns the frame",
          "[gmem][punch][hwpoison]") {
  GmemFixture fx;
  auto f = fx.make(4);
  REQUIRE(f->fallocate(KEEP, 0, 2 * 4096).ok());
  const Pfn bad = f->inode().folio(GmemPgoff(1))->pfn;
  REQUIRE(f->memory_failure(GmemPgoff(1)).ok());
  const uint64_t free_before = fx.frames.free_frames();
  REQUIRE(f->fallocate(PUNCH, 0, 4 * 4096).ok());
  REQUIRE(fx.vm.invalidated.size() == 2);
  CHECK(fx.vm.invalidated[1].first == bad);
  CHECK(fx.frames.free_frames() == free_before + 1);
  CHECK(f->inode().stats().frames_quarantined == 1);
  // The frame never comes back from the allocator.
  for (uint64_t i = 0; i < GmemFixture::kFrames; ++i) {
    auto frame = fx.frames.alloc();
    if (!frame) break;
    CHECK(*frame != bad);
  }
}

TEST_CASE(
    "huge folios: a whole 2 MiB block gives max_order 9 and is zeroed whole; a punched page breaks "
    "it",
    "[gmem][get_pfn][huge]") {
  GmemFixture fx;
  GmemEnv e = fx.env();
  e.huge_folios = true;
  kvm_create_guest_memfd args;
  args.size = 1024 * kPage;  // two 2 MiB blocks
  auto made = GmemFile::create(fx.vm, args, GmemFixture::kAllFlags, e);
  REQUIRE(made.ok());
  auto f = *made;
  REQUIRE(f->bind(fx.vm, slot(1), Gfn(0x200), 1024, 0)
              .ok());  // gfn 0x200 is 2 MiB aligned, like index 0
  auto p = f->get_pfn(slot(1), Gfn(0x205), Gfn(0x200), GmemPgoff(0));
  REQUIRE(p.ok());
  CHECK(p->max_order == 9);
  CHECK(((p->pfn.value() - 5) & 511) == 0);
  CHECK(p->bytes_zeroed == 512 * kPage);
  CHECK(f->inode().stats().huge_folios_allocated == 1);
  CHECK(f->inode().stats().folios_allocated == 512);
  CHECK(f->inode().folio(GmemPgoff(511))->pfn == p->pfn - 5 + 511);
  // The same block again: nothing more to zero.
  CHECK(f->get_pfn(slot(1), Gfn(0x300), Gfn(0x200), GmemPgoff(0))->bytes_zeroed == 0);
  // Punch one page: that 4 KiB goes; the block is no longer whole (max_order 0), and a refault of
  // the hole gets an order-0 folio.
  REQUIRE(f->fallocate(PUNCH, 7 * kPage, kPage).ok());
  CHECK(f->inode().folio(GmemPgoff(7)) == nullptr);
  CHECK(f->get_pfn(slot(1), Gfn(0x205), Gfn(0x200), GmemPgoff(0))->max_order == 0);
  // Someone else takes the freed frame, so the refault gets another one: not contiguous.
  auto other = fx.frames.alloc(PageSize::k4K);
  REQUIRE(other.ok());
  CHECK(*other == p->pfn + 2);
  auto hole = f->get_pfn(slot(1), Gfn(0x207), Gfn(0x200), GmemPgoff(0));
  REQUIRE(hole.ok());
  CHECK(hole->pfn != p->pfn + 2);
  CHECK(hole->max_order == 0);
  CHECK(f->get_pfn(slot(1), Gfn(0x205), Gfn(0x200), GmemPgoff(0))->max_order == 0);
  CHECK(f->inode().stats().huge_folios_allocated == 1);
}

TEST_CASE(
    "huge folios: a binding whose gfn and index are not equally aligned never gives max_order 9",
    "[gmem][get_pfn][huge]") {
  GmemFixture fx;
  GmemEnv e = fx.env();
  e.huge_folios = true;
  kvm_create_guest_memfd args;
  args.size = 1024 * kPage;
  auto f = *GmemFile::create(fx.vm, args, GmemFixture::kAllFlags, e);
  REQUIRE(f->bind(fx.vm, slot(1), Gfn(0x201), 512, 0).ok());  // gfn 0x201 <-> index 0
  auto p = f->get_pfn(slot(1), Gfn(0x201), Gfn(0x201), GmemPgoff(0));
  REQUIRE(p.ok());
  CHECK(f->inode().stats().huge_folios_allocated == 1);  // the file's block is huge...
  CHECK(p->max_order == 0);                              // ...but it cannot be mapped huge here
}
