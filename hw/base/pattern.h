// Data patterns for guest and host memory operations, so that a program can write, convert,
// read back and check what it sees without carrying the bytes around. A pattern gives the byte
// at every address deterministically:
//   kValue   the 64-bit little-endian `value` repeated, aligned to the address (byte at address a
//            is byte (a mod 8) of value);
//   kSeeded  a byte derived from (value as seed, address), different at every address;
//   kZero    zero.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "hw/base/rng.h"

namespace cvmsim {

enum class PatternKind : uint8_t { kValue, kSeeded, kZero };

std::string_view name_of(PatternKind k);
std::optional<PatternKind> parse_pattern_kind(std::string_view s);

// The byte the pattern holds at `addr` (a raw address: the caller decides which space).
inline uint8_t pattern_byte(PatternKind k, uint64_t value, uint64_t addr) {
  switch (k) {
    case PatternKind::kValue:
      return static_cast<uint8_t>(value >> (8 * (addr & 7)));
    case PatternKind::kSeeded:
      return static_cast<uint8_t>(mix64(value ^ (addr * 0x9e3779b97f4a7c15ull)) >> 56);
    case PatternKind::kZero:
      return 0;
  }
  return 0;
}

// Fills out[i] with the pattern's byte at addr + i.
void fill_pattern(PatternKind k, uint64_t value, uint64_t addr, std::span<uint8_t> out);

// Returns the index of the first byte that differs from the pattern, or nullopt if all match.
std::optional<size_t> check_pattern(PatternKind k, uint64_t value, uint64_t addr,
                                    std::span<const uint8_t> data);

}  // namespace cvmsim
