#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "hw/mmu/stage2_table.h"
#include "hw/mmu/walker.h"
#include "test_support.h"

using namespace cvmsim;
using cvmsim::test::BumpAllocator;

namespace {

struct Fixture {
  explicit Fixture(Stage2Format f, Stage2TableOptions o = {})
      : mem(test::kTestMemBytes, MemMode::kData),
        frames(test::kTableFramesBegin, test::kTableFramesEnd),
        pwc(PwcConfig{}),
        walker(pwc) {
    auto t = Stage2Table::create(mem, frames, f, o);
    REQUIRE(t.ok());
    table = std::move(*t);
  }
  // A walk with a cold page-walk cache.
  WalkResult cold_walk(Gpa g, Perms need = kPermsNone) {
    pwc.invalidate_all();
    return walker.walk(*table, g, 1, need);
  }
  PhysMem mem;
  BumpAllocator frames;
  Pwc pwc;
  Walker walker;
  std::unique_ptr<Stage2Table> table;
};

constexpr uint64_t k2M = 2ull << 20;
constexpr uint64_t k1G = 1ull << 30;

bool is_table_frame(const PhysMem& m, Pfn p) {
  return m.meta(p).flags & kFrameTable;
}

}  // namespace

TEST_CASE("stage-2 table: 4K map, walk and unmap in every format") {
  const Stage2Format f =
      GENERATE(from_range(std::begin(kAllStage2Formats), std::end(kAllStage2Formats)));
  INFO(name_of(f));
  Fixture x(f);
  Stage2Table& t = *x.table;
  const unsigned levels = levels_of(f);
  REQUIRE(t.table_frames_in_use() == 1);
  REQUIRE(is_table_frame(x.mem, t.root()));

  const Gpa g(0x1234'5678'9000ull);
  REQUIRE(t.map(g, Pfn(0x2345), PageSize::k4K, kPermsRW, 3).ok());
  // One new table per level below the root.
  CHECK(t.table_frames_in_use() == levels);
  CHECK(x.frames.live() == levels);
  CHECK(t.stats().maps == 1);

  // The root frame in PhysMem holds a table entry for g's index.
  const uint64_t root_entry = x.mem.read_u64(Stage2Table::entry_hpa(t.root(), g, t.top_level()));
  CHECK(t.codec().kind(root_entry, t.top_level()) == EntryKind::kTable);
  CHECK(t.codec().valid(root_entry, t.top_level()));
  const Pfn next = t.codec().pfn(root_entry);
  CHECK(is_table_frame(x.mem, next));
  CHECK(x.frames.is_live(next));
  // Every table frame reported is marked as a table in PhysMem.
  unsigned n = 0;
  t.for_each_table_frame([&](Pfn p, unsigned) {
    CHECK(is_table_frame(x.mem, p));
    ++n;
  });
  CHECK(n == levels);

  const Stage2Lookup l = t.lookup(g + 0x123);
  REQUIRE(l.mapped());
  CHECK(l.level == 0);
  CHECK(l.base == g);
  CHECK(l.pte.pfn == Pfn(0x2345));
  CHECK(l.pte.perms == kPermsRW);
  CHECK(l.pte.sw == 3);
  CHECK(l.raw == t.codec().encode_leaf(Pfn(0x2345), 0, kPermsRW, 3));
  CHECK(t.raw_entry(g, 0).value() == l.raw);

  // Cold walk reads one entry per level.
  WalkResult w = x.cold_walk(g + 0x10, kPermsW);
  REQUIRE(w.present);
  CHECK(w.fault == WalkFault::kNone);
  CHECK(w.mem_refs == levels);
  CHECK(w.pfn == Pfn(0x2345));
  CHECK(w.size == PageSize::k4K);
  CHECK(w.perms == kPermsRW);
  CHECK(w.sw == 3);
  CHECK(w.raw == l.raw);
  // Warm: the level-1 entry is cached, only the leaf is read.
  w = x.walker.walk(t, g, 1, kPermsR);
  CHECK(w.present);
  CHECK(w.mem_refs == 1);
  // Execute is not granted.
  w = x.walker.walk(t, g, 1, kPermsX);
  CHECK(w.present);
  CHECK(w.fault == WalkFault::kPermission);

  // Neighbour 4K page in the same 2M region: not mapped, one reference, fault at level 0.
  w = x.walker.walk(t, g + 0x1000, 1);
  CHECK_FALSE(w.present);
  CHECK(w.fault == WalkFault::kNotPresent);
  CHECK(w.level == 0);
  CHECK(w.mem_refs == 1);

  // Errors.
  CHECK(t.map(g, Pfn(0x9999), PageSize::k4K, kPermsR).error() == Errno::kEEXIST);
  CHECK(t.unmap(g + 0x1000, PageSize::k4K).error() == Errno::kENOENT);
  CHECK(t.unmap(g, PageSize::k2M).error() == Errno::kEINVAL);  // misaligned for 2M
  CHECK(t.unmap(g.align_down(PageSize::k2M), PageSize::k2M).error() == Errno::kENOENT);
  CHECK(t.map(g + 0x800, Pfn(1), PageSize::k4K, kPermsR).error() == Errno::kEINVAL);
  CHECK(t.map(Gpa(1ull << input_bits_of(f)), Pfn(1), PageSize::k4K, kPermsR).error() ==
        Errno::kEINVAL);
  CHECK(t.map(g + 0x1000, Pfn(1), PageSize::k4K, kPermsR, t.codec().sw_max() + 1).error() ==
        Errno::kEINVAL);
  CHECK(t.map(g + 0x1000, Pfn(t.codec().max_pfn() + 1), PageSize::k4K, kPermsR).error() ==
        Errno::kEINVAL);
  if (f != Stage2Format::kArmS2) {
    CHECK(t.map(g + 0x1000, Pfn(1), PageSize::k4K, kPermsW).error() == Errno::kEINVAL);
  } else {
    CHECK(t.map(g + 0x1000, Pfn(1), PageSize::k4K, kPermsW).ok());  // S2AP=10 is write-only
  }

  REQUIRE(t.unmap(g, PageSize::k4K).ok());
  CHECK(t.stats().unmaps == 1);
  CHECK_FALSE(t.lookup(g).mapped());
  CHECK(t.unmap(g, PageSize::k4K).error() == Errno::kENOENT);
  // The cached upper levels still lead to the (now empty) leaf slot.
  w = x.walker.walk(t, g, 1);
  CHECK_FALSE(w.present);
  CHECK(w.mem_refs == 1);
  // unmap keeps tables.
  CHECK(t.table_frames_in_use() == levels);

  t.destroy();
  CHECK(x.frames.live() == 0);
  CHECK_FALSE(x.frames.double_free_seen());
  CHECK_FALSE(is_table_frame(x.mem, next));
  CHECK(t.map(g, Pfn(1), PageSize::k4K, kPermsR).error() == Errno::kEINVAL);
}

