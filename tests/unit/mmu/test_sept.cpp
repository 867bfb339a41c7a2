// The Secure-EPT entry codec (hw/mmu/sept.h, tdx-snp.md A2.1, A2.2) and the walker over a tree no
// Stage2Table manages (Walker::walk(WalkRoot, ...)).
#include <catch2/catch.hpp>

#include "hw/mmu/sept.h"
#include "hw/mmu/stage2_table.h"
#include "hw/mmu/walker.h"
#include "test_support.h"

using namespace cvmsim;

TEST_CASE("sept: state encoding, pub values and SEPTE_INIT_VALUE") {
  // enc = D | TDEX<<1 | TDBW<<2 | TDB<<3 | TDP<<4 | IPAT<<5 | PS<<6 (A2.1).
  CHECK(sept_state_mask(0x01) == SeptBits::kD);
  CHECK(sept_state_mask(0x02) == SeptBits::kTdex);
  CHECK(sept_state_mask(0x04) == SeptBits::kTdbw);
  CHECK(sept_state_mask(0x08) == SeptBits::kTdb);
  CHECK(sept_state_mask(0x10) == SeptBits::kTdp);
  CHECK(sept_state_mask(0x20) == SeptBits::kIpat);
  CHECK(sept_state_mask(0x40) == SeptBits::kPs);
  CHECK(kSepteInitValue == (SeptBits::kTdex | SeptBits::kTdbw | SeptBits::kTdb | SeptBits::kSve));
  CHECK(sept_state_of(kSepteInitValue) == SeptState::kFree);
  struct Row {
    SeptState s;
    uint8_t enc, pub;
  };
  const Row rows[] = {{SeptState::kFree, 0x0E, 0},        {SeptState::kRemoved, 0x0C, 5},
                      {SeptState::kNlMapped, 0x00, 0x84}, {SeptState::kNlBlocked, 0x08, 0x81},
                      {SeptState::kMapped, 0x60, 4},      {SeptState::kBlocked, 0x68, 1},
                      {SeptState::kPending, 0x70, 2},     {SeptState::kPendingBlocked, 0x78, 3}};
  for (const Row& r : rows) {
    INFO(name_of(r.s));
    CHECK(info_of(r.s).enc == r.enc);
    CHECK(info_of(r.s).pub == r.pub);
    CHECK(sept_state_enc(sept_state_mask(r.enc)) == r.enc);
    CHECK(sept_state_of(sept_state_mask(r.enc) | SeptBits::kTdel | SeptBits::kHpaMask) == r.s);
  }
  // PEND_MASK == MAPPED_MASK | TDP (A2.2 static assert): ACCEPT just clears TDP.
  CHECK(sept_state_mask(0x70) == (sept_state_mask(0x60) | SeptBits::kTdp));
  CHECK(sept_state_of(SeptBits::kTdp | SeptBits::kD) == SeptState::kInvalid);
}

TEST_CASE("sept: encode and decode leaves and tables to state, level and HPA") {
  const uint64_t mapped = SeptCodec::leaf(Pfn(0x1234), SeptState::kMapped);
  SeptEntry d = SeptCodec::decode(mapped, 0);
  CHECK(d.state == SeptState::kMapped);
  CHECK(d.leaf);
  CHECK(d.present());
  CHECK(d.pfn == Pfn(0x1234));
  CHECK(d.hpa() == Hpa(0x1234000));
  CHECK((mapped & SeptBits::kRwx) == SeptBits::kRwx);
  CHECK(EptCodec::perms(mapped) == kPermsRWX);
  const uint64_t pending = SeptCodec::leaf(Pfn(0x200), SeptState::kPending);
  CHECK((pending & SeptBits::kRwx) == 0);  // hardware faults on it
  // A 2 MiB PENDING leaf keeps ACCEPT_COUNTER in HPA bits 20:12; the frame is unaffected.
  const uint64_t counted = SeptCodec::with_accept_counter(pending, 77);
  d = SeptCodec::decode(counted, 1);
  CHECK(d.accept_counter == 77);
  CHECK(d.pfn == Pfn(0x200));
  CHECK(SeptCodec::with_state(counted, SeptState::kMapped) ==
        SeptCodec::with_accept_counter(SeptCodec::leaf(Pfn(0x200), SeptState::kMapped), 77));
  // Non-leaf: NL_MAPPED follows, NL_BLOCKED keeps the table address with RWX=0.
  const uint64_t nl = SeptCodec::non_leaf(Pfn(0x55), false);
  const uint64_t nlb = SeptCodec::non_leaf(Pfn(0x55), true);
  CHECK(SeptCodec::decode(nl, 2).state == SeptState::kNlMapped);
  CHECK_FALSE(SeptCodec::decode(nl, 2).leaf);
  CHECK(SeptCodec::decode(nlb, 2).state == SeptState::kNlBlocked);
  CHECK(SeptCodec::decode(nlb, 2).pfn == Pfn(0x55));
  CHECK_FALSE(SeptCodec::decode(nlb, 2).present());
  CHECK(SeptCodec::with_state(nlb, SeptState::kNlMapped) == nl);
  // Architectural views (A2.2): RCX masks the state bits, RDX holds level and pub state.
  CHECK((SeptCodec::arch_entry(pending) & SeptBits::kTdp) == 0);
  CHECK((SeptCodec::arch_entry(nl) & SeptBits::kHpaMask) == 0);
  CHECK(SeptCodec::arch_info(SeptState::kPending, 1) == 0x201);
  CHECK(SeptCodec::arch_info(SeptState::kNlBlocked, 3) == 0x8103);
  // Lock bits are visible in the decode and ignored by hardware.
  d = SeptCodec::decode(mapped | SeptBits::kTdel | SeptBits::kTdhp, 0);
  CHECK(d.locked);
  CHECK(d.host_priority);
  CHECK(d.state == SeptState::kMapped);
}

