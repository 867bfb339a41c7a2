#include "sim/trace/ring_trace.h"

namespace cvmsim {

namespace {
// Appends v in decimal (no printf: the ring formats an event per KVM exit or SEAMCALL).
void append_u64(std::string& s, uint64_t v) {
  char b[24];
  int n = 0;
  do {
    b[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) s.push_back(b[--n]);
}

void format_into(std::string& s, uint64_t time_ps, std::string_view component,
                 std::string_view event, std::string_view details) {
  s.clear();
  append_u64(s, time_ps / 1000);
  const unsigned frac = static_cast<unsigned>(time_ps % 1000);
  s.push_back('.');
  s.push_back(static_cast<char>('0' + frac / 100));
  s.push_back(static_cast<char>('0' + frac / 10 % 10));
  s.push_back(static_cast<char>('0' + frac % 10));
  s.push_back(' ');
  s.append(component).append(" ").append(event).append(" ").append(details);
}
}  // namespace

std::string RingTrace::format(uint64_t time_ps, std::string_view component, std::string_view event,
                              std::string_view details) {
  std::string s;
  format_into(s, time_ps, component, event, details);
  return s;
}

void RingTrace::event(uint64_t time_ps, std::string_view component, std::string_view event,
                      std::string_view details) {
  if (inner_.enabled()) inner_.event(time_ps, component, event, details);
  if (ring_.empty()) return;
  format_into(ring_[count_ % ring_.size()], time_ps, component, event,
              details);  // reuses the slot's buffer
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
