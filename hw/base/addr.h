// Address vocabulary. Every address space is its own type with no implicit conversion
// (ARCHITECTURE.md principle 4): a GFN/PFN mix-up must not compile.
//
//   Gpa / Gfn    guest physical address / frame number (IPA on Arm)
//   Hpa / Pfn    host physical address / frame number
//   Hva          host virtual address (a VMM's userspace mapping)
//   Iova         I/O virtual address (device side of an IOMMU)
//   GmemOffset   byte offset into a guest_memfd file
//   GmemPgoff    page index into a guest_memfd file (Linux's pgoff_t)
//
// Addresses of one kind may be offset by a raw byte count and subtracted to a raw byte count.
// Crossing kinds needs a named function (gpa_to_gfn, pfn_to_hpa, ...) or, for translations,
// an actual page-table walk.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <string>

#include "hw/base/page_size.h"

namespace cvmsim {

template <class Tag>
class StrongU64 {
 public:
  constexpr StrongU64() = default;
  constexpr explicit StrongU64(uint64_t v) : v_(v) {}
  [[nodiscard]] constexpr uint64_t value() const { return v_; }
  constexpr auto operator<=>(const StrongU64&) const = default;

 protected:
  uint64_t v_ = 0;
};

// A byte address: offsetting by raw bytes stays in the same space.
template <class Tag>
class ByteAddr : public StrongU64<Tag> {
 public:
  using StrongU64<Tag>::StrongU64;
  constexpr ByteAddr operator+(uint64_t bytes) const { return ByteAddr(this->v_ + bytes); }
  constexpr ByteAddr operator-(uint64_t bytes) const { return ByteAddr(this->v_ - bytes); }
  constexpr ByteAddr& operator+=(uint64_t bytes) {
    this->v_ += bytes;
    return *this;
  }
  constexpr uint64_t operator-(ByteAddr o) const { return this->v_ - o.v_; }
  constexpr ByteAddr align_down(PageSize s) const {
    return ByteAddr(this->v_ & ~(bytes_of(s) - 1));
  }
  constexpr bool is_aligned(PageSize s) const { return (this->v_ & (bytes_of(s) - 1)) == 0; }
  constexpr uint64_t page_offset(PageSize s = PageSize::k4K) const {
    return this->v_ & (bytes_of(s) - 1);
  }
};

// A frame number: offsetting by a raw frame count stays in the same space.
template <class Tag>
class FrameNum : public StrongU64<Tag> {
 public:
  using StrongU64<Tag>::StrongU64;
  constexpr FrameNum operator+(uint64_t n) const { return FrameNum(this->v_ + n); }
  constexpr FrameNum operator-(uint64_t n) const { return FrameNum(this->v_ - n); }
  constexpr FrameNum& operator++() {
    ++this->v_;
    return *this;
  }
  constexpr uint64_t operator-(FrameNum o) const { return this->v_ - o.v_; }
  constexpr FrameNum align_down(PageSize s) const {
    return FrameNum(this->v_ & ~(frames_of(s) - 1));
  }
  constexpr bool is_aligned(PageSize s) const { return (this->v_ & (frames_of(s) - 1)) == 0; }
};

struct GpaTag {};
struct GfnTag {};
struct HpaTag {};
struct PfnTag {};
struct HvaTag {};
struct IovaTag {};
struct GmemOffsetTag {};
struct GmemPgoffTag {};

using Gpa = ByteAddr<GpaTag>;
using Hpa = ByteAddr<HpaTag>;
using Hva = ByteAddr<HvaTag>;
using Iova = ByteAddr<IovaTag>;
using GmemOffset = ByteAddr<GmemOffsetTag>;
using Gfn = FrameNum<GfnTag>;
using Pfn = FrameNum<PfnTag>;
using GmemPgoff = FrameNum<GmemPgoffTag>;

// Same-side conversions between a byte address and its 4 KiB frame number.
constexpr Gfn gpa_to_gfn(Gpa a) {
  return Gfn(a.value() >> kPageShift);
}
constexpr Gpa gfn_to_gpa(Gfn f) {
  return Gpa(f.value() << kPageShift);
}
constexpr Pfn hpa_to_pfn(Hpa a) {
  return Pfn(a.value() >> kPageShift);
}
constexpr Hpa pfn_to_hpa(Pfn f) {
  return Hpa(f.value() << kPageShift);
}
constexpr GmemPgoff offset_to_pgoff(GmemOffset o) {
  return GmemPgoff(o.value() >> kPageShift);
}
constexpr GmemOffset pgoff_to_offset(GmemPgoff p) {
  return GmemOffset(p.value() << kPageShift);
}

std::string to_string(Gpa a);
std::string to_string(Gfn f);
std::string to_string(Hpa a);
std::string to_string(Pfn f);
std::string to_string(Hva a);
std::string to_string(Iova a);
std::string to_string(GmemOffset a);

}  // namespace cvmsim

template <class Tag>
struct std::hash<cvmsim::ByteAddr<Tag>> {
  size_t operator()(cvmsim::ByteAddr<Tag> a) const noexcept {
    return std::hash<uint64_t>{}(a.value());
  }
};
template <class Tag>
struct std::hash<cvmsim::FrameNum<Tag>> {
  size_t operator()(cvmsim::FrameNum<Tag> a) const noexcept {
    return std::hash<uint64_t>{}(a.value());
  }
};
