// Byte copies for the per-access hot path. Guest accesses are mostly 1, 2, 4 or 8 bytes: a copy
// of fixed size compiles to one move, where a memcpy of unknown length may become a libc call or
// `rep movs`, whose start-up cost dwarfs 8 bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace cvmsim {

inline void copy_small(uint8_t* dst, const uint8_t* src, size_t n) {
  switch (n) {
    case 8:
      std::memcpy(dst, src, 8);
      return;
    case 4:
      std::memcpy(dst, src, 4);
      return;
    case 2:
      std::memcpy(dst, src, 2);
      return;
    case 1:
      *dst = *src;
      return;
    default:
      std::memcpy(dst, src, n);
      return;
  }
}

}  // namespace cvmsim
