#include "sim/trace/ring_trace.h"

#include <cstdio>

namespace cvmsim {

std::string RingTrace::format(uint64_t time_ps, std::string_view component, std::string_view event,
                              std::string_view details) {
  char t[48];
  std::snprintf(t, sizeof t, "%llu.%03llu ", static_cast<unsigned long long>(time_ps / 1000),
                static_cast<unsigned long long>(time_ps % 1000));
  std::string s(t);
  s.reserve(s.size() + component.size() + event.size() + details.size() + 2);
  s.append(component).append(" ").append(event).append(" ").append(details);
  return s;
}

void RingTrace::event(uint64_t time_ps, std::string_view component, std::string_view event,
                      std::string_view details) {
  if (inner_.enabled()) inner_.event(time_ps, component, event, details);
  if (ring_.empty()) return;
  ring_[count_ % ring_.size()] = format(time_ps, component, event, details);
  ++count_;
}

std::vector<std::string> RingTrace::recent() const {
  std::vector<std::string> out;
  const uint64_t n = ring_.size();
  const uint64_t first = count_ > n ? count_ - n : 0;
  for (uint64_t i = first; i < count_; ++i) out.push_back(ring_[i % n]);
  return out;
}

}  // namespace cvmsim
