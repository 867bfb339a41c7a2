#include "hw/memory/key_config.h"

namespace cvmsim {

std::string_view name_of(IntegrityMode m) {
  switch (m) {
    case IntegrityMode::kCi:
      return "ci";
    case IntegrityMode::kLi:
      return "li";
  }
  return "?";
}

std::optional<IntegrityMode> parse_integrity_mode(std::string_view s) {
  if (s == "ci") return IntegrityMode::kCi;
  if (s == "li") return IntegrityMode::kLi;
  return std::nullopt;
}

Status KeyConfig::validate() const {
  if (num_key_ids == 0 || num_key_ids > kMaxKeyIds) return Errno::kEINVAL;
  if (first_private == 0 || first_private > num_key_ids) return Errno::kEINVAL;
  if (integrity != IntegrityMode::kCi && integrity != IntegrityMode::kLi) return Errno::kEINVAL;
  return {};
}

}  // namespace cvmsim
