// Test fixtures shared by the mmu tests: a bump frame allocator with a free list, and a small
// data-mode PhysMem.
#pragma once

#include <cstdint>
#include <set>
#include <vector>

#include "hw/memory/frame_allocator.h"
#include "hw/memory/phys_mem.h"

namespace cvmsim::test {

// Hands out 4 KiB frames from [first, limit), reusing freed ones first (lowest first, so runs
// are deterministic). Larger sizes are not needed by table code.
class BumpAllocator : public FrameAllocator {
 public:
  BumpAllocator(Pfn first, Pfn limit) : next_(first), limit_(limit) {}
  Result<Pfn> alloc(PageSize size = PageSize::k4K) override {
    if (size != PageSize::k4K) return Errno::kEINVAL;
    if (!free_.empty()) {
      Pfn p(*free_.begin());
      free_.erase(free_.begin());
      live_.insert(p.value());
      return p;
    }
    if (next_ >= limit_) return Errno::kENOMEM;
    Pfn p = next_;
    ++next_;
    live_.insert(p.value());
    return p;
  }
  void free(Pfn pfn, PageSize size = PageSize::k4K) override {
    REQUIRE_FREE_OK(size == PageSize::k4K && live_.erase(pfn.value()) == 1);
    free_.insert(pfn.value());
  }
  size_t live() const { return live_.size(); }
  bool is_live(Pfn p) const { return live_.count(p.value()) != 0; }
  bool double_free_seen() const { return bad_free_; }
  // Makes every further alloc fail (ENOMEM tests).
  void exhaust() {
    limit_ = next_;
    free_.clear();
  }

 private:
  void REQUIRE_FREE_OK(bool ok) {
    if (!ok) bad_free_ = true;
  }
  Pfn next_;
  Pfn limit_;
  std::set<uint64_t> free_;
  std::set<uint64_t> live_;
  bool bad_free_ = false;
};

// 64 MiB of host memory; table frames come from [0x1000, 0x2000) (16..32 MiB).
inline constexpr uint64_t kTestMemBytes = 64ull << 20;
inline constexpr Pfn kTableFramesBegin{0x1000};
inline constexpr Pfn kTableFramesEnd{0x2000};

}  // namespace cvmsim::test
