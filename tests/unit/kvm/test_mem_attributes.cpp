// Memory attribute stores (kvm-guest-memfd.md §5 "Storage", kvm_range_has_memory_attributes).
// Every behavioural test runs against both implementations; the xarray-shape and cost tests are
// kind-specific by design.
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "hw/base/rng.h"
#include "models/kvm/mem_attributes.h"
#include "models/kvm/uapi.h"

using namespace cvmsim;
using namespace cvmsim::kvm;

namespace {

constexpr uint64_t P = KVM_MEMORY_ATTRIBUTE_PRIVATE;
constexpr uint64_t kAll = ~uint64_t{0};

GfnRange R(uint64_t s, uint64_t e) {
  return GfnRange{Gfn(s), Gfn(e)};
}

// KVM's order of operations for one set (§5): reserve every index, then store.
void set(MemAttributeStore& st, uint64_t s, uint64_t e, uint64_t attrs) {
  REQUIRE(st.reserve(R(s, e)).ok());
  st.store(R(s, e), attrs);
}

struct Run {
  uint64_t start, end, attrs;
  bool operator==(const Run&) const = default;
};
std::ostream& operator<<(std::ostream& os, const Run& r) {
  return os << "[" << r.start << "," << r.end << ")=" << r.attrs;
}

std::vector<Run> runs(const MemAttributeStore& st, uint64_t s, uint64_t e) {
  std::vector<Run> out;
  st.for_each_run(R(s, e), [&](GfnRange r, uint64_t a) {
    out.push_back({r.start.value(), r.end.value(), a});
  });
  return out;
}

// Maximal runs of a reference vector over [s, e) (indexes relative to base).
std::vector<Run> ref_runs(const std::vector<uint64_t>& ref, uint64_t base, uint64_t s, uint64_t e) {
  std::vector<Run> out;
  for (uint64_t g = s; g < e; ++g) {
    const uint64_t a = ref[g - base];
    if (!out.empty() && out.back().attrs == a) {
      out.back().end = g + 1;
    } else {
      out.push_back({g, g + 1, a});
    }
  }
  return out;
}

bool ref_has(const std::vector<uint64_t>& ref, uint64_t base, uint64_t s, uint64_t e, uint64_t mask,
             uint64_t attrs) {
  if (attrs & ~mask) return false;
  for (uint64_t g = s; g < e; ++g) {
    if ((ref[g - base] & mask) != attrs) return false;
  }
  return true;
}

AttrStoreKind any_kind() {
  return GENERATE(AttrStoreKind::kXarray, AttrStoreKind::kRange);
}

}  // namespace

TEST_CASE("attribute store kinds have names that parse back") {
  for (auto k : {AttrStoreKind::kXarray, AttrStoreKind::kRange}) {
    CHECK(parse_attr_store_kind(name_of(k)) == k);
    CHECK(make_attr_store(k)->kind() == k);
  }
  CHECK(name_of(AttrStoreKind::kXarray) == "xarray");
  CHECK(name_of(AttrStoreKind::kRange) == "range");
  CHECK_FALSE(parse_attr_store_kind("maple").has_value());
  CHECK_FALSE(parse_attr_store_kind("").has_value());
}

TEST_CASE("an empty attribute store reads shared everywhere and holds no memory") {
  const auto kind = any_kind();
  CAPTURE(name_of(kind));
  auto st = make_attr_store(kind);
  CHECK(st->get(Gfn(0)) == 0);
  CHECK(st->get(Gfn(12345)) == 0);
  CHECK(st->range_has(R(0, 1ull << 40), kAll, 0));
  CHECK_FALSE(st->range_has(R(0, 2), P, P));
  CHECK(st->host_bytes() == 0);
  CHECK(runs(*st, 10, 20) == std::vector<Run>{{10, 20, 0}});
  CHECK(runs(*st, 10, 10).empty());
}

