// The trace file: one readable line per event (CONVENTIONS.md, VCML):
//   <time ns, 3 decimals> <component> <event> <details>
#pragma once

#include <cstdio>
#include <string>

#include "hw/base/trace_sink.h"

namespace cvmsim {

class FileTrace final : public TraceSink {
 public:
  explicit FileTrace(const std::string& path);  // throws std::runtime_error if it can't open
  ~FileTrace() override;
  bool enabled() const override { return f_ != nullptr; }
  void event(uint64_t time_ps, std::string_view component, std::string_view event,
             std::string_view details) override;
  uint64_t events() const { return events_; }

 private:
  std::FILE* f_ = nullptr;
  uint64_t events_ = 0;
};

}  // namespace cvmsim
