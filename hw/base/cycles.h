// Simulated time. Functional cores report what an operation cost in Cycles of the core clock;
// the SystemC shell turns cycles into sc_time with a Clock (hw/base/sc_time.h) and advances
// local time by it. Cycles stay an integer so that runs are exactly reproducible.
#pragma once

#include <compare>
#include <cstdint>

namespace cvmsim {

class Cycles {
 public:
  constexpr Cycles() = default;
  constexpr explicit Cycles(uint64_t n) : n_(n) {}
  [[nodiscard]] constexpr uint64_t count() const { return n_; }
  constexpr Cycles operator+(Cycles o) const { return Cycles(n_ + o.n_); }
  constexpr Cycles& operator+=(Cycles o) {
    n_ += o.n_;
    return *this;
  }
  constexpr Cycles operator*(uint64_t k) const { return Cycles(n_ * k); }
  constexpr auto operator<=>(const Cycles&) const = default;

 private:
  uint64_t n_ = 0;
};

// A clock converts cycles to picoseconds, the resolution cvmsim gives SystemC.
class Clock {
 public:
  constexpr explicit Clock(uint64_t frequency_hz) : hz_(frequency_hz) {}
  constexpr uint64_t frequency_hz() const { return hz_; }
  // Rounded to the nearest picosecond; exact for any frequency that divides 10^12.
  constexpr uint64_t to_ps(Cycles c) const {
    // 128-bit intermediate keeps 10^12 * cycles exact for any realistic run length.
    unsigned __int128 ps = static_cast<unsigned __int128>(c.count()) * 1'000'000'000'000ull;
    return static_cast<uint64_t>((ps + hz_ / 2) / hz_);
  }
  constexpr Cycles from_ps(uint64_t ps) const {
    unsigned __int128 c = static_cast<unsigned __int128>(ps) * hz_;
    return Cycles(static_cast<uint64_t>(c / 1'000'000'000'000ull));
  }

 private:
  uint64_t hz_;
};

}  // namespace cvmsim
