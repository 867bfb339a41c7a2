#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "hw/mmu/tlb.h"

using namespace cvmsim;

namespace {
constexpr uint64_t k2M = 2ull << 20;
constexpr uint64_t k1G = 1ull << 30;
}  // namespace

TEST_CASE("tlb: configuration is validated") {
  CHECK(Tlb::validate(TlbConfig{64, 8}).ok());
  CHECK(Tlb::validate(TlbConfig{1, 1}).ok());
  CHECK(Tlb::validate(TlbConfig{48, 8}).error() == Errno::kEINVAL);
  CHECK(Tlb::validate(TlbConfig{0, 8}).error() == Errno::kEINVAL);
  CHECK(Tlb::validate(TlbConfig{64, 0}).error() == Errno::kEINVAL);
  CHECK_FALSE(Tlb::create(TlbConfig{3, 2}).ok());
  auto t = Tlb::create(TlbConfig{16, 4});
  REQUIRE(t.ok());
  CHECK(t->config().sets == 16);
}

TEST_CASE("tlb: hit, miss and what an entry holds") {
  Tlb tlb(16, 4);
  CHECK(tlb.lookup(1, Gpa(0x5000)) == nullptr);
  int host_byte = 0;
  TlbEntry* e = tlb.fill(1, Gpa(0x5123), Pfn(0x77), PageSize::k4K, kPermsRW, 3, 0xABCD, &host_byte);
  REQUIRE(e != nullptr);
  TlbEntry* h = tlb.lookup(1, Gpa(0x5FFF));
  REQUIRE(h == e);
  CHECK(h->gfn == Gfn(0x5));
  CHECK(h->pfn == Pfn(0x77));
  CHECK(h->pfn_for(Gpa(0x5FFF)) == Pfn(0x77));
  CHECK(h->perms == kPermsRW);
  CHECK(h->sw == 3);
  CHECK(h->tag == 0xABCD);
  CHECK(h->host_ptr == &host_byte);
  CHECK(h->asid == 1);
  CHECK(tlb.lookup(1, Gpa(0x6000)) == nullptr);  // next page
  CHECK(tlb.lookup(2, Gpa(0x5000)) == nullptr);  // other asid
  CHECK(tlb.peek(1, Gpa(0x5000)) == e);
  const Tlb::Stats& s = tlb.stats();
  CHECK(s.lookups == 4);
  CHECK(s.hits == 1);
  CHECK(s.misses == 3);
  CHECK(s.fills == 1);
  CHECK(s.evictions == 0);
  // Refill of the same page replaces in place.
  tlb.fill(1, Gpa(0x5000), Pfn(0x88), PageSize::k4K, kPermsR);
  CHECK(tlb.occupancy() == 1);
  CHECK(tlb.lookup(1, Gpa(0x5000))->pfn == Pfn(0x88));
  CHECK(tlb.lookup(1, Gpa(0x5000))->host_ptr == nullptr);
  // Addresses beyond 57 bits never hit (they would alias in the key).
  CHECK(tlb.lookup(1, Gpa((1ull << 57) | 0x5000)) == nullptr);
}

