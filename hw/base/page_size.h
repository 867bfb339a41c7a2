// Page sizes shared by every stage-2 format cvmsim models (x86 EPT/NPT and Arm stage-2 with a
// 4 KiB granule): 4 KiB leaves at level 0, 2 MiB at level 1, 1 GiB at level 2, counting upward
// from the leaf table ("level" here is the number of 9-bit steps above 4 KiB).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace cvmsim {

inline constexpr unsigned kPageShift = 12;
inline constexpr uint64_t kPageBytes = uint64_t{1} << kPageShift;
inline constexpr unsigned kBitsPerLevel = 9;
inline constexpr unsigned kEntriesPerTable = 1u << kBitsPerLevel;

enum class PageSize : uint8_t { k4K = 0, k2M = 1, k1G = 2 };

inline constexpr PageSize kAllPageSizes[] = {PageSize::k4K, PageSize::k2M, PageSize::k1G};

constexpr unsigned level_of(PageSize s) {
  return static_cast<unsigned>(s);
}
constexpr unsigned shift_of(PageSize s) {
  return kPageShift + kBitsPerLevel * level_of(s);
}
constexpr uint64_t bytes_of(PageSize s) {
  return uint64_t{1} << shift_of(s);
}
constexpr uint64_t frames_of(PageSize s) {
  return uint64_t{1} << (kBitsPerLevel * level_of(s));
}

constexpr std::string_view name_of(PageSize s) {
  switch (s) {
    case PageSize::k4K:
      return "4K";
    case PageSize::k2M:
      return "2M";
    case PageSize::k1G:
      return "1G";
  }
  return "?";
}

// Parses "4K", "2M", "1G" (also "4KiB", "2MiB", "1GiB").
std::optional<PageSize> parse_page_size(std::string_view s);

}  // namespace cvmsim
