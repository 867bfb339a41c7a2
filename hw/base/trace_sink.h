// Where notable events go (ARCHITECTURE.md principle 7). hw and models call this interface;
// sim/trace implements it (a file, or nothing). One line per event: time, component, event,
// details. Callers check enabled() first so that a disabled trace costs one branch.
#pragma once

#include <cstdint>
#include <string_view>

namespace cvmsim {

class TraceSink {
 public:
  virtual ~TraceSink() = default;
  virtual bool enabled() const = 0;
  virtual void event(uint64_t time_ps, std::string_view component, std::string_view event,
                     std::string_view details) = 0;
};

// A sink that records nothing.
class NullTrace final : public TraceSink {
 public:
  bool enabled() const override { return false; }
  void event(uint64_t, std::string_view, std::string_view, std::string_view) override {}
};

}  // namespace cvmsim