TEST_CASE("tlb: huge entries hit for any address inside") {
  Tlb tlb(16, 4);
  tlb.fill(1, Gpa(3 * k2M + 0x1234), Pfn(0x600), PageSize::k2M, kPermsRX);
  tlb.fill(1, Gpa(5 * k1G), Pfn(0x40000), PageSize::k1G, kPermsRWX);
  CHECK(tlb.population(PageSize::k4K) == 0);
  CHECK(tlb.population(PageSize::k2M) == 1);
  CHECK(tlb.population(PageSize::k1G) == 1);
  for (uint64_t off : {0ull, 0x1000ull, 0x1F'FFFFull}) {
    TlbEntry* e = tlb.lookup(1, Gpa(3 * k2M + off));
    REQUIRE(e != nullptr);
    CHECK(e->size == PageSize::k2M);
    CHECK(e->gfn == Gfn(3 * 512));
    CHECK(e->pfn_for(Gpa(3 * k2M + off)) == Pfn(0x600 + (off >> 12)));
  }
  CHECK(tlb.lookup(1, Gpa(4 * k2M)) == nullptr);
  TlbEntry* g = tlb.lookup(1, Gpa(5 * k1G + 0x3FFF'F000));
  REQUIRE(g != nullptr);
  CHECK(g->size == PageSize::k1G);
  CHECK(g->pfn_for(Gpa(5 * k1G + 0x3FFF'F000)) == Pfn(0x40000 + 0x3FFFF));
  CHECK(tlb.lookup(1, Gpa(6 * k1G)) == nullptr);
}

TEST_CASE("tlb: LRU eviction order within a set") {
  Tlb tlb(4, 2);  // pages 0, 4, 8, ... share set 0
  tlb.fill(1, Gpa(0x0000), Pfn(100), PageSize::k4K, kPermsR);
  tlb.fill(1, Gpa(0x4000), Pfn(104), PageSize::k4K, kPermsR);
  REQUIRE(tlb.lookup(1, Gpa(0x0000)) != nullptr);              // page 0 is now most recent
  tlb.fill(1, Gpa(0x8000), Pfn(108), PageSize::k4K, kPermsR);  // evicts page 4
  CHECK(tlb.peek(1, Gpa(0x0000)) != nullptr);
  CHECK(tlb.peek(1, Gpa(0x4000)) == nullptr);
  CHECK(tlb.peek(1, Gpa(0x8000)) != nullptr);
  CHECK(tlb.stats().evictions == 1);
  tlb.fill(1, Gpa(0xC000), Pfn(112), PageSize::k4K, kPermsR);  // evicts page 0 (LRU now)
  CHECK(tlb.peek(1, Gpa(0x0000)) == nullptr);
  CHECK(tlb.peek(1, Gpa(0x8000)) != nullptr);
  CHECK(tlb.peek(1, Gpa(0xC000)) != nullptr);
  // Other sets are untouched.
  tlb.fill(1, Gpa(0x1000), Pfn(101), PageSize::k4K, kPermsR);
  CHECK(tlb.occupancy() == 3);
  CHECK(tlb.stats().evictions == 2);
  // A huge entry evicting a 4K one keeps the population counts right.
  Tlb one(1, 1);
  one.fill(1, Gpa(0), Pfn(1), PageSize::k4K, kPermsR);
  one.fill(1, Gpa(k2M), Pfn(0x200), PageSize::k2M, kPermsR);
  CHECK(one.population(PageSize::k4K) == 0);
  CHECK(one.population(PageSize::k2M) == 1);
}

TEST_CASE("tlb: invalidate by address removes only covering entries of that asid") {
  Tlb tlb(64, 4);
  int p = 0;
  tlb.fill(1, Gpa(k2M + 0x3000), Pfn(0x33), PageSize::k4K, kPermsR, 0, 0, &p);
  tlb.fill(1, Gpa(k2M), Pfn(0x200), PageSize::k2M, kPermsR);          // covers the 4K page too
  tlb.fill(1, Gpa(0), Pfn(0x40000), PageSize::k1G, kPermsR);          // covers both
  tlb.fill(1, Gpa(k2M + 0x4000), Pfn(0x34), PageSize::k4K, kPermsR);  // neighbour
  tlb.fill(2, Gpa(k2M + 0x3000), Pfn(0x99), PageSize::k4K, kPermsR);  // other asid
  REQUIRE(tlb.occupancy() == 5);
  CHECK(tlb.invalidate_addr(1, Gpa(k2M + 0x3008)) == 3);
  CHECK(tlb.occupancy() == 2);
  CHECK(tlb.peek(1, Gpa(k2M + 0x4000)) != nullptr);
  CHECK(tlb.peek(1, Gpa(k2M + 0x4000))->size == PageSize::k4K);
  CHECK(tlb.peek(2, Gpa(k2M + 0x3000)) != nullptr);
  CHECK(tlb.peek(1, Gpa(k2M + 0x3000)) == nullptr);
  CHECK(tlb.population(PageSize::k2M) == 0);
  CHECK(tlb.population(PageSize::k1G) == 0);
  CHECK(tlb.stats().invalidations_addr == 1);
  CHECK(tlb.stats().entries_invalidated == 3);
  CHECK(tlb.invalidate_addr(1, Gpa(0x7000'0000)) == 0);
}

TEST_CASE("tlb: invalidate by range, asid and all") {
  Tlb tlb(64, 4);
  for (unsigned i = 0; i < 16; ++i) {
    tlb.fill(1, Gpa(i * 0x1000ull), Pfn(0x100 + i), PageSize::k4K, kPermsR);
    tlb.fill(2, Gpa(i * 0x1000ull), Pfn(0x200 + i), PageSize::k4K, kPermsR);
  }
  tlb.fill(1, Gpa(k2M), Pfn(0x400), PageSize::k2M, kPermsR);
  REQUIRE(tlb.occupancy() == 33);

  SECTION("range") {
    // [0x3000, 0x6000) of asid 1: three pages.
    CHECK(tlb.invalidate_range(1, Gpa(0x3000), 0x3000) == 3);
    CHECK(tlb.peek(1, Gpa(0x2000)) != nullptr);
    CHECK(tlb.peek(1, Gpa(0x3000)) == nullptr);
    CHECK(tlb.peek(1, Gpa(0x5000)) == nullptr);
    CHECK(tlb.peek(1, Gpa(0x6000)) != nullptr);
    CHECK(tlb.peek(2, Gpa(0x4000)) != nullptr);
    // A range touching one byte of the 2M entry removes it.
    CHECK(tlb.invalidate_range(1, Gpa(2 * k2M - 1), 1) == 1);
    CHECK(tlb.peek(1, Gpa(k2M)) == nullptr);
    CHECK(tlb.invalidate_range(1, Gpa(0), 0) == 0);
    CHECK(tlb.stats().invalidations_range == 3);
    CHECK(tlb.stats().entries_invalidated == 4);
  }
  SECTION("asid") {
    CHECK(tlb.invalidate_asid(2) == 16);
    CHECK(tlb.occupancy() == 17);
    CHECK(tlb.peek(2, Gpa(0)) == nullptr);
    CHECK(tlb.peek(1, Gpa(0)) != nullptr);
    CHECK(tlb.stats().invalidations_asid == 1);
  }
  SECTION("all") {
    CHECK(tlb.invalidate_all() == 33);
    CHECK(tlb.occupancy() == 0);
    CHECK(tlb.population(PageSize::k2M) == 0);
    CHECK(tlb.lookup(1, Gpa(k2M)) == nullptr);
    CHECK(tlb.stats().invalidations_all == 1);
    CHECK(tlb.stats().entries_invalidated == 33);
  }
}

TEST_CASE("tlb: host pointers are dropped on invalidation and DMI revocation") {
  Tlb tlb(16, 4);
  int a = 0, b = 0;
  tlb.fill(1, Gpa(0x1000), Pfn(0x10), PageSize::k4K, kPermsRW, 0, 0, &a);
  tlb.fill(1, Gpa(0x2000), Pfn(0x20), PageSize::k4K, kPermsRW, 0, 0, &b);
  CHECK(tlb.clear_host_ptrs(Pfn(0x20), 1) == 1);
  CHECK(tlb.peek(1, Gpa(0x2000))->host_ptr == nullptr);
  CHECK(tlb.peek(1, Gpa(0x1000))->host_ptr == &a);
  CHECK(tlb.clear_host_ptrs(Pfn(0x21), ~uint64_t{0}) == 0);  // no overflow, nothing above
  tlb.invalidate_addr(1, Gpa(0x1000));
  // Refill into the same slot starts without a pointer.
  TlbEntry* e = tlb.fill(1, Gpa(0x1000), Pfn(0x10), PageSize::k4K, kPermsRW);
  CHECK(e->host_ptr == nullptr);
  unsigned n = 0;
  tlb.for_each_entry([&](const TlbEntry&) { ++n; });
  CHECK(n == 2);
}

TEST_CASE("tlb: describe_stats names every counter with unit and description") {
  struct V : StatVisitor {
    std::vector<std::string> names;
    void counter(std::string_view n, const uint64_t&, std::string_view u,
                 std::string_view d) override {
      CHECK(u == "count");
      CHECK_FALSE(d.empty());
      names.emplace_back(n);
    }
    void value(std::string_view, const double&, std::string_view, std::string_view) override {}
  } v;
  Tlb tlb;
  tlb.describe_stats(v);
  CHECK(v.names.size() == 10);
  CHECK(v.names[0] == "lookups");
}
