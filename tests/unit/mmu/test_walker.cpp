#include <catch2/catch.hpp>

#include "hw/mmu/stage2_table.h"
#include "hw/mmu/walker.h"
#include "test_support.h"

using namespace cvmsim;
using cvmsim::test::BumpAllocator;

namespace {

constexpr uint64_t k2M = 2ull << 20;
constexpr uint64_t k1G = 1ull << 30;

struct Env {
  explicit Env(Stage2Format f, PwcConfig cfg = {})
      : mem(test::kTestMemBytes, MemMode::kData),
        frames(test::kTableFramesBegin, test::kTableFramesEnd),
        pwc(cfg),
        walker(pwc) {
    auto t = Stage2Table::create(mem, frames, f);
    REQUIRE(t.ok());
    table = std::move(*t);
  }
  PhysMem mem;
  BumpAllocator frames;
  Pwc pwc;
  Walker walker;
  std::unique_ptr<Stage2Table> table;
};

}  // namespace

TEST_CASE("walker: 5-level formats read five entries cold, fewer warm") {
  const Stage2Format f = GENERATE(Stage2Format::kEpt5, Stage2Format::kNpt5);
  INFO(name_of(f));
  Env e(f);
  // Above the 4-level limit: only a 5-level table can map it.
  const Gpa g((1ull << 55) + 3 * k1G + 5 * k2M + 0x7000);
  REQUIRE(e.table->map(g, Pfn(0x99), PageSize::k4K, kPermsRW).ok());
  WalkResult w = e.walker.walk(*e.table, g, 7);
  REQUIRE(w.present);
  CHECK(w.mem_refs == 5);
  CHECK(w.pfn == Pfn(0x99));
  CHECK_FALSE(w.pwc_hit);
  w = e.walker.walk(*e.table, g, 7);
  CHECK(w.mem_refs == 1);
  CHECK(w.pwc_hit);
  // Same 1G region, other 2M: the level-2 entry is cached -> read level 1 and 0.
  REQUIRE(e.table->map(g + k2M, Pfn(0x9A), PageSize::k4K, kPermsRW).ok());
  CHECK(e.walker.walk(*e.table, g + k2M, 7).mem_refs == 2);
  // Same 512G region, other 1G: level-3 entry cached -> read levels 2, 1, 0.
  REQUIRE(e.table->map(g + k1G, Pfn(0x9B), PageSize::k4K, kPermsRW).ok());
  CHECK(e.walker.walk(*e.table, g + k1G, 7).mem_refs == 3);
  // Other 256T region: only... nothing cached below the root for it -> 5.
  REQUIRE(e.table->map(Gpa(0x1000), Pfn(0x9C), PageSize::k4K, kPermsRW).ok());
  CHECK(e.walker.walk(*e.table, Gpa(0x1000), 7).mem_refs == 5);
  const Walker::Stats& s = e.walker.stats();
  CHECK(s.walks == 5);
  CHECK(s.mem_refs == 5 + 1 + 2 + 3 + 5);
  CHECK(s.pwc_hits == 3);
  CHECK(s.pwc_misses == 2);
  CHECK(s.faults_not_present == 0);
}

TEST_CASE("walker: 4-level formats cannot address beyond 48 bits") {
  const Stage2Format f = GENERATE(Stage2Format::kEpt4, Stage2Format::kNpt4, Stage2Format::kArmS2);
  Env e(f);
  const WalkResult w = e.walker.walk(*e.table, Gpa(1ull << 48), 1);
  CHECK_FALSE(w.present);
  CHECK(w.fault == WalkFault::kNotPresent);
  CHECK(w.mem_refs == 0);
  CHECK(e.walker.stats().faults_not_present == 1);
}

