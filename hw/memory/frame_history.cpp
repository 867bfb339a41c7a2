#include "hw/memory/frame_history.h"

#include <cinttypes>
#include <cstdio>

namespace cvmsim {

std::string FrameHistory::describe(const FrameEvent& e,
                                   const std::function<std::string(Principal)>& name) {
  char n[32];
  std::snprintf(n, sizeof n, "0x%" PRIx64, e.arg);
  const std::string who = name(e.who);
  std::string s = "#" + std::to_string(e.seq);
  if (e.timed) {
    char t[40];
    std::snprintf(t, sizeof t, " t=%.3f",
                  static_cast<double>(e.time_ps) / 1000.0);  // ns, as the trace
    s += t;
  }
  s += ": ";
  switch (e.kind) {
    case FrameEventKind::kWrite:
      return s + who + " wrote it: the frame now holds " + who + "'s data";
    case FrameEventKind::kLabelSet:
      return s + "labelled as holding " + who + "'s data";
    case FrameEventKind::kHandout:
      return s + "guest_memfd handed it to " + who + " (file index " + n + "), zeroed";
    case FrameEventKind::kHandoutStale:
      return s + "guest_memfd handed it to " + who + " (file index " + n +
             ") WITHOUT zeroing: old contents kept";
    case FrameEventKind::kScrub:
      return s + "scrubbed (zeroed by the host kernel): holds nobody's data";
    case FrameEventKind::kMap:
      return s + "mapped in " + who + "'s stage-2 at gfn " + n;
    case FrameEventKind::kRebind:
      return s + "its guest_memfd was rebound from " + name(e.other) + " to " + who +
             " without scrubbing";
    case FrameEventKind::kPunch:
      return s + "punched out of guest_memfd (file index " + n + ")";
    case FrameEventKind::kHostileMap:
      return s + "the host kernel mapped it into " + who + "'s stage-2 at gfn " + n +
             " behind KVM's back";
  }
  return s + "?";
}

}  // namespace cvmsim
