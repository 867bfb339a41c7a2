#include "hw/mmu/pte_format.h"

namespace cvmsim {

std::string_view name_of(Stage2Format f) {
  switch (f) {
    case Stage2Format::kEpt4:
      return "ept4";
    case Stage2Format::kEpt5:
      return "ept5";
    case Stage2Format::kNpt4:
      return "npt4";
    case Stage2Format::kNpt5:
      return "npt5";
    case Stage2Format::kArmS2:
      return "arm_s2";
  }
  return "?";
}

std::optional<Stage2Format> parse_stage2_format(std::string_view s) {
  for (Stage2Format f : kAllStage2Formats) {
    if (name_of(f) == s) return f;
  }
  return std::nullopt;
}

std::string_view name_of(EntryKind k) {
  switch (k) {
    case EntryKind::kEmpty:
      return "empty";
    case EntryKind::kTable:
      return "table";
    case EntryKind::kLeaf:
      return "leaf";
    case EntryKind::kAnnotation:
      return "annotation";
  }
  return "?";
}

}  // namespace cvmsim
