// Per-frame provenance log: a leak is reported with the chain of events that carried the data
// there (docs/invariants.md "Violation reports", docs/memory-integrity.md "Provenance").
//
// For every frame that has carried a VM's secret label, the last kPerFrame events that put data
// into it or moved it between owners: a keyed write that changed its label (PhysMem records it),
// and the events the layers above report through PhysMem::note (guest_memfd hand-out to a VM,
// scrub, rebind to another VM, punch-hole; a stage-2 mapping at a GFN; a hostile host mapping).
// ISO-2 and ISO-6 print a frame's log as "the chain" of the leak they report.
//
// Bounded: kPerFrame events per frame (a ring: the oldest are dropped) and at most max_frames()
// frames (frames beyond the cap are not logged; dropped_frames() counts them). Cheap: nothing is
// looked up for a frame that never held a VM's data, and PhysMem records label events only when
// the label changes, so a guest rewriting its own memory costs nothing.
// Decision: a scrub does NOT clear the log; it is recorded as an event ("scrubbed"), so that a
// later leak's chain shows whether and when the frame was scrubbed (a scrub is part of the story,
// and its absence is the bug ISO-6 reports). The frame's label is cleared by the scrub as before.
//
// hw layer: events carry principals and numbers only; the names of VMs are resolved by the
// reader (sim/invariants). The simulated time comes from a clock callback the platform sets;
// without one, events carry only their global sequence number. PhysMem turns the log off in
// metadata-only mode (it would cost more than the page's metadata).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "hw/base/addr.h"
#include "hw/base/principal.h"

namespace cvmsim {

enum class FrameEventKind : uint8_t {
  kWrite,         // a keyed write changed the label: `who` wrote, the frame now holds who's data
  kLabelSet,      // the label was set directly (set_label): to `who`
  kHandout,       // guest_memfd handed the frame to `who` (a VM) at file index `arg`, zeroed
  kHandoutStale,  // the same without zeroing (policy zero_on_handout off): old contents kept
  kScrub,         // zeroed by the host kernel (clear_highpage): label back to nobody
  kMap,           // mapped in `who`'s stage-2 at gfn `arg`
  kRebind,        // the guest_memfd holding it was rebound from `other` to `who` (no scrub)
  kPunch,         // removed from guest_memfd by a punch-hole / truncation (index `arg`)
  kHostileMap,    // the host kernel mapped it into `who`'s stage-2 at gfn `arg` behind KVM's back
  // (Reads are not logged: ISO-2 appends the read it reports as the chain's last line.)
};

struct FrameEvent {      // 40 bytes
  uint64_t seq = 0;      // global order of recording
  uint64_t time_ps = 0;  // simulated time from the platform's clock callback
  bool timed = false;    // false: no clock set, or a remembered mapping (remember_map)
  FrameEventKind kind = FrameEventKind::kWrite;
  Principal who = kNobody;
  Principal other = kNobody;
  uint64_t arg = 0;
};

class FrameHistory {
 public:
  static constexpr size_t kPerFrame = 12;

  explicit FrameHistory(size_t max_frames = 65536) : max_frames_(max_frames) {}

  // Records an event for f (if f is logged or may be logged: within the cap).
  void record(Pfn f, FrameEventKind k, Principal who, Principal other = kNobody, uint64_t arg = 0) {
    if (!enabled_) return;
    auto it = logs_.find(f.value());
    if (it == logs_.end()) {
      if (logs_.size() >= max_frames_) {
        ++dropped_frames_;
        return;
      }
      it = logs_.emplace(f.value(), Ring{}).first;
      // The frame's last mapping before its log started (remember_map): the chain begins there.
      Pending* p = pending_ ? &pending_[f.value() & (kPending - 1)] : nullptr;
      if (p && p->pfn1 == f.value() + 1) {
        p->pfn1 = 0;
        push(it->second, FrameEvent{0, 0, false, FrameEventKind::kMap, p->who, kNobody, p->gfn});
      }
    }
    push(it->second,
         FrameEvent{0, clock_ ? clock_() : 0, static_cast<bool>(clock_), k, who, other, arg});
  }
  // A stage-2 mapping of a frame that is not logged (it holds nobody's secret yet): kept in a
  // small direct-mapped table (no time stamp; allocated on first use), so that when a VM's first
  // write starts the frame's log, the chain shows where the frame was mapped (it is usually mapped
  // by the fault of that very write).
  void remember_map(Pfn f, Principal who, uint64_t gfn) {
    if (!enabled_) return;
    if (!pending_) pending_ = std::make_unique<Pending[]>(kPending);  // allocated on first use
    pending_[f.value() & (kPending - 1)] = Pending{f.value() + 1, who, gfn};
  }
  bool logged(Pfn f) const { return !logs_.empty() && logs_.count(f.value()) != 0; }
  // f's events, oldest first (at most kPerFrame); `lost` (if given) gets how many older ones
  // the ring dropped.
  std::vector<FrameEvent> events(Pfn f, uint64_t* lost = nullptr) const {
    std::vector<FrameEvent> out;
    auto it = logs_.find(f.value());
    if (lost) *lost = 0;
    if (it == logs_.end()) return out;
    const Ring& r = it->second;
    const uint64_t n = r.next < kPerFrame ? r.next : kPerFrame;
    if (lost) *lost = r.next - n;
    for (uint64_t i = r.next - n; i < r.next; ++i) out.push_back(r.ev[i % kPerFrame]);
    return out;
  }
  // The simulated time in ps (the platform sets it; without it events carry only `seq`).
  void set_clock(std::function<uint64_t()> c) { clock_ = std::move(c); }
  // Off: nothing is recorded (PhysMem turns it off in metadata-only mode;
  // docs/memory-integrity.md).
  void set_enabled(bool on) { enabled_ = on; }
  bool enabled() const { return enabled_; }
  size_t frames() const { return logs_.size(); }
  size_t max_frames() const { return max_frames_; }
  uint64_t total_events() const { return events_; }
  uint64_t dropped_frames() const { return dropped_frames_; }
  // Host memory the log holds (approximate: the rings and the pending table, not the hash
  // table's own nodes), for PhysMem::host_bytes.
  uint64_t host_bytes() const {
    uint64_t n = pending_ ? kPending * sizeof(Pending) : 0;
    for (const auto& [f, r] : logs_) n += sizeof(r) + 32 + r.ev.capacity() * sizeof(FrameEvent);
    return n;
  }

  // One event as text; `name` names a principal (VMs by name, when the reader knows them).
  static std::string describe(const FrameEvent& e,
                              const std::function<std::string(Principal)>& name);

 private:
  struct Ring {
    std::vector<FrameEvent> ev;  // grows to kPerFrame, then a ring
    uint64_t next = 0;           // events recorded so far
  };
  struct Pending {
    uint64_t pfn1 = 0;  // frame + 1 (0: empty)
    Principal who = kNobody;
    uint64_t gfn = 0;
  };
  static constexpr size_t kPending = 1024;
  void push(Ring& r, FrameEvent e) {
    e.seq = ++seq_;
    if (r.ev.size() < kPerFrame)
      r.ev.push_back(e);
    else
      r.ev[r.next % kPerFrame] = e;
    ++r.next;
    ++events_;
  }
  std::unique_ptr<Pending[]> pending_;
  size_t max_frames_;
  std::unordered_map<uint64_t, Ring> logs_;
  std::function<uint64_t()> clock_;
  bool enabled_ = true;
  uint64_t seq_ = 0, events_ = 0, dropped_frames_ = 0;
};

}  // namespace cvmsim
