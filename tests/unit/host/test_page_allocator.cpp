#include <catch2/catch.hpp>
#include <random>
#include <set>
#include <vector>

#include "models/host/page_allocator.h"

using namespace cvmsim;

TEST_CASE("page allocator hands out aligned blocks, lowest first, and merges them back") {
  PageAllocator a(Pfn(0), 2 * 262144);  // 2 GiB
  CHECK(a.free_frames() == 524288);
  auto f1 = a.alloc(PageSize::k4K);
  REQUIRE(f1.ok());
  CHECK(*f1 == Pfn(0));
  auto f2 = a.alloc(PageSize::k4K);
  CHECK(*f2 == Pfn(1));
  auto m = a.alloc(PageSize::k2M);
  REQUIRE(m.ok());
  CHECK(m->is_aligned(PageSize::k2M));
  CHECK(*m == Pfn(512));  // the rest of the first 2M block is still split into 4K pieces
  auto g = a.alloc(PageSize::k1G);
  REQUIRE(g.ok());
  CHECK(*g == Pfn(262144));
  CHECK_FALSE(a.alloc(PageSize::k1G).ok());  // the first 1G is split
  CHECK(a.free_frames() == 524288 - 2 - 512 - 262144);
  a.free(*f1);
  a.free(*f2);
  a.free(*m, PageSize::k2M);
  a.free(*g, PageSize::k1G);
  CHECK(a.free_frames() == 524288);
  // Fully merged again: two 1G blocks available.
  CHECK(a.alloc(PageSize::k1G).ok());
  CHECK(a.alloc(PageSize::k1G).ok());
  CHECK(a.alloc(PageSize::k4K).error() == Errno::kENOMEM);
}

TEST_CASE("page allocator copes with unaligned ranges and never hands out a frame twice") {
  PageAllocator a(Pfn(3), 1100);
  std::set<uint64_t> seen;
  for (;;) {
    auto f = a.alloc();
    if (!f.ok()) break;
    CHECK(f->value() >= 3);
    CHECK(f->value() < 1103);
    CHECK(seen.insert(f->value()).second);
  }
  CHECK(seen.size() == 1100);
}

// Regression: taking a free 2 MiB piece of a split 1 GiB block to split it further must count
// the piece out of the 1 GiB parent, or freeing the first 2 MiB later "merges" the 1 GiB block
// while the second 2 MiB is still in use and hands its frames out again (found by the
// conversion benchmark: a guest page got the stage-2 root table's frame).
TEST_CASE("page allocator never hands out a frame that is in use") {
  PageAllocator a(Pfn(0), uint64_t{1} << 18);  // 1 GiB
  std::set<uint64_t> held;
  std::vector<uint64_t> order;
  auto take = [&] {
    auto f = a.alloc(PageSize::k4K);
    REQUIRE(f.ok());
    REQUIRE(held.insert(f->value()).second);  // not already held
    order.push_back(f->value());
  };
  for (int i = 0; i < 513; ++i) take();  // the second 2 MiB piece gets split
  for (int i = 0; i < 512; ++i) {        // free the whole first 2 MiB: it merges back
    a.free(Pfn(order[static_cast<size_t>(i)]), PageSize::k4K);
    held.erase(order[static_cast<size_t>(i)]);
  }
  order.erase(order.begin(), order.begin() + 512);
  // Take a 1 GiB-worth of churn: every frame handed out must be free.
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20000; ++i) {
    if (!order.empty() && rng() % 3 == 0) {
      const size_t k = rng() % order.size();
      a.free(Pfn(order[k]), PageSize::k4K);
      held.erase(order[k]);
      order.erase(order.begin() + static_cast<long>(k));
    } else {
      take();
    }
  }
  // And 2 MiB blocks never overlap held 4 KiB frames.
  for (int i = 0; i < 8; ++i) {
    auto b = a.alloc(PageSize::k2M);
    if (!b.ok()) break;
    for (uint64_t f = b->value(); f < b->value() + 512; ++f) REQUIRE(held.count(f) == 0);
  }
}

TEST_CASE(
    "page allocator merges a 2 MiB block freed 4 KiB at a time (a guest_memfd huge folio punched "
    "page by page)") {
  PageAllocator a(Pfn(0), 2048);  // 8 MiB: four 2 MiB blocks
  auto big = a.alloc(PageSize::k2M);
  REQUIRE(big.ok());
  const uint64_t free_before = a.free_frames();
  // Free all but one page: the block must not be rebuilt while a page is in use.
  for (uint64_t i = 1; i < 512; ++i) a.free(*big + i, PageSize::k4K);
  CHECK(a.free_frames() == free_before + 511);
  std::vector<Pfn> twos;
  for (;;) {
    auto b = a.alloc(PageSize::k2M);
    if (!b.ok()) break;
    CHECK(*b != *big);
    twos.push_back(*b);
  }
  CHECK(twos.size() == 3);
  // The last page goes: the pieces merge and the whole block can be handed out again.
  a.free(*big, PageSize::k4K);
  auto again = a.alloc(PageSize::k2M);
  REQUIRE(again.ok());
  CHECK(*again == *big);
}
