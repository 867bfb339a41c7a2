#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "models/guest/page_permutation.h"
#include "models/guest/zipf.h"

using namespace cvmsim;

TEST_CASE("page permutation is a bijection on 0..n-1") {
  Rng rng(5, "perm");
  for (uint64_t n : {1, 2, 3, 7, 8, 9, 100, 1000, 4096, 4097, 65'537}) {
    PagePermutation perm(n, rng);
    std::vector<bool> seen(n, false);
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t p = perm(i);
      REQUIRE(p < n);
      REQUIRE_FALSE(seen[p]);
      seen[p] = true;
    }
  }
}

TEST_CASE("page permutation scatters neighbours and depends on the seed") {
  Rng r1(1, "perm"), r2(2, "perm");
  const uint64_t n = uint64_t{1} << 28;  // a 1 TiB footprint of 4 KiB pages
  PagePermutation a(n, r1), b(n, r2);
  int adjacent = 0, same = 0;
  for (uint64_t i = 0; i < 1000; ++i) {
    REQUIRE(a(i) < n);
    const uint64_t d = a(i) > a(i + 1) ? a(i) - a(i + 1) : a(i + 1) - a(i);
    adjacent += d < 512;  // within one 2 MiB region
    same += a(i) == b(i);
  }
  CHECK(adjacent < 10);
  CHECK(same < 5);
}

TEST_CASE("zipf sampler frequencies match k^-theta") {
  const uint64_t n = 1000;
  const int samples = 1'000'000;
  for (double theta : {0.0, 0.5, 0.99, 1.0, 1.5, 3.0}) {
    ZipfSampler z(n, theta);
    Rng rng(11, "zipf");
    std::vector<int> hist(n + 1, 0);
    for (int i = 0; i < samples; ++i) {
      const uint64_t k = z.sample(rng);
      REQUIRE(k >= 1);
      REQUIRE(k <= n);
      hist[k]++;
    }
    INFO("theta " << theta);
    for (uint64_t k : {1, 2, 3, 10, 100, 1000}) {
      const double want = samples * ZipfSampler::probability(n, theta, k);
      if (want < 200) continue;  // too few to test tightly
      const double sd = std::sqrt(want);
      INFO("rank " << k << " want " << want << " got " << hist[k]);
      CHECK(std::abs(hist[k] - want) < 5 * sd);
    }
    // The log-log slope over ranks 1..20 is -theta.
    if (theta <= 1.5) {
      double sx = 0, sy = 0, sxx = 0, sxy = 0;
      const int m = 20;
      for (int k = 1; k <= m; ++k) {
        const double x = std::log(k), y = std::log(hist[k]);
        sx += x, sy += y, sxx += x * x, sxy += x * y;
      }
      const double slope = (m * sxy - sx * sy) / (m * sxx - sx * sx);
      CHECK(std::abs(slope + theta) < 0.03);
    }
  }
}

TEST_CASE("zipf sampler handles a single rank and huge rank counts") {
  Rng rng(3, "zipf");
  ZipfSampler one(1, 0.99);
  for (int i = 0; i < 100; ++i) CHECK(one.sample(rng) == 1);
  ZipfSampler big(uint64_t{1} << 40, 0.99);
  uint64_t top = 0;
  for (int i = 0; i < 100'000; ++i) {
    const uint64_t k = big.sample(rng);
    REQUIRE(k >= 1);
    REQUIRE(k <= (uint64_t{1} << 40));
    top += k == 1;
  }
  CHECK(top > 1000);  // rank 1 still holds a few percent of the mass
}