TEST_CASE("stage-2 table: 2M and 1G leaves in every format") {
  const Stage2Format f =
      GENERATE(from_range(std::begin(kAllStage2Formats), std::end(kAllStage2Formats)));
  INFO(name_of(f));
  Fixture x(f);
  Stage2Table& t = *x.table;
  const unsigned levels = levels_of(f);

  const Gpa g2(5 * k1G + 3 * k2M);
  REQUIRE(t.map(g2, Pfn(0x400), PageSize::k2M, kPermsRX).ok());
  CHECK(t.table_frames_in_use() == levels - 1);
  WalkResult w = x.cold_walk(g2 + 0x1F'F123);
  REQUIRE(w.present);
  CHECK(w.mem_refs == levels - 1);
  CHECK(w.size == PageSize::k2M);
  CHECK(w.level == 1);
  CHECK(w.pfn == Pfn(0x400));
  CHECK(w.pfn_for(g2 + 0x1F'F123) == Pfn(0x5FF));
  CHECK(x.walker.walk(t, g2 + 0x5000, 1).mem_refs == 1);
  // Raw layout of the leaf as the table wrote it.
  const uint64_t raw =
      x.mem.read_u64(Stage2Table::entry_hpa(t.codec().pfn(t.raw_entry(g2, 2).value()), g2, 1));
  CHECK(raw == w.raw);
  if (f == Stage2Format::kArmS2) {
    CHECK((raw & 0x3) == 0b01);         // block descriptor
    CHECK(((raw >> 6) & 0x3) == 0b01);  // S2AP read-only
  } else {
    CHECK((raw & 0x80) != 0);  // PS
  }

  const Gpa g1(7 * k1G);
  REQUIRE(t.map(g1, Pfn(0x80000), PageSize::k1G, kPermsRWX).ok());
  w = x.cold_walk(g1 + 0x1234'5678);
  REQUIRE(w.present);
  CHECK(w.mem_refs == levels - 2);
  CHECK(w.size == PageSize::k1G);
  CHECK(w.pfn_for(g1 + 0x1234'5678) == Pfn(0x80000 + 0x12345));
  CHECK(x.walker.walk(t, g1 + 0x3000'0000, 1).mem_refs == 1);

  // Overlaps: 4K inside a 2M leaf, 1G over a 2M leaf, 2M inside a 1G leaf.
  CHECK(t.map(g2 + 0x3000, Pfn(1), PageSize::k4K, kPermsR).error() == Errno::kEEXIST);
  CHECK(t.map(Gpa(5 * k1G), Pfn(0x40000), PageSize::k1G, kPermsR).error() == Errno::kEEXIST);
  CHECK(t.map(g1 + k2M, Pfn(0x200), PageSize::k2M, kPermsR).error() == Errno::kEEXIST);
  // Unmapping a 4K piece of a huge leaf needs a split first.
  CHECK(t.unmap(g2 + 0x3000, PageSize::k4K).error() == Errno::kEINVAL);
  CHECK(t.protect(g2 + 0x3000, PageSize::k4K, kPermsR, 0).error() == Errno::kEINVAL);
  // Misaligned gpa / pfn.
  CHECK(t.map(Gpa(9 * k1G + 0x1000), Pfn(0x200), PageSize::k2M, kPermsR).error() == Errno::kEINVAL);
  CHECK(t.map(Gpa(9 * k1G), Pfn(0x201), PageSize::k2M, kPermsR).error() == Errno::kEINVAL);
  CHECK(t.map(Gpa(9 * k1G), Pfn(0x200), PageSize::k1G, kPermsR).error() == Errno::kEINVAL);

  // A 4K leaf blocks a 2M map over it; once unmapped, the empty table is replaced and freed.
  const Gpa g4(11 * k1G + 4 * k2M + 0x7000);
  REQUIRE(t.map(g4, Pfn(0x3000), PageSize::k4K, kPermsR).ok());
  const uint64_t before = t.table_frames_in_use();
  CHECK(t.map(g4.align_down(PageSize::k2M), Pfn(0x600), PageSize::k2M, kPermsR).error() ==
        Errno::kEEXIST);
  REQUIRE(t.unmap(g4, PageSize::k4K).ok());
  REQUIRE(t.map(g4.align_down(PageSize::k2M), Pfn(0x600), PageSize::k2M, kPermsR).ok());
  CHECK(t.table_frames_in_use() == before - 1);
  // Likewise a 1G map over a region whose tables hold nothing.
  REQUIRE(t.unmap(g4.align_down(PageSize::k2M), PageSize::k2M).ok());
  REQUIRE(t.map(g4.align_down(PageSize::k1G), Pfn(0xC0000), PageSize::k1G, kPermsR).ok());
  CHECK(t.table_frames_in_use() == before - 2);

  REQUIRE(t.unmap(g1, PageSize::k1G).ok());
  CHECK(t.unmap(g1, PageSize::k1G).error() == Errno::kENOENT);
  CHECK_FALSE(x.cold_walk(g1).present);
}

TEST_CASE("stage-2 table: split and merge in every format") {
  const Stage2Format f =
      GENERATE(from_range(std::begin(kAllStage2Formats), std::end(kAllStage2Formats)));
  INFO(name_of(f));
  Fixture x(f);
  Stage2Table& t = *x.table;
  const unsigned levels = levels_of(f);
  const uint16_t sw = 0x5;

  const Gpa g(3 * k1G + 6 * k2M);
  const Pfn p(0x1600);  // 2M-aligned frame
  REQUIRE(t.map(g, p, PageSize::k2M, kPermsRW, sw).ok());
  const unsigned samples[] = {0, 1, 2, 255, 256, 510, 511};
  std::vector<Pfn> before;
  for (unsigned i : samples)
    before.push_back(x.cold_walk(g + i * 4096ull + 8).pfn_for(g + i * 4096ull + 8));

  const uint64_t frames = t.table_frames_in_use();
  CHECK(t.split(g, PageSize::k4K).error() == Errno::kEINVAL);
  CHECK(t.split(g + k2M, PageSize::k2M).error() == Errno::kENOENT);
  REQUIRE(t.split(g, PageSize::k2M).ok());
  CHECK(t.table_frames_in_use() == frames + 1);
  CHECK(t.stats().splits == 1);
  CHECK(t.split(g, PageSize::k2M).error() == Errno::kENOENT);  // already a table
  for (size_t k = 0; k < std::size(samples); ++k) {
    const Gpa a = g + samples[k] * 4096ull + 8;
    const WalkResult w = x.cold_walk(a);
    REQUIRE(w.present);
    CHECK(w.size == PageSize::k4K);
    CHECK(w.mem_refs == levels);
    CHECK(w.pfn_for(a) == before[k]);
    CHECK(w.perms == kPermsRW);
    CHECK(w.sw == sw);
  }

  // Merge refuses non-uniform children.
  REQUIRE(t.protect(g + 7 * 4096ull, PageSize::k4K, kPermsR, sw).ok());
  CHECK(t.merge(g, PageSize::k2M).error() == Errno::kEINVAL);
  REQUIRE(t.protect(g + 7 * 4096ull, PageSize::k4K, kPermsRW, sw + 1).ok());
  CHECK(t.merge(g, PageSize::k2M).error() == Errno::kEINVAL);
  REQUIRE(t.protect(g + 7 * 4096ull, PageSize::k4K, kPermsRW, sw).ok());
  REQUIRE(t.unmap(g + 9 * 4096ull, PageSize::k4K).ok());
  CHECK(t.merge(g, PageSize::k2M).error() == Errno::kEINVAL);
  REQUIRE(t.map(g + 9 * 4096ull, p + 10, PageSize::k4K, kPermsRW, sw).ok());  // not contiguous
  CHECK(t.merge(g, PageSize::k2M).error() == Errno::kEINVAL);
  REQUIRE(t.unmap(g + 9 * 4096ull, PageSize::k4K).ok());
  REQUIRE(t.map(g + 9 * 4096ull, p + 9, PageSize::k4K, kPermsRW, sw).ok());

  CHECK(t.merge(g + k2M, PageSize::k2M).error() == Errno::kENOENT);
  REQUIRE(t.merge(g, PageSize::k2M).ok());
  CHECK(t.stats().merges == 1);
  CHECK(t.table_frames_in_use() == frames);
  CHECK(x.frames.live() == frames);
  CHECK(t.merge(g, PageSize::k2M).error() == Errno::kEINVAL);  // a leaf already
  const WalkResult w = x.cold_walk(g + 0x12345);
  REQUIRE(w.present);
  CHECK(w.size == PageSize::k2M);
  CHECK(w.mem_refs == levels - 1);
  CHECK(w.pfn == p);
  CHECK(w.sw == sw);

  // Contiguous 4K leaves from a frame that is not 2M-aligned cannot merge.
  const Gpa h(4 * k1G);
  for (unsigned i = 0; i < 512; ++i) {
    REQUIRE(t.map(h + i * 4096ull, Pfn(0x2001 + i), PageSize::k4K, kPermsR).ok());
  }
  CHECK(t.merge(h, PageSize::k2M).error() == Errno::kEINVAL);

  // 1G split into 512 2M leaves and back.
  const Gpa g1(9 * k1G);
  REQUIRE(t.map(g1, Pfn(0x40000), PageSize::k1G, kPermsRWX).ok());
  const uint64_t f1 = t.table_frames_in_use();
  REQUIRE(t.split(g1, PageSize::k1G).ok());
  CHECK(t.table_frames_in_use() == f1 + 1);
  WalkResult w1 = x.cold_walk(g1 + 300 * k2M + 0x1000);
  REQUIRE(w1.present);
  CHECK(w1.size == PageSize::k2M);
  CHECK(w1.pfn_for(g1 + 300 * k2M + 0x1000) == Pfn(0x40000 + 300 * 512 + 1));
  CHECK(w1.mem_refs == levels - 1);
  REQUIRE(t.merge(g1, PageSize::k1G).ok());
  CHECK(t.table_frames_in_use() == f1);
  w1 = x.cold_walk(g1 + 300 * k2M);
  CHECK(w1.size == PageSize::k1G);
  CHECK(w1.mem_refs == levels - 2);
  CHECK_FALSE(x.frames.double_free_seen());
}

TEST_CASE("stage-2 table: protect changes perms and software bits") {
  Fixture x(Stage2Format::kEpt4);
  Stage2Table& t = *x.table;
  const Gpa g(0x8000'0000);
  REQUIRE(t.map(g, Pfn(0x100), PageSize::k4K, kPermsRWX, 1, /*suppress_ve=*/true).ok());
  CHECK(x.cold_walk(g, kPermsW).fault == WalkFault::kNone);
  REQUIRE(t.protect(g, PageSize::k4K, kPermsR, 0x42).ok());
  WalkResult w = x.cold_walk(g, kPermsW);
  CHECK(w.present);
  CHECK(w.fault == WalkFault::kPermission);
  CHECK(w.sw == 0x42);
  CHECK(w.pfn == Pfn(0x100));
  CHECK(t.lookup(g).pte.suppress_ve);  // kept
  CHECK(t.protect(g + 0x1000, PageSize::k4K, kPermsR, 0).error() == Errno::kENOENT);
  CHECK(t.protect(g, PageSize::k4K, kPermsW, 0).error() == Errno::kEINVAL);
  CHECK(t.stats().protects == 1);
  // RWX=000 (TDX PENDING-like): software keeps the leaf, hardware sees nothing.
  REQUIRE(t.protect(g, PageSize::k4K, kPermsNone, 0x10).ok());
  w = x.cold_walk(g);
  CHECK_FALSE(w.present);
  CHECK(w.fault == WalkFault::kNotPresent);
  CHECK(w.kind == EntryKind::kLeaf);
  CHECK(w.sw == 0x10);
  CHECK(EptCodec::suppress_ve(w.raw));
  REQUIRE(t.set_suppress_ve(g, PageSize::k4K, false).ok());
  CHECK_FALSE(t.lookup(g).pte.suppress_ve);
  CHECK(t.lookup(g).mapped());
  Fixture a(Stage2Format::kArmS2);
  REQUIRE(a.table->map(g, Pfn(1), PageSize::k4K, kPermsR).ok());
  CHECK(a.table->set_suppress_ve(g, PageSize::k4K, true).error() == Errno::kEOPNOTSUPP);
  CHECK(a.table->map(g + 0x1000, Pfn(1), PageSize::k4K, kPermsR, 0, true).error() ==
        Errno::kEINVAL);
}

TEST_CASE("stage-2 table: unmap_range zaps leaves and reclaims tables") {
  const Stage2Format f = GENERATE(Stage2Format::kEpt4, Stage2Format::kNpt5, Stage2Format::kArmS2);
  INFO(name_of(f));
  Fixture x(f);
  Stage2Table& t = *x.table;
  const Gpa base(2 * k1G);
  for (unsigned i = 0; i < 20; ++i) {
    REQUIRE(t.map(base + i * 4096ull, Pfn(0x100 + i), PageSize::k4K, kPermsRW).ok());
  }
  REQUIRE(t.map(base + 4 * k2M, Pfn(0x800), PageSize::k2M, kPermsRW).ok());
  REQUIRE(t.map(base + k1G, Pfn(0x40000), PageSize::k1G, kPermsRW).ok());
  // A mapping outside the range survives.
  const Gpa far(40 * k1G);
  REQUIRE(t.map(far, Pfn(0x3333), PageSize::k4K, kPermsR).ok());
  const uint64_t frames_all = t.table_frames_in_use();

  // Partly covered huge leaf: all or nothing.
  CHECK(t.unmap_range(base, 4 * k2M + 0x1000).error() == Errno::kEINVAL);
  CHECK(t.lookup(base).mapped());
  CHECK(t.table_frames_in_use() == frames_all);
  CHECK(t.unmap_range(base + 1, 0x1000).error() == Errno::kEINVAL);
  CHECK(t.unmap_range(base, 0).error() == Errno::kEINVAL);
  CHECK(t.unmap_range(Gpa(1ull << input_bits_of(f)), 0x1000).error() == Errno::kEINVAL);

  // Only the first 10 pages: the 4K table stays.
  REQUIRE(t.unmap_range(base, 10 * 4096ull).ok());
  CHECK_FALSE(t.lookup(base + 9 * 4096ull).mapped());
  CHECK(t.lookup(base + 10 * 4096ull).mapped());
  CHECK(t.table_frames_in_use() == frames_all);

  // The whole 2G: every leaf in it goes, and so do the tables that only served it.
  const uint64_t unmaps_before = t.stats().unmaps;
  REQUIRE(t.unmap_range(base, 2 * k1G).ok());
  CHECK(t.stats().unmaps == unmaps_before + 10 + 1 + 1);
  unsigned leaves = 0;
  t.for_each_leaf([&](const Stage2Leaf& l) {
    ++leaves;
    CHECK(l.gpa == far);
    CHECK(l.pfn == Pfn(0x3333));
  });
  CHECK(leaves == 1);
  // Left: the root and the chain of tables down to `far` (the upper ones were shared).
  CHECK(t.table_frames_in_use() == levels_of(f));
  CHECK(x.frames.live() == levels_of(f));

  // Everything: only the root is left.
  REQUIRE(t.unmap_range(Gpa(0), 1ull << input_bits_of(f)).ok());
  CHECK(t.table_frames_in_use() == 1);
  CHECK(x.frames.live() == 1);
  CHECK_FALSE(x.frames.double_free_seen());
}

TEST_CASE("stage-2 table: for_each_leaf reports every leaf in gpa order") {
  Fixture x(Stage2Format::kNpt4);
  Stage2Table& t = *x.table;
  REQUIRE(t.map(Gpa(3 * k1G), Pfn(0x40000), PageSize::k1G, kPermsRWX, 7).ok());
  REQUIRE(t.map(Gpa(k2M), Pfn(0x200), PageSize::k2M, kPermsR).ok());
  REQUIRE(t.map(Gpa(0x5000), Pfn(0x77), PageSize::k4K, kPermsRW, 2).ok());
  REQUIRE(t.map(Gpa(0x4000), Pfn(0x76), PageSize::k4K, kPermsNone).ok());
  std::vector<Stage2Leaf> seen;
  t.for_each_leaf([&](const Stage2Leaf& l) { seen.push_back(l); });
  REQUIRE(seen.size() == 4);
  CHECK(seen[0].gpa == Gpa(0x4000));
  CHECK_FALSE(seen[0].valid);  // NPT P=0
  CHECK(seen[0].pfn == Pfn(0x76));
  CHECK(seen[1].gpa == Gpa(0x5000));
  CHECK(seen[1].sw == 2);
  CHECK(seen[1].perms == kPermsRW);
  CHECK(seen[2].size == PageSize::k2M);
  CHECK(seen[3].gpa == Gpa(3 * k1G));
  CHECK(seen[3].size == PageSize::k1G);
  CHECK(seen[3].sw == 7);
  CHECK(seen[3].valid);
}

TEST_CASE("stage-2 table: walks read the table frames in PhysMem") {
  Fixture x(Stage2Format::kEpt4);
  Stage2Table& t = *x.table;
  const Gpa g(0x4020'3000);
  REQUIRE(t.map(g, Pfn(0x111), PageSize::k4K, kPermsRW).ok());
  REQUIRE(x.cold_walk(g).pfn == Pfn(0x111));
  // Overwrite the leaf slot behind the table's back: the walk sees the new value.
  const Pfn leaf_table = t.codec().pfn(t.raw_entry(g, 1).value());
  x.mem.write_u64(Stage2Table::entry_hpa(leaf_table, g, 0),
                  t.codec().encode_leaf(Pfn(0x222), 0, kPermsR, 0));
  const WalkResult w = x.cold_walk(g);
  CHECK(w.pfn == Pfn(0x222));
  CHECK(w.perms == kPermsR);
}

TEST_CASE("stage-2 table: EPT tables initialised to suppress-#VE") {
  Stage2TableOptions o;
  o.empty_entry = EptCodec::kSuppressVe;
  Fixture x(Stage2Format::kEpt4, o);
  Stage2Table& t = *x.table;
  CHECK(x.mem.read_u64(pfn_to_hpa(t.root()) + 8 * 100) == EptCodec::kSuppressVe);
  const Gpa g(0x1000);
  REQUIRE(t.map(g, Pfn(0x5), PageSize::k4K, kPermsR).ok());
  REQUIRE(t.unmap(g, PageSize::k4K).ok());
  CHECK(t.raw_entry(g, 0).value() == EptCodec::kSuppressVe);
  const WalkResult w = x.cold_walk(g);
  CHECK_FALSE(w.present);
  CHECK(w.kind == EntryKind::kEmpty);
  CHECK(w.raw == EptCodec::kSuppressVe);
  // A value that is not empty in this format is refused.
  PhysMem mem(test::kTestMemBytes, MemMode::kData);
  BumpAllocator frames(test::kTableFramesBegin, test::kTableFramesEnd);
  CHECK(Stage2Table::create(mem, frames, Stage2Format::kNpt4, o).error() == Errno::kEINVAL);
}

TEST_CASE("stage-2 table: ENOMEM when the allocator runs dry") {
  Fixture x(Stage2Format::kArmS2);
  Stage2Table& t = *x.table;
  REQUIRE(t.map(Gpa(0), Pfn(0x200), PageSize::k2M, kPermsR).ok());
  x.frames.exhaust();
  CHECK(t.map(Gpa(100 * k1G), Pfn(1), PageSize::k4K, kPermsR).error() == Errno::kENOMEM);
  CHECK(t.split(Gpa(0), PageSize::k2M).error() == Errno::kENOMEM);
  CHECK(t.lookup(Gpa(0x1000)).size() == PageSize::k2M);  // unchanged
  PhysMem mem(test::kTestMemBytes, MemMode::kData);
  BumpAllocator none(Pfn(0x1000), Pfn(0x1000));
  CHECK(Stage2Table::create(mem, none, Stage2Format::kEpt4).error() == Errno::kENOMEM);
}

TEST_CASE("stage-2 table: pKVM annotations in invalid Arm descriptors") {
  Fixture x(Stage2Format::kArmS2);
  Stage2Table& t = *x.table;
  const Gpa g(0x9000'0000);
  const uint64_t donation = ((2ull << 60) | (0x7ull << 4) | (2ull << 1)) >> 1;
  REQUIRE(t.annotate(g, PageSize::k4K, donation).ok());
  CHECK(t.stats().annotations == 1);
  const Stage2Lookup l = t.lookup(g);
  CHECK(l.kind == EntryKind::kAnnotation);
  CHECK(l.pte.annotation == donation);
  CHECK(l.raw == donation << 1);
  const WalkResult w = x.cold_walk(g);
  CHECK_FALSE(w.present);
  CHECK(w.kind == EntryKind::kAnnotation);
  CHECK(w.raw == donation << 1);
  CHECK(w.mem_refs == 4);

  CHECK(t.map(g, Pfn(1), PageSize::k4K, kPermsRW).error() == Errno::kEEXIST);
  CHECK(t.unmap(g, PageSize::k4K).error() == Errno::kENOENT);
  CHECK(t.annotate(g, PageSize::k4K, 0).error() == Errno::kEINVAL);
  REQUIRE(t.annotate(g, PageSize::k4K, 0x42).ok());  // replaces
  CHECK(t.lookup(g).pte.annotation == 0x42);
  unsigned n = 0;
  t.for_each_annotation([&](Gpa a, PageSize s, uint64_t v) {
    CHECK(a == g);
    CHECK(s == PageSize::k4K);
    CHECK(v == 0x42);
    ++n;
  });
  CHECK(n == 1);
  // A leaf blocks an annotation, and a covering annotation blocks a leaf below it.
  REQUIRE(t.map(g + 0x1000, Pfn(1), PageSize::k4K, kPermsRW).ok());
  CHECK(t.annotate(g + 0x1000, PageSize::k4K, 1).error() == Errno::kEEXIST);
  REQUIRE(t.annotate(Gpa(5 * k1G), PageSize::k1G, 9).ok());
  CHECK(t.map(Gpa(5 * k1G + k2M), Pfn(0x200), PageSize::k2M, kPermsR).error() == Errno::kEEXIST);

  CHECK(t.clear_annotation(g + 0x1000, PageSize::k4K).error() == Errno::kENOENT);
  REQUIRE(t.clear_annotation(g, PageSize::k4K).ok());
  CHECK(t.lookup(g).kind == EntryKind::kEmpty);
  REQUIRE(t.map(g, Pfn(2), PageSize::k4K, kPermsRW).ok());
  // unmap_range removes annotations too.
  REQUIRE(t.unmap_range(Gpa(5 * k1G), k1G).ok());
  CHECK(t.lookup(Gpa(5 * k1G)).kind == EntryKind::kEmpty);

  Fixture e(Stage2Format::kEpt5);
  CHECK(e.table->annotate(g, PageSize::k4K, 1).error() == Errno::kEOPNOTSUPP);
}

TEST_CASE("stage-2 table: describe_stats names every counter") {
  struct V : StatVisitor {
    std::vector<std::string> names;
    void counter(std::string_view n, const uint64_t&, std::string_view u,
                 std::string_view d) override {
      CHECK_FALSE(u.empty());
      CHECK_FALSE(d.empty());
      names.emplace_back(n);
    }
    void value(std::string_view n, const double&, std::string_view u, std::string_view d) override {
      CHECK_FALSE(u.empty());
      CHECK_FALSE(d.empty());
      names.emplace_back(n);
    }
  } v;
  Fixture x(Stage2Format::kEpt4);
  x.table->describe_stats(v);
  CHECK(std::find(v.names.begin(), v.names.end(), "table_frames_in_use") != v.names.end());
  CHECK(std::find(v.names.begin(), v.names.end(), "splits") != v.names.end());
  CHECK(std::find(v.names.begin(), v.names.end(), "merges") != v.names.end());
}
