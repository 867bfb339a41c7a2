// The host kernel's page allocator, reduced to what isolation needs: naturally aligned 4 KiB,
// 2 MiB and 1 GiB blocks, lowest address first (so runs are deterministic and frames are dense),
// split on demand and merged back when every piece of a block is free again (buddy-style,
// at the three page sizes only).
#pragma once

#include <cstdint>
#include <set>
#include <unordered_map>

#include "hw/base/stat_visitor.h"
#include "hw/memory/frame_allocator.h"

namespace cvmsim {

class PageAllocator final : public FrameAllocator {
 public:
  // Manages frames [first, first + count). `first` need not be aligned.
  PageAllocator(Pfn first, uint64_t count);

  Result<Pfn> alloc(PageSize size = PageSize::k4K) override;
  void free(Pfn pfn, PageSize size = PageSize::k4K) override;

  uint64_t free_frames() const { return free_frames_; }
  uint64_t total_frames() const { return count_; }
  void describe_stats(StatVisitor& v) const;

 private:
  void add_free(uint64_t pfn, unsigned order);
  void release(uint64_t pfn, unsigned order);

  uint64_t first_, count_;
  std::set<uint64_t> free_[3];  // by level_of(PageSize)
  std::unordered_map<uint64_t, uint32_t>
      free_in_[2];  // parent block -> free children, per child level
  uint64_t free_frames_ = 0;
  uint64_t allocs_[3] = {0, 0, 0};
  uint64_t frees_ = 0, failures_ = 0, splits_ = 0, merges_ = 0;
};

}  // namespace cvmsim
