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
  // The count, settable in place: for configuration readers (hw/base/schema.h cycles_field).
  constexpr uint64_t& count_ref() { return n_; }
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
  constexpr explicit Clock(uint64_t frequency_hz)
      : hz_(frequency_hz),
        ps_per_cycle_(kPsPerSecond % frequency_hz == 0 ? kPsPerSecond / frequency_hz : 0) {}
  constexpr uint64_t frequency_hz() const { return hz_; }
  // Rounded to the nearest picosecond; exact for any frequency that divides 10^12.
  constexpr uint64_t to_ps(Cycles c) const {
    // The vCPU converts on every access: when a cycle is a whole number of picoseconds (every
    // frequency that divides 10^12, 2 GHz included) that is one multiplication, not a 128-bit
    // division. Same result; the general formula is kept for the rest and for overflow.
    uint64_t ps;
    if (ps_per_cycle_ != 0 && !__builtin_mul_overflow(c.count(), ps_per_cycle_, &ps)) return ps;
    // 128-bit intermediate keeps 10^12 * cycles exact for any realistic run length.
    unsigned __int128 wide = static_cast<unsigned __int128>(c.count()) * kPsPerSecond;
    return static_cast<uint64_t>((wide + hz_ / 2) / hz_);
  }
  constexpr Cycles from_ps(uint64_t ps) const {
    if (ps_per_cycle_ != 0) return Cycles(ps / ps_per_cycle_);  // = floor(ps * hz / 10^12)
    unsigned __int128 c = static_cast<unsigned __int128>(ps) * hz_;
    return Cycles(static_cast<uint64_t>(c / kPsPerSecond));
  }

 private:
  static constexpr uint64_t kPsPerSecond = 1'000'000'000'000ull;
  uint64_t hz_;
  uint64_t ps_per_cycle_;  // 10^12 / hz when that is exact, else 0
};

}  // namespace cvmsim
