// A cheap, seeded bijection on [0, n): scatters Zipf ranks and the hot set of a hot/cold
// workload over the footprint, so that "popular" pages are not all adjacent (real heaps are not
// sorted by popularity, and adjacency would let one 2 MiB mapping or one TLB entry cover the
// whole hot set). It needs no table, so it works for 2^28-page (1 TiB) footprints.
//
// Method: an invertible mixer on b-bit words, b = bits needed for n - 1 (xor with a key,
// multiply by an odd constant mod 2^b, xorshift right; each step is a bijection on b bits),
// applied by cycle walking: re-apply until the value is below n. Because n > 2^(b-1), fewer than
// two applications are needed on average, and the walk always ends (x itself is on its cycle).
#pragma once

#include <cstdint>

#include "hw/base/rng.h"

namespace cvmsim {

class PagePermutation {
 public:
  PagePermutation() = default;
  // n >= 1. The key material comes from `rng` (two draws), so the permutation is as
  // deterministic as the workload's stream.
  PagePermutation(uint64_t n, Rng& rng) : n_(n) {
    unsigned bits = 0;
    while (bits < 64 && ((n - 1) >> bits) != 0) ++bits;
    bits_ = bits;
    mask_ = bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
    shift_ = bits / 2 + 1;
    k0_ = rng.next() & mask_;
    k1_ = rng.next() & mask_;
  }

  uint64_t size() const { return n_; }

  uint64_t operator()(uint64_t x) const {
    if (bits_ == 0) return 0;
    do {
      x = round(x, k0_);
      x = round(x, k1_);
    } while (x >= n_);
    return x;
  }

 private:
  uint64_t round(uint64_t x, uint64_t key) const {
    x = (x ^ key) & mask_;
    x = (x * 0x9e3779b97f4a7c15ull) & mask_;  // odd: a bijection mod 2^b
    x ^= x >> shift_;                         // moves high bits into the weak low bits
    x = (x * 0xbf58476d1ce4e5b9ull) & mask_;
    x ^= x >> shift_;
    return x;
  }

  uint64_t n_ = 1;
  unsigned bits_ = 0;
  unsigned shift_ = 1;
  uint64_t mask_ = 0;
  uint64_t k0_ = 0;
  uint64_t k1_ = 0;
};

}  // namespace cvmsim
