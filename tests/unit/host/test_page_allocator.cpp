#include <catch2/catch.hpp>
#include <set>

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