TEST_CASE("attribute store splits runs and merges them back") {
  const auto kind = any_kind();
  CAPTURE(name_of(kind));
  auto st = make_attr_store(kind);
  set(*st, 100, 200, P);
  CHECK(st->get(Gfn(99)) == 0);
  CHECK(st->get(Gfn(100)) == P);
  CHECK(st->get(Gfn(199)) == P);
  CHECK(st->get(Gfn(200)) == 0);
  CHECK(runs(*st, 0, 300) == std::vector<Run>{{0, 100, 0}, {100, 200, P}, {200, 300, 0}});
  const uint64_t one_run_bytes = st->host_bytes();

  SECTION("a hole punched in the middle splits the run, filling it merges it again") {
    set(*st, 140, 160, 0);
    CHECK(runs(*st, 100, 200) == std::vector<Run>{{100, 140, P}, {140, 160, 0}, {160, 200, P}});
    CHECK_FALSE(st->range_has(R(100, 200), kAll, P));
    CHECK(st->range_has(R(140, 160), kAll, 0));
    set(*st, 140, 160, P);
    CHECK(runs(*st, 100, 200) == std::vector<Run>{{100, 200, P}});
    CHECK(st->host_bytes() == one_run_bytes);
    CHECK(st->range_has(R(100, 200), kAll, P));
  }
  SECTION("an adjacent equal range merges, an adjacent different one does not") {
    set(*st, 200, 250, P);
    set(*st, 50, 100, P);
    CHECK(runs(*st, 0, 300) == std::vector<Run>{{0, 50, 0}, {50, 250, P}, {250, 300, 0}});
    auto direct = make_attr_store(kind);
    set(*direct, 50, 250, P);
    CHECK(st->host_bytes() == direct->host_bytes());
    set(*st, 250, 260, P | 1);
    CHECK(runs(*st, 240, 270) == std::vector<Run>{{240, 250, P}, {250, 260, P | 1}, {260, 270, 0}});
  }
  SECTION("a set covering several runs and holes replaces them all") {
    set(*st, 300, 310, P);
    set(*st, 320, 330, P | 1);
    set(*st, 150, 325, 1);
    CHECK(runs(*st, 90, 340) ==
          std::vector<Run>{
              {90, 100, 0}, {100, 150, P}, {150, 325, 1}, {325, 330, P | 1}, {330, 340, 0}});
  }
  SECTION("trimming either end of a run") {
    set(*st, 100, 110, 0);
    set(*st, 190, 200, 0);
    CHECK(runs(*st, 0, 300) == std::vector<Run>{{0, 110, 0}, {110, 190, P}, {190, 300, 0}});
  }
  SECTION("setting a run to what it already is changes nothing") {
    const uint64_t bytes = st->host_bytes();
    set(*st, 120, 180, P);
    CHECK(runs(*st, 0, 300) == std::vector<Run>{{0, 100, 0}, {100, 200, P}, {200, 300, 0}});
    CHECK(st->host_bytes() == bytes);
  }
  SECTION("erasing everything frees every node") {
    set(*st, 0, 1000, 0);
    CHECK(st->host_bytes() == 0);
    CHECK(st->work().nodes_allocated == st->work().nodes_freed);
    CHECK(runs(*st, 0, 1000) == std::vector<Run>{{0, 1000, 0}});
  }
}

TEST_CASE("range_has follows kvm_range_has_memory_attributes") {
  const auto kind = any_kind();
  CAPTURE(name_of(kind));
  auto st = make_attr_store(kind);
  set(*st, 10, 20, P);
  set(*st, 20, 30, P | 1);
  CHECK(st->range_has(R(10, 20), kAll, P));
  CHECK(st->range_has(R(12, 13), kAll, P));  // single-gfn fast path
  CHECK_FALSE(st->range_has(R(9, 10 + 1), kAll, P));
  CHECK_FALSE(st->range_has(R(10, 30), kAll, P));
  CHECK(st->range_has(R(10, 30), P, P));        // masked: both runs have PRIVATE
  CHECK_FALSE(st->range_has(R(10, 31), P, P));  // gfn 30 is shared
  CHECK(st->range_has(R(20, 30), 1, 1));
  CHECK(st->range_has(R(10, 20), 1, 0));            // masked-out bits read as 0
  CHECK_FALSE(st->range_has(R(10, 20), P, P | 1));  // attrs outside the mask: false
  CHECK_FALSE(st->range_has(R(10, 20), 0, 1));
  CHECK(st->range_has(R(15, 15), kAll, P));  // empty range: true
  CHECK(st->range_has(R(0, 10), kAll, 0));
  CHECK(st->range_has(R(30, 1000), kAll, 0));
  CHECK_FALSE(st->range_has(R(0, 11), kAll, 0));
  CHECK_FALSE(st->range_has(R(29, 1000), kAll, 0));
  CHECK_FALSE(st->range_has(R(5, 25), kAll, 0));
}

