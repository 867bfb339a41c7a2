// The per-frame provenance log (hw/memory/frame_history.h) and PhysMem's feeding of it.
#include <catch2/catch.hpp>
#include <vector>

#include "hw/memory/frame_history.h"
#include "hw/memory/phys_mem.h"

using namespace cvmsim;

namespace {
std::string name(Principal p) {
  return "P" + std::to_string(p.id);
}
}  // namespace

TEST_CASE("frame history: bounded per frame, oldest dropped, ordered") {
  FrameHistory h;
  const Pfn f(7);
  for (uint64_t i = 0; i < FrameHistory::kPerFrame + 5; ++i)
    h.record(f, FrameEventKind::kMap, vm_principal(0), kNobody, i);
  uint64_t lost = 0;
  const auto ev = h.events(f, &lost);
  REQUIRE(ev.size() == FrameHistory::kPerFrame);
  CHECK(lost == 5);
  CHECK(ev.front().arg == 5);  // the 5 oldest are gone
  CHECK(ev.back().arg == FrameHistory::kPerFrame + 4);
  for (size_t i = 1; i < ev.size(); ++i) CHECK(ev[i - 1].seq < ev[i].seq);
  CHECK(h.events(Pfn(8)).empty());
  CHECK_FALSE(h.logged(Pfn(8)));
}

TEST_CASE("frame history: global cap on logged frames") {
  FrameHistory h(3);
  for (uint64_t i = 0; i < 5; ++i) h.record(Pfn(i), FrameEventKind::kWrite, vm_principal(1));
  CHECK(h.frames() == 3);
  CHECK(h.dropped_frames() == 2);
  CHECK(h.logged(Pfn(2)));
  CHECK_FALSE(h.logged(Pfn(3)));
  h.record(Pfn(0), FrameEventKind::kScrub, kNobody);  // logged frames keep logging
  CHECK(h.events(Pfn(0)).size() == 2);
}

TEST_CASE("frame history: stamp and description") {
  FrameHistory h;
  uint64_t now = 0;
  h.set_clock([&] { return now += 1500; });
  h.record(Pfn(1), FrameEventKind::kRebind, vm_principal(1), vm_principal(0));
  const auto ev = h.events(Pfn(1));
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].timed);
  CHECK(ev[0].time_ps == 1500);
  const std::string d = FrameHistory::describe(ev[0], name);
  CHECK(d.find("t=1.500") != std::string::npos);
  CHECK(d.find("rebound from P16 to P17") != std::string::npos);
}

TEST_CASE("phys mem: label changes to a VM are logged, rewrites and non-VM frames are not") {
  PhysMem mem(2 << 20, MemMode::kData);
  const std::vector<uint8_t> b(64, 0xab);
  const Principal vm0 = vm_principal(0), vm1 = vm_principal(1);
  // The host writing a frame nobody logged: nothing recorded.
  mem.write_keyed(pfn_to_hpa(Pfn(3)), b, {0, kHostUser, false});
  CHECK_FALSE(mem.history().logged(Pfn(3)));
  // A VM's write starts the log; its own rewrites add nothing.
  mem.write_keyed(pfn_to_hpa(Pfn(4)), b, {0, vm0, false});
  mem.write_keyed(pfn_to_hpa(Pfn(4)) + 64, b, {0, vm0, false});
  auto ev = mem.history().events(Pfn(4));
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].kind == FrameEventKind::kWrite);
  CHECK(ev[0].who == vm0);
  // note() logs events of frames holding a VM's data, not of others.
  mem.note(Pfn(4), FrameEventKind::kMap, vm1, kNobody, 0x40001);
  mem.note(Pfn(5), FrameEventKind::kMap, vm1, kNobody, 0x40002);
  CHECK_FALSE(mem.history().logged(Pfn(5)));
  // Once logged, a host write (label to host) is logged too; a scrub is an event, not a reset.
  mem.write_keyed(pfn_to_hpa(Pfn(4)), b, {0, kHostKernel, false});
  mem.note(Pfn(4), FrameEventKind::kScrub, kNobody);
  mem.set_label(Pfn(4), kNobody);
  ev = mem.history().events(Pfn(4));
  REQUIRE(ev.size() == 4);
  CHECK(ev[1].kind == FrameEventKind::kMap);
  CHECK(ev[1].arg == 0x40001);
  CHECK(ev[2].kind == FrameEventKind::kWrite);
  CHECK(ev[2].who == kHostKernel);
  CHECK(ev[3].kind == FrameEventKind::kScrub);
  // set_label to a VM is logged.
  mem.set_label(Pfn(6), vm1);
  ev = mem.history().events(Pfn(6));
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].kind == FrameEventKind::kLabelSet);
}

TEST_CASE("frame history: a mapping before the first write starts the chain") {
  PhysMem mem(8 << 20, MemMode::kData);  // frames 9 and 9 + 1024
  const std::vector<uint8_t> b(64, 0xcd);
  mem.note(Pfn(9), FrameEventKind::kMap, vm_principal(2), kNobody, 0x123);  // not logged yet
  CHECK_FALSE(mem.history().logged(Pfn(9)));
  mem.note(Pfn(9 + 1024), FrameEventKind::kMap, vm_principal(3), kNobody,
           0x456);  // same slot: replaces
  mem.note(Pfn(9), FrameEventKind::kMap, vm_principal(2), kNobody, 0x124);
  mem.write_keyed(pfn_to_hpa(Pfn(9)), b, {0, vm_principal(2), false});
  const auto ev = mem.history().events(Pfn(9));
  REQUIRE(ev.size() == 2);
  CHECK(ev[0].kind == FrameEventKind::kMap);
  CHECK(ev[0].arg == 0x124);
  CHECK(ev[1].kind == FrameEventKind::kWrite);
  CHECK(ev[0].seq < ev[1].seq);
  // The other frame's remembered mapping was overwritten: its first write starts a bare chain.
  mem.write_keyed(pfn_to_hpa(Pfn(9 + 1024)), b, {0, vm_principal(3), false});
  CHECK(mem.history().events(Pfn(9 + 1024)).size() == 1);
}

TEST_CASE("frame history: off in metadata-only mode") {
  PhysMem mem(2 << 20, MemMode::kMetadataOnly);
  const std::vector<uint8_t> b(64, 0xcd);
  mem.write_keyed(pfn_to_hpa(Pfn(1)), b, {0, vm_principal(0), false});
  CHECK_FALSE(mem.history().enabled());
  CHECK_FALSE(mem.history().logged(Pfn(1)));
  CHECK(mem.meta(Pfn(1)).label == vm_principal(0));
}