TEST_CASE("walker: walks a hand-built Secure EPT through WalkRoot") {
  PhysMem mem(test::kTestMemBytes, MemMode::kData);
  // Four table frames: root (level 3) -> 2 -> 1 -> 0, S-EPT style.
  const Pfn t3(0x1000), t2(0x1001), t1(0x1002), t0(0x1003);
  for (Pfn t : {t3, t2, t1, t0}) {
    mem.mark_table(t, true);
    for (unsigned i = 0; i < 512; ++i) mem.write_u64(pfn_to_hpa(t) + 8 * i, kSepteInitValue);
  }
  const Gpa g(0x40201000);  // 1 GiB + 2 MiB + 4 KiB
  mem.write_u64(Stage2Table::entry_hpa(t3, g, 3), SeptCodec::non_leaf(t2, false));
  mem.write_u64(Stage2Table::entry_hpa(t2, g, 2), SeptCodec::non_leaf(t1, false));
  mem.write_u64(Stage2Table::entry_hpa(t1, g, 1), SeptCodec::non_leaf(t0, false));
  mem.write_u64(Stage2Table::entry_hpa(t0, g, 0), SeptCodec::leaf(Pfn(0x777), SeptState::kMapped));
  Pwc pwc(PwcConfig{});
  Walker w(pwc);
  const WalkRoot root{&mem, t3, Stage2Format::kEpt4};
  WalkResult r = w.walk(root, g + 0x10, 1, kPermsRW);
  CHECK(r.fault == WalkFault::kNone);
  CHECK(r.pfn == Pfn(0x777));
  CHECK(r.mem_refs == 4);
  // A FREE neighbour at level 0 (RWX=0): not present.
  r = w.walk(root, g + kPageBytes, 1);
  CHECK(r.fault == WalkFault::kNotPresent);
  CHECK(r.level == 0);
  // A FREE entry above level 0 decodes as a table to EptCodec but is not followed.
  r = w.walk(root, Gpa(5ull << 30), 2);
  CHECK(r.fault == WalkFault::kNotPresent);
  CHECK(r.level == 2);
  // PENDING and BLOCKED leaves fault; NL_BLOCKED stops the walk above them.
  mem.write_u64(Stage2Table::entry_hpa(t0, g, 0), SeptCodec::leaf(Pfn(0x777), SeptState::kPending));
  CHECK(Walker(pwc).walk(root, g, 5).fault == WalkFault::kNotPresent);
  mem.write_u64(Stage2Table::entry_hpa(t0, g, 0), SeptCodec::leaf(Pfn(0x777), SeptState::kMapped));
  mem.write_u64(Stage2Table::entry_hpa(t1, g, 1), SeptCodec::non_leaf(t0, true));
  Pwc cold(PwcConfig{});
  Walker w2(cold);
  r = w2.walk(root, g, 6);
  CHECK(r.fault == WalkFault::kNotPresent);
  CHECK(r.level == 1);
  // The Stage2Table overload gives the same result as a WalkRoot over the table's root.
  test::BumpAllocator frames(test::kTableFramesBegin + 16, test::kTableFramesEnd);
  auto t = Stage2Table::create(mem, frames, Stage2Format::kEpt5);
  REQUIRE(t.ok());
  REQUIRE((*t)->map(Gpa(0x3000), Pfn(0x99), PageSize::k4K, kPermsR).ok());
  Pwc p3(PwcConfig{}), p4(PwcConfig{});
  const WalkResult a = Walker(p3).walk(**t, Gpa(0x3000), 1);
  const WalkResult b =
      Walker(p4).walk(WalkRoot{&mem, (*t)->root(), Stage2Format::kEpt5}, Gpa(0x3000), 1);
  CHECK(a.pfn == b.pfn);
  CHECK(a.mem_refs == b.mem_refs);
  CHECK(a.mem_refs == 5);
}