TEST_CASE("attribute store handles gfns near 2^52") {
  const auto kind = any_kind();
  CAPTURE(name_of(kind));
  auto st = make_attr_store(kind);
  const uint64_t top = 1ull << 52;
  set(*st, top - 100, top, P);
  set(*st, top - 1, top, P | 1);
  set(*st, top, top + 64, P);  // one past the 52-bit space still works
  CHECK(st->get(Gfn(top - 101)) == 0);
  CHECK(st->get(Gfn(top - 100)) == P);
  CHECK(st->get(Gfn(top - 2)) == P);
  CHECK(st->get(Gfn(top - 1)) == (P | 1));
  CHECK(st->get(Gfn(top)) == P);
  CHECK(runs(*st, top - 200, top + 100) == std::vector<Run>{{top - 200, top - 100, 0},
                                                            {top - 100, top - 1, P},
                                                            {top - 1, top, P | 1},
                                                            {top, top + 64, P},
                                                            {top + 64, top + 100, 0}});
  CHECK(st->range_has(R(0, top - 100), kAll, 0));
  CHECK(st->range_has(R(top - 100, top - 1), kAll, P));
  set(*st, 5, 6, P);  // a low index beside the high ones
  CHECK(st->get(Gfn(5)) == P);
  set(*st, top - 100, top + 64, 0);
  set(*st, 5, 6, 0);
  CHECK(st->host_bytes() == 0);
  CHECK(st->range_has(R(0, top + 64), kAll, 0));
}

TEST_CASE("attribute stores agree with a per-gfn reference under random sets") {
  const auto kind = any_kind();
  CAPTURE(name_of(kind));
  auto st = make_attr_store(kind);
  // A window straddling xarray node boundaries at several levels (64, 4096, 262144).
  const uint64_t base = (1ull << 18) - 2000;
  const uint64_t size = 4096;
  std::vector<uint64_t> ref(size, 0);
  Rng rng(0x5eed, "kvm.mem_attributes.differential");
  const uint64_t kAttrs[] = {0, P, P | 1, 1, P};
  const uint64_t kMasks[] = {kAll, P, 1, P | 1};
  auto pick_range = [&](uint64_t& s, uint64_t& e) {
    const uint64_t len_class = rng.below(4);
    const uint64_t len = len_class == 0   ? 1 + rng.below(3)
                         : len_class == 1 ? 1 + rng.below(64)
                         : len_class == 2 ? 1 + rng.below(700)
                                          : 1 + rng.below(size);
    s = base + rng.below(size);
    e = std::min(s + len, base + size);
  };
  for (int op = 0; op < 3000; ++op) {
    uint64_t s, e;
    pick_range(s, e);
    const uint64_t a = kAttrs[rng.below(5)];
    // KVM's early exit (§5 step 1) must agree with the reference too.
    REQUIRE(st->range_has(R(s, e), kAll, a) == ref_has(ref, base, s, e, kAll, a));
    set(*st, s, e, a);
    for (uint64_t g = s; g < e; ++g) ref[g - base] = a;

    for (int q = 0; q < 8; ++q) {
      const uint64_t g = base + rng.below(size);
      REQUIRE(st->get(Gfn(g)) == ref[g - base]);
      uint64_t qs, qe;
      pick_range(qs, qe);
      const uint64_t mask = kMasks[rng.below(4)];
      const uint64_t want = rng.chance(0.5) ? (ref[qs - base] & mask) : kAttrs[rng.below(5)];
      CAPTURE(op, qs, qe, mask, want);
      REQUIRE(st->range_has(R(qs, qe), mask, want) == ref_has(ref, base, qs, qe, mask, want));
    }
    if (op % 50 == 0) {
      uint64_t qs, qe;
      pick_range(qs, qe);
      REQUIRE(runs(*st, qs, qe) == ref_runs(ref, base, qs, qe));
      // The structure is canonical: a store built directly from the final runs holds the same
      // memory (range: equal touching runs merged; xarray: empty nodes freed, root shrunk).
      auto direct = make_attr_store(kind);
      for (const Run& r : ref_runs(ref, base, base, base + size)) {
        if (r.attrs != 0) set(*direct, r.start, r.end, r.attrs);
      }
      REQUIRE(st->host_bytes() == direct->host_bytes());
    }
  }
  REQUIRE(runs(*st, base, base + size) == ref_runs(ref, base, base, base + size));
  for (uint64_t g = base; g < base + size; ++g) REQUIRE(st->get(Gfn(g)) == ref[g - base]);
  // Outside the window nothing was ever set.
  CHECK(st->range_has(R(0, base), kAll, 0));
  CHECK(st->range_has(R(base + size, base + 10 * size), kAll, 0));
  set(*st, base, base + size, 0);
  CHECK(st->host_bytes() == 0);
  CHECK(st->work().nodes_allocated == st->work().nodes_freed);
}

