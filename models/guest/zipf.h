// Zipf-distributed ranks in O(1) time and memory: P(k) proportional to k^-theta for k in [1, n].
// Method: rejection-inversion (W. Hormann and G. Derflinger, "Rejection-inversion to generate
// variates from monotone discrete distributions", ACM TOMACS 6(3), 1996), in the formulation of
// Apache Commons RNG's RejectionInversionZipfSampler. No per-rank table, so n can be 2^28 pages
// (a 1 TiB footprint) or more; the expected number of iterations is close to 1 for every theta,
// and each costs one log1p and one exp. theta = 0 gives the uniform distribution.
#pragma once

#include <cmath>
#include <cstdint>

#include "hw/base/rng.h"

namespace cvmsim {

class ZipfSampler {
 public:
  ZipfSampler() = default;
  // n >= 1; theta finite and >= 0 (the workload factory checks both).
  ZipfSampler(uint64_t n, double theta)
      : n_(static_cast<double>(n)),
        theta_(theta),
        h_integral_x1_(h_integral(1.5) - 1.0),
        h_integral_n_(h_integral(static_cast<double>(n) + 0.5)),
        s_(2.0 - h_integral_inverse(h_integral(2.5) - h(2.0))) {}

  uint64_t sample(Rng& rng) const {
    for (;;) {
      // u is uniform in (h_integral_x1_, h_integral_n_].
      const double u = h_integral_n_ + rng.uniform01() * (h_integral_x1_ - h_integral_n_);
      const double x = h_integral_inverse(u);
      double k = std::floor(x + 0.5);
      if (k < 1.0) {
        k = 1.0;
      } else if (k > n_) {
        k = n_;
      }
      // The first test accepts most samples without evaluating h; NaN fails both and retries.
      if (k - x <= s_ || u >= h_integral(k + 0.5) - h(k)) return static_cast<uint64_t>(k);
    }
  }

  // The exact probability of rank k, for tests (O(n): sums the normaliser).
  static double probability(uint64_t n, double theta, uint64_t k) {
    double z = 0;
    for (uint64_t i = 1; i <= n; ++i) z += std::pow(static_cast<double>(i), -theta);
    return std::pow(static_cast<double>(k), -theta) / z;
  }

 private:
  // H(x) = integral of h from 1 to x; h(x) = x^-theta. Written with expm1/log1p so that
  // theta = 1 (where H is log x) needs no special case.
  double h_integral(double x) const {
    const double log_x = std::log(x);
    return helper2((1.0 - theta_) * log_x) * log_x;
  }
  double h(double x) const { return std::exp(-theta_ * std::log(x)); }
  double h_integral_inverse(double x) const {
    double t = x * (1.0 - theta_);
    if (t < -1.0) t = -1.0;  // rounding can push t just below its bound
    return std::exp(helper1(t) * x);
  }
  // log1p(x) / x, continuous at 0.
  static double helper1(double x) {
    if (std::fabs(x) > 1e-8) return std::log1p(x) / x;
    return 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x));
  }
  // expm1(x) / x, continuous at 0.
  static double helper2(double x) {
    if (std::fabs(x) > 1e-8) return std::expm1(x) / x;
    return 1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x));
  }

  double n_ = 1;
  double theta_ = 0;
  double h_integral_x1_ = 0;
  double h_integral_n_ = 0;
  double s_ = 0;
};

}  // namespace cvmsim
