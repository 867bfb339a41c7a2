// Hugepage tracking with mixed attributes (kvm-guest-memfd.md §5), over both attribute stores.
#include <catch2/catch.hpp>

#include <algorithm>
#include <vector>

#include "hw/base/rng.h"
#include "models/kvm/lpage_tracker.h"
#include "models/kvm/mem_attributes.h"
#include "models/kvm/uapi.h"

using namespace cvmsim;
using namespace cvmsim::kvm;

namespace {

constexpr uint64_t P = KVM_MEMORY_ATTRIBUTE_PRIVATE;
constexpr uint64_t k2M = 512;
constexpr uint64_t k1G = 512 * 512;

GfnRange R(uint64_t s, uint64_t e) {
  return GfnRange{Gfn(s), Gfn(e)};
}

AttrStoreKind any_kind() {
  return GENERATE(AttrStoreKind::kXarray, AttrStoreKind::kRange);
}

// One VM's attributes plus one slot's tracker, updated in KVM's order (§5): store, then post-set.
struct Vm {
  std::unique_ptr<MemAttributeStore> attrs;
  LpageTracker lp;
  Vm(AttrStoreKind k, uint64_t base, uint64_t npages)
      : attrs(make_attr_store(k)), lp(Gfn(base), npages) {
    lp.init(*attrs);
  }
  void set(uint64_t s, uint64_t e, uint64_t a) {
    REQUIRE(attrs->reserve(R(s, e)).ok());
    attrs->store(R(s, e), a);
    lp.post_set(*attrs, R(s, e), a);
  }
};

// Brute force from a per-gfn vector covering [0, ref.size()).
struct Reference {
  std::vector<uint64_t> v;
  uint64_t base, end;
  bool contained(uint64_t hp, uint64_t n) const { return hp >= base && hp + n <= end; }
  bool mixed(uint64_t gfn, uint64_t n) const {
    const uint64_t hp = gfn & ~(n - 1);
    if (!contained(hp, n)) return false;
    for (uint64_t g = hp + 1; g < hp + n; ++g) {
      if (v[g] != v[hp]) return true;
    }
    return false;
  }
};

void check_all(const LpageTracker& lp, const Reference& ref) {
  for (uint64_t n : {k2M, k1G}) {
    const PageSize level = n == k2M ? PageSize::k2M : PageSize::k1G;
    uint64_t count = 0;
    for (uint64_t hp = (ref.base & ~(n - 1)); hp < ref.end; hp += n) {
      const bool want = ref.mixed(hp, n);
      count += want;
      CAPTURE(n, hp);
      REQUIRE(lp.contained(level, Gfn(hp)) == ref.contained(hp, n));
      REQUIRE(lp.is_mixed(level, Gfn(hp)) == want);
      REQUIRE(lp.is_mixed(level, Gfn(hp + n - 1)) == want);
    }
    REQUIRE(lp.mixed_count(level) == count);
  }
}

}  // namespace