TEST_CASE("reserve fails with ENOMEM at the memory limit and changes nothing") {
  const auto kind = any_kind();
  CAPTURE(name_of(kind));
  const uint64_t limit = 64 * 1024;
  auto st = make_attr_store(kind, limit);
  // Fill with disjoint single pages (one run each; one xarray leaf per 32) until the limit bites.
  uint64_t g = 1;
  bool failed = false;
  for (int i = 0; i < 100000 && !failed; ++i, g += 2) {
    const uint64_t before_bytes = st->host_bytes();
    const auto before = runs(*st, 0, g + 200);
    const Status s = st->reserve(R(g, g + 1));
    if (!s.ok()) {
      failed = true;
      CHECK(s.error() == Errno::kENOMEM);
      CHECK(st->host_bytes() == before_bytes);
      CHECK(runs(*st, 0, g + 200) == before);
      break;
    }
    st->store(R(g, g + 1), P);
    REQUIRE(st->host_bytes() <= limit);
  }
  REQUIRE(failed);
  // A big reserve far away fails too and leaves everything as it was.
  const uint64_t bytes = st->host_bytes();
  const auto before = runs(*st, 0, g + 200);
  const Status big = st->reserve(R(1ull << 40, (1ull << 40) + 100000));
  REQUIRE_FALSE(big.ok());
  CHECK(big.error() == Errno::kENOMEM);
  CHECK(st->host_bytes() == bytes);
  CHECK(runs(*st, 0, g + 200) == before);
  CHECK(st->range_has(R(1ull << 40, (1ull << 40) + 100000), kAll, 0));
  // Freeing memory makes room again.
  st->store(R(0, g), 0);
  CHECK(st->host_bytes() == 0);
  CHECK(st->reserve(R(g, g + 1)).ok());
}

TEST_CASE("xarray ENOMEM rollback undoes root expansion") {
  const uint64_t two_nodes = 2 * kXaNodeBytes;
  auto st = make_attr_store(AttrStoreKind::kXarray, two_nodes);
  set(*st, 0, 10, P);  // one leaf node
  REQUIRE(st->host_bytes() == kXaNodeBytes);
  // Index 2^30 needs four new roots above the leaf plus a chain down: far more than two nodes.
  const Status s = st->reserve(R(1ull << 30, (1ull << 30) + 1));
  REQUIRE_FALSE(s.ok());
  CHECK(s.error() == Errno::kENOMEM);
  CHECK(st->host_bytes() == kXaNodeBytes);
  CHECK(runs(*st, 0, 20) == std::vector<Run>{{0, 10, P}, {10, 20, 0}});
  // The tree is back to one leaf: another index in it needs no node.
  set(*st, 10, 64, P);
  CHECK(st->host_bytes() == kXaNodeBytes);
  // Index 64 needs a root above the leaf and a second leaf: three nodes in all, over the limit.
  CHECK_FALSE(st->reserve(R(64, 65)).ok());
  CHECK(st->host_bytes() == kXaNodeBytes);
}

