// The last N trace events, for violation reports (run.invariants.trace_events; docs/invariants.md
// "Violation reports"). A TraceSink in front of the real one (the trace file or nothing): every
// event goes on to it, and the most recent `capacity` events are kept as lines in the trace
// file's format. With capacity 0 it only forwards, and is enabled only if the inner sink is.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hw/base/trace_sink.h"

namespace cvmsim {

class RingTrace final : public TraceSink {
 public:
  RingTrace(TraceSink& inner, size_t capacity) : inner_(inner), ring_(capacity) {}
  bool enabled() const override { return !ring_.empty() || inner_.enabled(); }
  void event(uint64_t time_ps, std::string_view component, std::string_view event,
             std::string_view details) override;
  // The kept events, oldest first (at most `capacity`).
  std::vector<std::string> recent() const;
  uint64_t events() const { return count_; }

  // One event as the trace file writes it: "<time ns, 3 decimals> <component> <event> <details>".
  static std::string format(uint64_t time_ps, std::string_view component, std::string_view event,
                            std::string_view details);

 private:
  TraceSink& inner_;
  std::vector<std::string> ring_;
  uint64_t count_ = 0;  // events seen
};

}  // namespace cvmsim