TEST_CASE("lpage tracker matches a brute-force reference after random sets") {
  const auto kind = any_kind();
  CAPTURE(name_of(kind));
  // Neither end is 2M or 1G aligned; three 1G pages and 1538 2M pages are contained.
  const uint64_t base = k1G - 1000;
  const uint64_t end = 4 * k1G + 777;
  const uint64_t window = 5 * k1G;
  Vm vm(kind, base, end - base);
  Reference ref{std::vector<uint64_t>(window, 0), base, end};
  // Some attributes set before the slot exists: init() must see them.
  vm.attrs->store(R(base + 5000, base + 5001), P);
  vm.attrs->store(R(2 * k1G, 2 * k1G + k2M), P);
  ref.v[base + 5000] = P;
  std::fill(ref.v.begin() + 2 * k1G, ref.v.begin() + 2 * k1G + k2M, P);
  vm.lp.init(*vm.attrs);
  check_all(vm.lp, ref);

  Rng rng(0x1a9e, "kvm.lpage_tracker.differential");
  const uint64_t kAttrs[] = {0, P, P, 0, P | 1};
  for (int op = 0; op < 150; ++op) {
    uint64_t s = rng.below(window - 1);
    const uint64_t align = rng.below(6);
    if (align == 0) s &= ~(k2M - 1);
    if (align == 1) s &= ~(k1G - 1);
    const uint64_t len_class = rng.below(5);
    uint64_t len = len_class == 0   ? 1 + rng.below(4)
                   : len_class == 1 ? 1 + rng.below(3 * k2M)
                   : len_class == 2 ? k2M * (1 + rng.below(8))
                   : len_class == 3 ? 1 + rng.below(k1G)
                                    : 1 + rng.below(3 * k1G);
    const uint64_t e = std::min(s + len, window);
    const uint64_t a = kAttrs[rng.below(5)];
    CAPTURE(op, s, e, a);

    // Pre-set hook: straddling huge pages that are contained and currently not mixed.
    std::vector<GfnRange> want;
    const uint64_t cs = std::max(s, base), ce = std::min(e, end);
    if (cs < ce) {
      for (uint64_t n : {k2M, k1G}) {
        const uint64_t head = cs & ~(n - 1), tail = (ce - 1) & ~(n - 1);
        auto consider = [&](uint64_t hp) {
          const bool straddles = hp < cs || hp + n > ce;
          if (straddles && ref.contained(hp, n) && !ref.mixed(hp, n)) want.push_back(R(hp, hp + n));
        };
        consider(head);
        if (tail != head) consider(tail);
      }
    }
    REQUIRE(vm.lp.straddling_unmixed(R(s, e)) == want);

    vm.set(s, e, a);
    std::fill(ref.v.begin() + s, ref.v.begin() + e, a);
    check_all(vm.lp, ref);

    for (int q = 0; q < 20; ++q) {
      const uint64_t g = rng.below(window);
      PageSize expect = PageSize::k4K;
      if (ref.contained(g & ~(k2M - 1), k2M) && !ref.mixed(g, k2M)) expect = PageSize::k2M;
      if (ref.contained(g & ~(k1G - 1), k1G) && !ref.mixed(g, k1G)) expect = PageSize::k1G;
      REQUIRE(vm.lp.max_level(Gfn(g), PageSize::k1G) == expect);
    }
  }
  // A tracker initialised from scratch over the final attributes agrees with the incremental one.
  LpageTracker fresh(Gfn(base), end - base);
  fresh.init(*vm.attrs);
  check_all(fresh, ref);
}

TEST_CASE("a 2M page made uniform again is no longer mixed") {
  const auto kind = any_kind();
  CAPTURE(name_of(kind));
  Vm vm(kind, 0, 4 * k1G);
  const uint64_t hp = k1G + 7 * k2M;
  CHECK_FALSE(vm.lp.is_mixed(PageSize::k2M, Gfn(hp)));
  vm.set(hp + 100, hp + 101, P);
  CHECK(vm.lp.is_mixed(PageSize::k2M, Gfn(hp)));
  CHECK(vm.lp.is_mixed(PageSize::k1G, Gfn(hp)));
  CHECK_FALSE(vm.lp.is_mixed(PageSize::k2M, Gfn(hp + k2M)));
  vm.set(hp + 100, hp + 101, 0);
  CHECK_FALSE(vm.lp.is_mixed(PageSize::k2M, Gfn(hp)));
  CHECK_FALSE(vm.lp.is_mixed(PageSize::k1G, Gfn(hp)));
  // Uniform again the other way: the rest of the page converted to match.
  vm.set(hp + 100, hp + 101, P);
  vm.set(hp, hp + 100, P);
  CHECK(vm.lp.is_mixed(PageSize::k2M, Gfn(hp)));
  vm.set(hp + 101, hp + k2M, P);
  CHECK_FALSE(vm.lp.is_mixed(PageSize::k2M, Gfn(hp)));
  CHECK(vm.lp.is_mixed(PageSize::k1G, Gfn(hp)));  // one private 2M page in a shared 1G page
  CHECK(vm.lp.mixed_count(PageSize::k2M) == 0);
  CHECK(vm.lp.mixed_count(PageSize::k1G) == 1);
}