TEST_CASE("xarray tree shape follows lib/xarray.c") {
  auto st = make_attr_store(AttrStoreKind::kXarray);
  auto nodes = [&] { return st->host_bytes() / kXaNodeBytes; };
  set(*st, 0, 1, P);
  CHECK(nodes() == 0);  // index 0 alone lives in xa_head
  set(*st, 1, 2, P);
  CHECK(nodes() == 1);
  set(*st, 64, 65, P);
  CHECK(nodes() == 3);  // a root of shift 6 above two leaves
  set(*st, 64, 65, 0);
  CHECK(nodes() == 1);  // the emptied leaf is freed and the root shrinks back
  set(*st, 1, 2, 0);
  CHECK(nodes() == 0);  // index 0 moves back into xa_head
  CHECK(st->get(Gfn(0)) == P);
  // 52-bit index alone: ceil(52 / 6) = 9 levels of nodes, one per level.
  set(*st, 0, 1, 0);
  CHECK(st->host_bytes() == 0);
  const uint64_t hi = (1ull << 52) - 1;
  set(*st, hi, hi + 1, P);
  CHECK(nodes() == 9);
  // Index 0 beside it: a second chain of 8 nodes below the root's slot 0.
  set(*st, 0, 1, P);
  CHECK(nodes() == 17);
  set(*st, hi, hi + 1, 0);
  CHECK(nodes() == 0);  // shrinks all the way back to index 0 in xa_head
  CHECK(st->get(Gfn(0)) == P);
  CHECK(st->get(Gfn(hi)) == 0);
  // 512 contiguous pages: 8 leaves under one root.
  set(*st, 0, 512, P);
  CHECK(nodes() == 9);
  set(*st, 0, 512, 0);
  CHECK(nodes() == 0);
  CHECK(st->work().nodes_allocated == st->work().nodes_freed);
}

TEST_CASE("memory grows with pages for xarray and with runs for the range store") {
  auto xa = make_attr_store(AttrStoreKind::kXarray);
  auto rs = make_attr_store(AttrStoreKind::kRange);
  for (auto* st : {xa.get(), rs.get()}) set(*st, 0, 1 << 16, P);
  CHECK(xa->host_bytes() >= (1u << 16) / kXaChunkSize * kXaNodeBytes);
  CHECK(rs->host_bytes() == kRangeNodeBytes);
  set(*rs, 0, 1ull << 28, P);  // 1 TiB
  CHECK(rs->host_bytes() == kRangeNodeBytes);
  for (uint64_t i = 0; i < 100; ++i) set(*rs, (1ull << 30) + 10 * i, (1ull << 30) + 10 * i + 5, P);
  CHECK(rs->host_bytes() == 101 * kRangeNodeBytes);
}

TEST_CASE("work counters: per entry for xarray, per range for the range store") {
  auto xa = make_attr_store(AttrStoreKind::kXarray);
  auto rs = make_attr_store(AttrStoreKind::kRange);
  for (auto* st : {xa.get(), rs.get()}) set(*st, 1000, 2000, P);
  // xa_reserve writes a zero entry per gfn, xa_store a value per gfn.
  CHECK(xa->work().entries_written == 2000);
  CHECK(xa->work().lookups >= 2000);
  CHECK(xa->work().ranges_written == 0);
  CHECK(rs->work().entries_written == 0);
  CHECK(rs->work().ranges_written == 1);
  CHECK(rs->work().lookups == 1);
  // A 1 TiB set over one existing run: a constant number of range operations.
  const auto before = rs->work();
  set(*rs, 0, 1ull << 28, P);
  CHECK(rs->work().ranges_written - before.ranges_written == 2);  // erase the old run, insert one
  CHECK(rs->range_has(R(0, 1ull << 28), kAll, P));
  CHECK(rs->work().entries_visited - before.entries_visited <= 3);
}

TEST_CASE("attribute stores describe their statistics") {
  const auto kind = any_kind();
  CAPTURE(name_of(kind));
  auto st = make_attr_store(kind);
  set(*st, 5, 500, P);
  struct Collect : StatVisitor {
    std::map<std::string, uint64_t> counters;
    bool documented = true;
    void counter(std::string_view n, const uint64_t& v, std::string_view u,
                 std::string_view d) override {
      counters[std::string(n)] = v;
      documented = documented && !u.empty() && !d.empty();
    }
    void value(std::string_view, const double&, std::string_view, std::string_view) override {}
  } c;
  st->describe_stats(c);
  CHECK(c.documented);
  REQUIRE(c.counters.count("host_bytes") == 1);
  CHECK(c.counters["host_bytes"] == st->host_bytes());
  REQUIRE(c.counters.count("nodes_allocated") == 1);
  CHECK(c.counters["nodes_allocated"] == st->work().nodes_allocated);
  CHECK(c.counters["lookups"] == st->work().lookups);
}
