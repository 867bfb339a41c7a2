// How a functional core exposes its statistics without depending on sim/stats: it keeps plain
// counters and, when asked, names each one to a visitor with a unit and a description. sim/stats
// walks every component with a visitor that records (hierarchical name, pointer), and reads the
// values at the end of the run (ARCHITECTURE.md principle 7).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace cvmsim {

class StatVisitor {
 public:
  virtual ~StatVisitor() = default;
  // A monotonically counted quantity.
  virtual void counter(std::string_view name, const uint64_t& v, std::string_view unit,
                       std::string_view description) = 0;
  // A derived or sampled quantity (ratios, averages, maxima).
  virtual void value(std::string_view name, const double& v, std::string_view unit,
                     std::string_view description) = 0;
};

// Forwards to another visitor with "prefix." in front of every name, for sub-components.
class PrefixedStats final : public StatVisitor {
 public:
  PrefixedStats(StatVisitor& inner, std::string_view prefix)
      : inner_(inner), prefix_(std::string(prefix) + ".") {}
  void counter(std::string_view n, const uint64_t& v, std::string_view u,
               std::string_view d) override {
    inner_.counter(prefix_ + std::string(n), v, u, d);
  }
  void value(std::string_view n, const double& v, std::string_view u, std::string_view d) override {
    inner_.value(prefix_ + std::string(n), v, u, d);
  }

 private:
  StatVisitor& inner_;
  std::string prefix_;
};

}  // namespace cvmsim