TEST_CASE("a 1G page is mixed iff a 2M sub-page is mixed or their first gfns differ") {
  const auto kind = any_kind();
  CAPTURE(name_of(kind));
  Vm vm(kind, 0, 2 * k1G);
  const uint64_t g1 = k1G;
  vm.set(g1 + 3 * k2M, g1 + 4 * k2M, P);  // a whole 2M sub-page: no 2M page mixed
  CHECK(vm.lp.mixed_count(PageSize::k2M) == 0);
  CHECK(vm.lp.is_mixed(PageSize::k1G, Gfn(g1)));
  vm.set(g1, g1 + k1G, P);  // the whole 1G page
  CHECK_FALSE(vm.lp.is_mixed(PageSize::k1G, Gfn(g1)));
  CHECK(vm.lp.max_level(Gfn(g1 + 12345), PageSize::k1G) == PageSize::k1G);
  vm.set(g1 + k1G - 1, g1 + k1G, 0);  // the last gfn only: its 2M page mixed, so the 1G page too
  CHECK(vm.lp.is_mixed(PageSize::k2M, Gfn(g1 + k1G - 1)));
  CHECK(vm.lp.is_mixed(PageSize::k1G, Gfn(g1)));
  CHECK(vm.lp.max_level(Gfn(g1 + 12345), PageSize::k1G) == PageSize::k2M);
  CHECK(vm.lp.max_level(Gfn(g1 + k1G - 2), PageSize::k1G) == PageSize::k4K);
  CHECK_FALSE(vm.lp.is_mixed(PageSize::k1G, Gfn(0)));  // the first 1G page is untouched
}

TEST_CASE("huge pages not contained in the slot are never tracked") {
  const auto kind = any_kind();
  CAPTURE(name_of(kind));
  const uint64_t base = k1G + 100;  // misaligned head
  Vm vm(kind, base, k1G + k2M);     // misaligned tail
  CHECK_FALSE(vm.lp.contained(PageSize::k2M, Gfn(base)));
  CHECK(vm.lp.contained(PageSize::k2M, Gfn(k1G + k2M)));
  CHECK_FALSE(vm.lp.contained(PageSize::k1G, Gfn(base + 5 * k2M)));  // its 1G page starts before
  CHECK(vm.lp.contained(PageSize::k4K, Gfn(base)));
  CHECK_FALSE(vm.lp.contained(PageSize::k4K, Gfn(base - 1)));
  vm.set(base + 10, base + 11, P);  // inside the uncontained head 2M page
  CHECK_FALSE(vm.lp.is_mixed(PageSize::k2M, Gfn(base)));
  CHECK(vm.lp.mixed_count(PageSize::k2M) == 0);
  CHECK(vm.lp.mixed_count(PageSize::k1G) == 0);
  CHECK(vm.lp.max_level(Gfn(base + 20), PageSize::k1G) == PageSize::k4K);
  // Attributes set outside the slot do not touch it.
  vm.set(0, base, P);
  CHECK(vm.lp.mixed_count(PageSize::k2M) == 0);
  CHECK(vm.lp.max_level(Gfn(k1G + 3 * k2M), PageSize::k1G) == PageSize::k2M);
  CHECK(vm.lp.max_level(Gfn(base - 1), PageSize::k1G) == PageSize::k4K);  // outside the slot
}

TEST_CASE("max_level respects the cap") {
  const auto kind = any_kind();
  CAPTURE(name_of(kind));
  Vm vm(kind, 0, 2 * k1G);
  CHECK(vm.lp.max_level(Gfn(77), PageSize::k1G) == PageSize::k1G);
  CHECK(vm.lp.max_level(Gfn(77), PageSize::k2M) == PageSize::k2M);
  CHECK(vm.lp.max_level(Gfn(77), PageSize::k4K) == PageSize::k4K);
  vm.set(k2M + 1, k2M + 2, P);
  CHECK(vm.lp.max_level(Gfn(77), PageSize::k1G) == PageSize::k2M);
  CHECK(vm.lp.max_level(Gfn(k2M + 300), PageSize::k1G) == PageSize::k4K);
  CHECK(vm.lp.max_level(Gfn(k1G + 5), PageSize::k1G) == PageSize::k1G);
}