TEST_CASE("walker: PWC is tagged by asid and invalidated by asid, range and all") {
  Env e(Stage2Format::kEpt4);
  Stage2Table& t = *e.table;
  const Gpa a(0x4000'0000);
  const Gpa b(0x80'0000'0000);  // another 512G region
  REQUIRE(t.map(a, Pfn(1), PageSize::k4K, kPermsR).ok());
  REQUIRE(t.map(b, Pfn(2), PageSize::k4K, kPermsR).ok());
  CHECK(e.walker.walk(t, a, 1).mem_refs == 4);
  CHECK(e.walker.walk(t, b, 1).mem_refs == 4);
  CHECK(e.walker.walk(t, a, 1).mem_refs == 1);
  // Another asid shares nothing.
  CHECK(e.walker.walk(t, a, 2).mem_refs == 4);
  CHECK(e.pwc.occupancy() == 9);  // 3 levels x (a/1, b/1, a/2)

  e.pwc.invalidate_asid(2);
  CHECK(e.pwc.occupancy() == 6);
  CHECK(e.walker.walk(t, a, 2).mem_refs == 4);
  CHECK(e.walker.walk(t, a, 1).mem_refs == 1);

  // Range over a's 4K page: drops every level whose span covers it, for asid 1 only.
  e.pwc.invalidate_range(1, a, 4096);
  CHECK(e.walker.walk(t, a, 1).mem_refs == 4);
  CHECK(e.walker.walk(t, b, 1).mem_refs == 1);
  CHECK(e.walker.walk(t, a, 2).mem_refs == 1);
  // A range drops exactly the entries whose span it meets: 64G into b's 512G region meets
  // only b's level-3 entry (its 1G and 2M entries cover other addresses).
  Pfn next;
  const unsigned occ = e.pwc.occupancy();
  e.pwc.invalidate_range(1, b + 0x10'0000'0000, 4096);
  CHECK(e.pwc.occupancy() == occ - 1);
  CHECK_FALSE(e.pwc.lookup(1, 3, b, &next));
  CHECK(e.pwc.lookup(1, 2, b, &next));
  CHECK(e.pwc.lookup(1, 1, b, &next));
  CHECK(e.walker.walk(t, b, 1).mem_refs == 1);
  // 4M into b: meets its level-2 (1G) entry but not its level-1 (2M) one.
  e.pwc.invalidate_range(1, b + 2 * k2M, 4096);
  CHECK_FALSE(e.pwc.lookup(1, 2, b, &next));
  CHECK(e.pwc.lookup(1, 1, b, &next));
  // A range spanning [b - 4K, b + 4K) meets all of them.
  e.pwc.invalidate_range(1, b - 0x1000, 0x2000);
  CHECK_FALSE(e.pwc.lookup(1, 1, b, &next));
  CHECK(e.walker.walk(t, b, 1).mem_refs == 4);
  CHECK(e.walker.walk(t, a, 1).mem_refs == 1);  // a's entries were never touched
  e.pwc.invalidate_all();
  CHECK(e.pwc.occupancy() == 0);
  CHECK(e.walker.walk(t, a, 1).mem_refs == 4);
  CHECK(e.pwc.stats().invalidations_all == 1);
  CHECK(e.pwc.stats().invalidations_asid == 1);
  CHECK(e.pwc.stats().invalidations_range == 4);
}

TEST_CASE("walker: a disabled PWC walks from the root every time") {
  Env e(Stage2Format::kArmS2, PwcConfig{0, 4});
  REQUIRE_FALSE(e.pwc.enabled());
  REQUIRE(e.table->map(Gpa(0x1000), Pfn(3), PageSize::k4K, kPermsR).ok());
  CHECK(e.walker.walk(*e.table, Gpa(0x1000), 1).mem_refs == 4);
  CHECK(e.walker.walk(*e.table, Gpa(0x1000), 1).mem_refs == 4);
  CHECK(e.walker.stats().pwc_misses == 2);
}

TEST_CASE("walker: PWC sets evict the least recently used entry") {
  CHECK_FALSE(Pwc::validate(PwcConfig{6, 4}).ok());
  CHECK_FALSE(Pwc::validate(PwcConfig{12, 4}).ok());  // 3 sets
  CHECK_FALSE(Pwc::validate(PwcConfig{4, 0}).ok());
  CHECK(Pwc::validate(PwcConfig{8, 4}).ok());
  // One set of two ways per level.
  Pwc pwc(PwcConfig{2, 2});
  Pfn n;
  pwc.insert(1, 1, Gpa(0 * k2M), Pfn(10));
  pwc.insert(1, 1, Gpa(1 * k2M), Pfn(11));
  REQUIRE(pwc.lookup(1, 1, Gpa(0 * k2M + 0x5000), &n));  // touch the first
  CHECK(n == Pfn(10));
  pwc.insert(1, 1, Gpa(2 * k2M), Pfn(12));  // evicts the second
  CHECK(pwc.lookup(1, 1, Gpa(0), &n));
  CHECK_FALSE(pwc.lookup(1, 1, Gpa(1 * k2M), &n));
  CHECK(pwc.lookup(1, 1, Gpa(2 * k2M), &n));
  CHECK(n == Pfn(12));
  CHECK(pwc.stats().evictions == 1);
  // Levels are separate caches.
  CHECK_FALSE(pwc.lookup(1, 2, Gpa(0), &n));
  // Re-inserting an existing key replaces in place.
  pwc.insert(1, 1, Gpa(0), Pfn(20));
  CHECK(pwc.occupancy() == 2);
  CHECK(pwc.lookup(1, 1, Gpa(0), &n));
  CHECK(n == Pfn(20));
}

TEST_CASE("walker: permission and not-present faults per format") {
  SECTION("Arm S2AP=00 is a valid leaf that faults on permission") {
    Env e(Stage2Format::kArmS2);
    REQUIRE(e.table->map(Gpa(0x2000), Pfn(4), PageSize::k4K, kPermsNone).ok());
    WalkResult w = e.walker.walk(*e.table, Gpa(0x2000), 1, kPermsR);
    CHECK(w.present);
    CHECK(w.fault == WalkFault::kPermission);
    w = e.walker.walk(*e.table, Gpa(0x2000), 1);
    CHECK(w.fault == WalkFault::kNone);  // translate-only
    CHECK(e.walker.stats().faults_permission == 1);
  }
  SECTION("NPT without permissions is not present") {
    Env e(Stage2Format::kNpt4);
    REQUIRE(e.table->map(Gpa(0x2000), Pfn(4), PageSize::k4K, kPermsNone).ok());
    const WalkResult w = e.walker.walk(*e.table, Gpa(0x2000), 1, kPermsR);
    CHECK_FALSE(w.present);
    CHECK(w.fault == WalkFault::kNotPresent);
    CHECK(w.kind == EntryKind::kLeaf);
    CHECK(w.level == 0);
  }
  SECTION("EPT write to a read-only page") {
    Env e(Stage2Format::kEpt4);
    REQUIRE(e.table->map(Gpa(0), Pfn(0x200), PageSize::k2M, kPermsRX).ok());
    const WalkResult w = e.walker.walk(*e.table, Gpa(0x1234), 1, kPermsW);
    CHECK(w.present);
    CHECK(w.fault == WalkFault::kPermission);
    CHECK(w.level == 1);
    CHECK(name_of(w.fault) == "permission");
  }
  SECTION("an S-EPT-style blocked table entry stops the walk") {
    Env e(Stage2Format::kEpt4);
    const Gpa g(0x4000'0000);
    REQUIRE(e.table->map(g, Pfn(4), PageSize::k4K, kPermsRW).ok());
    // Clear RWX of the level-2 entry (NL_BLOCKED, tdx-snp.md A2.2).
    const Pfn l2 = e.table->codec().pfn(e.table->raw_entry(g, 3).value());
    const Hpa h = Stage2Table::entry_hpa(l2, g, 2);
    e.mem.write_u64(h, e.mem.read_u64(h) & ~EptCodec::kPermMask);
    const WalkResult w = e.walker.walk(*e.table, g, 1);
    CHECK_FALSE(w.present);
    CHECK(w.kind == EntryKind::kTable);
    CHECK(w.level == 2);
    CHECK(w.mem_refs == 2);
    // Software still sees the mapping through it.
    CHECK(e.table->lookup(g).mapped());
  }
}

TEST_CASE("walker: table frames stay byte-backed in metadata-only memory") {
  PhysMem mem(test::kTestMemBytes, MemMode::kMetadataOnly);
  BumpAllocator frames(test::kTableFramesBegin, test::kTableFramesEnd);
  auto t = Stage2Table::create(mem, frames, Stage2Format::kNpt4);
  REQUIRE(t.ok());
  Pwc pwc;
  Walker walker(pwc);
  REQUIRE((*t)->map(Gpa(0x7000), Pfn(0x3000), PageSize::k4K, kPermsRW).ok());
  REQUIRE((*t)->map(Gpa(k1G), Pfn(0x40000), PageSize::k1G, kPermsRW).ok());
  WalkResult w = walker.walk(**t, Gpa(0x7008), 1, kPermsW);
  CHECK(w.present);
  CHECK(w.pfn == Pfn(0x3000));
  CHECK(w.mem_refs == 4);
  w = walker.walk(**t, Gpa(k1G + 0x5000), 1, kPermsW);
  CHECK(w.size == PageSize::k1G);
  (*t)->destroy();
  CHECK(frames.live() == 0);
}
