#include <catch2/catch.hpp>
#include <unordered_map>

#include "hw/base/rng.h"
#include "hw/memory/frame_ptr_map.h"
#include "hw/memory/phys_mem.h"

using namespace cvmsim;

namespace {
void* ptr(uint64_t v) {
  return reinterpret_cast<void*>(static_cast<uintptr_t>(v * 16 + 8));
}
}  // namespace

TEST_CASE("frame pointer map: insert, replace, find, erase") {
  FramePtrMap m;
  CHECK(m.find(0) == nullptr);
  m.insert(0, ptr(1));
  m.insert(~uint64_t{0} - 1, ptr(2));  // the largest key it accepts (frame + 1 must not be 0)
  CHECK(m.find(0) == ptr(1));
  CHECK(m.find(~uint64_t{0} - 1) == ptr(2));
  m.insert(0, ptr(3));
  CHECK(m.size() == 2);
  CHECK(m.find(0) == ptr(3));
  CHECK(m.erase(0));
  CHECK_FALSE(m.erase(0));
  CHECK(m.find(0) == nullptr);
  CHECK(m.size() == 1);
}

TEST_CASE("frame pointer map agrees with std::unordered_map under random operations") {
  FramePtrMap m;
  std::unordered_map<uint64_t, void*> ref;
  Rng rng(7);
  for (int i = 0; i < 200'000; ++i) {
    // A small key range forces long probe runs, wrap-around and backward shifts.
    const uint64_t k = rng.below(i < 100'000 ? 600 : 5000);
    switch (rng.below(3)) {
      case 0:
        m.insert(k, ptr(static_cast<uint64_t>(i)));
        ref[k] = ptr(static_cast<uint64_t>(i));
        break;
      case 1:
        REQUIRE(m.erase(k) == (ref.erase(k) == 1));
        break;
      default: {
        const auto it = ref.find(k);
        REQUIRE(m.find(k) == (it == ref.end() ? nullptr : it->second));
      }
    }
    REQUIRE(m.size() == ref.size());
  }
  for (const auto& [k, v] : ref) REQUIRE(m.find(k) == v);
}

TEST_CASE("page-table frames are read through the table index, before and after reuse") {
  for (MemMode mode : {MemMode::kData, MemMode::kMetadataOnly}) {
    PhysMem mem(4ull << 20, mode);
    mem.mark_table(Pfn(9), true);
    mem.write_u64(Hpa(0x9010), 0x1122334455667788ull);
    CHECK(mem.read_u64(Hpa(0x9010)) == 0x1122334455667788ull);
    // No longer a table: still read (data mode keeps the bytes; metadata-only too, as the block
    // stays until the frame is scrubbed), then scrubbed and reused as a table.
    mem.mark_table(Pfn(9), false);
    CHECK(mem.read_u64(Hpa(0x9010)) == 0x1122334455667788ull);
    mem.fill(Hpa(0x9000), kPageBytes, 0);
    CHECK(mem.read_u64(Hpa(0x9010)) == 0);
    mem.mark_table(Pfn(9), true);
    CHECK(mem.read_u64(Hpa(0x9010)) == 0);
    mem.write_u64(Hpa(0x9018), 42);
    CHECK(mem.read_u64(Hpa(0x9018)) == 42);
  }
}
