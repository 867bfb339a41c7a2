// A small map from frame number to a pointer: open addressing with linear probing, a
// multiplicative hash and backward-shift deletion (no tombstones), grown at half load.
//
// PhysMem keeps the byte blocks of page-table frames in one, so that a stage-2 walk finds a
// table's bytes in a structure of 32 bytes per table frame, which stays in the host's cache,
// instead of in the table frame's metadata slot, which sits among the guest frames' slots and
// is usually evicted by the guest's own traffic. One entry per key; no iteration order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace cvmsim {

class FramePtrMap {
 public:
  FramePtrMap() : slots_(kMinSlots), mask_(kMinSlots - 1) {}

  // The pointer stored for `frame`, or nullptr.
  void* find(uint64_t frame) const {
    const uint64_t key = frame + 1;
    for (size_t i = home(key);; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key == key) return s.ptr;
      if (s.key == 0) return nullptr;
    }
  }
  // Inserts or replaces.
  void insert(uint64_t frame, void* ptr) {
    if (2 * (size_ + 1) > slots_.size()) grow();
    place(frame + 1, ptr);
  }
  // Removes `frame` if present; returns whether it was.
  bool erase(uint64_t frame) {
    const uint64_t key = frame + 1;
    size_t i = home(key);
    while (slots_[i].key != key) {
      if (slots_[i].key == 0) return false;
      i = (i + 1) & mask_;
    }
    // Backward shift: move later entries of the probe run into the hole when their home slot
    // does not lie (cyclically) in (hole, their position].
    size_t hole = i;
    for (size_t j = (i + 1) & mask_; slots_[j].key != 0; j = (j + 1) & mask_) {
      const size_t h = home(slots_[j].key);
      const bool stays = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j);
      if (!stays) {
        slots_[hole] = slots_[j];
        hole = j;
      }
    }
    slots_[hole] = Slot{};
    --size_;
    return true;
  }
  size_t size() const { return size_; }
  // Host memory held, for PhysMem::host_bytes().
  size_t host_bytes() const { return slots_.capacity() * sizeof(Slot); }

 private:
  struct Slot {
    uint64_t key = 0;  // frame + 1; 0 = empty
    void* ptr = nullptr;
  };
  static constexpr size_t kMinSlots = 16;

  size_t home(uint64_t key) const {
    return static_cast<size_t>((key * 0x9e3779b97f4a7c15ull) >> shift_) & mask_;
  }
  void place(uint64_t key, void* ptr) {
    size_t i = home(key);
    while (slots_[i].key != 0 && slots_[i].key != key) i = (i + 1) & mask_;
    if (slots_[i].key == 0) ++size_;
    slots_[i] = Slot{key, ptr};
  }
  void grow() {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(old.size() * 2, Slot{});
    mask_ = slots_.size() - 1;
    --shift_;
    size_ = 0;
    for (const Slot& s : old)
      if (s.key != 0) place(s.key, s.ptr);
  }

  std::vector<Slot> slots_;
  size_t mask_;
  unsigned shift_ = 64 - 4;  // log2(kMinSlots) top bits of the product pick the home slot
  size_t size_ = 0;
};

}  // namespace cvmsim