TEST_CASE("straddling_unmixed lists the head and tail huge pages to invalidate") {
  const auto kind = any_kind();
  CAPTURE(name_of(kind));
  const uint64_t base = 100;  // the first 2M and 1G pages are not contained
  Vm vm(kind, base, 3 * k1G);
  const uint64_t hp = k1G + 4 * k2M;
  SECTION("a range inside one 2M page: that page once, and its 1G page") {
    CHECK(vm.lp.straddling_unmixed(R(hp + 10, hp + 20)) ==
          std::vector<GfnRange>{R(hp, hp + k2M), R(k1G, 2 * k1G)});
  }
  SECTION("a range across two 2M pages: both, and the 1G page once") {
    CHECK(vm.lp.straddling_unmixed(R(hp + 10, hp + k2M + 20)) ==
          std::vector<GfnRange>{R(hp, hp + k2M), R(hp + k2M, hp + 2 * k2M), R(k1G, 2 * k1G)});
  }
  SECTION("already mixed pages are left out") {
    vm.set(hp + 1, hp + 2, P);
    CHECK(vm.lp.straddling_unmixed(R(hp + 10, hp + 20)).empty());
  }
  SECTION("a 2M-aligned range straddles only its 1G page") {
    CHECK(vm.lp.straddling_unmixed(R(hp, hp + 2 * k2M)) == std::vector<GfnRange>{R(k1G, 2 * k1G)});
  }
  SECTION("a 1G-aligned range straddles nothing") {
    CHECK(vm.lp.straddling_unmixed(R(k1G, 3 * k1G)).empty());
  }
  SECTION("pages not contained in the slot are left out, ranges are clipped to the slot") {
    CHECK(vm.lp.straddling_unmixed(R(0, 200)).empty());
    CHECK(vm.lp.straddling_unmixed(R(3 * k1G + 10, 5 * k1G)).empty());
    CHECK(vm.lp.straddling_unmixed(R(9 * k1G, 10 * k1G)).empty());
    CHECK(vm.lp.straddling_unmixed(R(0, k2M + 5)) == std::vector<GfnRange>{R(k2M, 2 * k2M)});
  }
}

TEST_CASE("lpage tracking of a 1 TiB slot costs per run, not per huge page") {
  const auto kind = any_kind();
  CAPTURE(name_of(kind));
  const uint64_t npages = 1ull << 28;  // 1 TiB: 512K 2M pages, 1024 1G pages
  Vm vm(kind, 0, npages);
  CHECK(vm.lp.mixed_count(PageSize::k2M) == 0);
  vm.set(3 * k1G + 5, 3 * k1G + 6, P);
  vm.set(100 * k1G + 7 * k2M + 9, 100 * k1G + 9 * k2M + 3, P);
  CHECK(vm.lp.mixed_count(PageSize::k2M) == 3);
  CHECK(vm.lp.mixed_count(PageSize::k1G) == 2);
  const uint64_t visited_before = vm.attrs->work().entries_visited;
  LpageTracker fresh(Gfn(0), npages);
  fresh.init(*vm.attrs);
  CHECK(fresh.mixed_count(PageSize::k2M) == 3);
  CHECK(fresh.mixed_count(PageSize::k1G) == 2);
  CHECK(fresh.is_mixed(PageSize::k2M, Gfn(100 * k1G + 8 * k2M + 3)) == false);
  CHECK(fresh.is_mixed(PageSize::k2M, Gfn(100 * k1G + 9 * k2M)) == true);
  // Proportional to the entries present (xarray: ~1K pages) or runs (range: 2), not to 2^28.
  CHECK(vm.attrs->work().entries_visited - visited_before < 2000);
  CHECK(fresh.host_bytes() < 1024);
  if (kind == AttrStoreKind::kRange) {
    vm.set(0, npages, P);  // the whole slot: every mixed entry inside is erased at once
    CHECK(vm.lp.mixed_count(PageSize::k2M) == 0);
    CHECK(vm.lp.mixed_count(PageSize::k1G) == 0);
    CHECK(vm.lp.max_level(Gfn(npages - 1), PageSize::k1G) == PageSize::k1G);
  }
}
