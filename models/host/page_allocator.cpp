#include "models/host/page_allocator.h"

#include <cassert>

namespace cvmsim {

namespace {
constexpr uint64_t frames_at(unsigned order) {
  return uint64_t{1} << (kBitsPerLevel * order);
}
}  // namespace

PageAllocator::PageAllocator(Pfn first, uint64_t count) : first_(first.value()), count_(count) {
  // Carve the range into the largest aligned blocks that fit.
  uint64_t p = first_;
  const uint64_t end = first_ + count_;
  while (p < end) {
    unsigned order = 2;
    while (order > 0 && (p % frames_at(order) != 0 || p + frames_at(order) > end)) --order;
    add_free(p, order);
    free_frames_ += frames_at(order);
    p += frames_at(order);
  }
}

void PageAllocator::add_free(uint64_t pfn, unsigned order) {
  free_[order].insert(pfn);
}

Result<Pfn> PageAllocator::alloc(PageSize size) {
  const unsigned want = level_of(size);
  unsigned have = want;
  while (have <= 2 && free_[have].empty()) ++have;
  if (have > 2) {
    ++failures_;
    return Errno::kENOMEM;
  }
  uint64_t pfn = *free_[have].begin();
  free_[have].erase(free_[have].begin());
  // The block taken was one free piece of a split parent (if it has one): count it out, whether
  // it is handed out whole or split further. Missing this lets a later merge rebuild a parent
  // whose pieces are still in use.
  if (have < 2) {
    auto it = free_in_[have].find(pfn >> (kBitsPerLevel * (have + 1)));
    if (it != free_in_[have].end()) --it->second;
  }
  // Split down to the wanted size, keeping the lowest piece.
  while (have > want) {
    --have;
    ++splits_;
    for (uint64_t i = 1; i < kEntriesPerTable; ++i) add_free(pfn + i * frames_at(have), have);
    free_in_[have][pfn >> (kBitsPerLevel * (have + 1))] = kEntriesPerTable - 1;
  }
  free_frames_ -= frames_at(want);
  ++allocs_[want];
  return Pfn(pfn);
}

void PageAllocator::free(Pfn pfn, PageSize size) {
  assert(pfn.value() >= first_ && pfn.value() < first_ + count_);
  ++frees_;
  free_frames_ += frames_of(size);
  release(pfn.value(), level_of(size));
}

void PageAllocator::release(uint64_t pfn, unsigned order) {
  if (order < 2) {
    const uint64_t parent = pfn >> (kBitsPerLevel * (order + 1));
    auto it = free_in_[order].find(parent);
    // No count for the parent: it was handed out whole and is now freed piece by piece (a
    // guest_memfd huge folio punched 4 KiB at a time): start counting, so that it merges back.
    if (it == free_in_[order].end() && order < 1) it = free_in_[order].emplace(parent, 0).first;
    if (it != free_in_[order].end() && ++it->second == kEntriesPerTable) {
      // Every piece is free again: merge into the parent block.
      const uint64_t base = parent << (kBitsPerLevel * (order + 1));
      for (uint64_t i = 0; i < kEntriesPerTable; ++i)
        if (base + i * frames_at(order) != pfn) free_[order].erase(base + i * frames_at(order));
      free_in_[order].erase(it);
      ++merges_;
      release(base, order + 1);
      return;
    }
  }
  add_free(pfn, order);
}

void PageAllocator::describe_stats(StatVisitor& v) const {
  v.counter("allocs_4k", allocs_[0], "blocks", "4 KiB blocks allocated");
  v.counter("allocs_2m", allocs_[1], "blocks", "2 MiB blocks allocated");
  v.counter("allocs_1g", allocs_[2], "blocks", "1 GiB blocks allocated");
  v.counter("frees", frees_, "blocks", "blocks freed");
  v.counter("failures", failures_, "requests", "allocations refused with ENOMEM");
  v.counter("splits", splits_, "blocks", "blocks split into 512 smaller ones");
  v.counter("merges", merges_, "blocks", "blocks merged back when all pieces were free");
  v.counter("free_frames", free_frames_, "frames", "4 KiB frames free at the end of the run");
}

}  // namespace cvmsim
