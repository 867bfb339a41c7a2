// Access permissions of a stage-2 leaf, shared by every format, the walker and the TLB. A bitmask
// so that the hot path checks `granted.allows(needed)` with one AND and compare.
#pragma once

#include <cstdint>
#include <string>

namespace cvmsim {

struct Perms {
  static constexpr uint8_t kRead = 1 << 0;
  static constexpr uint8_t kWrite = 1 << 1;
  static constexpr uint8_t kExec = 1 << 2;
  static constexpr uint8_t kAll = kRead | kWrite | kExec;

  uint8_t bits = 0;

  constexpr Perms() = default;
  constexpr explicit Perms(uint8_t b) : bits(static_cast<uint8_t>(b & kAll)) {}
  static constexpr Perms make(bool r, bool w, bool x) {
    return Perms(static_cast<uint8_t>((r ? kRead : 0) | (w ? kWrite : 0) | (x ? kExec : 0)));
  }

  constexpr bool read() const { return bits & kRead; }
  constexpr bool write() const { return bits & kWrite; }
  constexpr bool exec() const { return bits & kExec; }
  constexpr bool none() const { return bits == 0; }
  // True if every permission in `need` is granted.
  constexpr bool allows(Perms need) const { return (bits & need.bits) == need.bits; }

  constexpr Perms operator|(Perms o) const { return Perms(static_cast<uint8_t>(bits | o.bits)); }
  constexpr Perms operator&(Perms o) const { return Perms(static_cast<uint8_t>(bits & o.bits)); }
  constexpr bool operator==(const Perms&) const = default;
};

inline constexpr Perms kPermsNone{};
inline constexpr Perms kPermsR{Perms::kRead};
inline constexpr Perms kPermsW{Perms::kWrite};
inline constexpr Perms kPermsX{Perms::kExec};
inline constexpr Perms kPermsRW{Perms::kRead | Perms::kWrite};
inline constexpr Perms kPermsRX{Perms::kRead | Perms::kExec};
inline constexpr Perms kPermsRWX{Perms::kAll};

// "rw-", "r-x", "---": the notation of /proc/<pid>/maps.
inline std::string to_string(Perms p) {
  return std::string{p.read() ? 'r' : '-', p.write() ? 'w' : '-', p.exec() ? 'x' : '-'};
}

}  // namespace cvmsim
