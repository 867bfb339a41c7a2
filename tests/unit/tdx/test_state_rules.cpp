// One test per rule of tdx-snp.md A2.3: each leaf on a state outside its set fails with
// TDX_EPT_ENTRY_STATE_INCORRECT | RCX (or the leaf-specific status A2.3/A4 name), and RDX carries
// the level and the "pub" state (A2.2).
#include "tdx_test_util.h"

using namespace cvmsim;
using namespace cvmsim::tdx;
using namespace cvmsim::tdx::test;

namespace {

constexpr Gpa kGpa{0x400000};  // 2 MiB aligned
constexpr uint64_t kIncorrect = with_operand(status::kEptEntryStateIncorrect, operand::kRcx);

uint64_t pub_of(const TdxResult& r) {
  return (r.rdx >> 8) & 0xFF;
}

// A runnable TD with no vCPU inside, so BLOCK+TRACK completes tracking at once.
struct Fixture {
  Env e;
  Td td = e.build_td(20, 1);

  void block_and_track(Gpa g, unsigned level) {
    REQUIRE_OK(e.m.mem_range_block(td.tdr, g, level));
    REQUIRE_OK(e.m.mem_track(td.tdr));
  }
  Hpa mapped(Gpa g) {
    const Hpa p = e.fault_in(td, g);
    e.leave(td);
    return p;
  }
  Hpa pending(Gpa g) {
    e.ensure_sept(td, g);
    const Hpa p = e.page();
    REQUIRE_OK(e.m.mem_page_aug(td.tdr, g, PageSize::k4K, p));
    return p;
  }
};

}  // namespace

TEST_CASE("tdx state rule: SEPT.ADD needs FREE, or NL_MAPPED with allow_existing") {
  Fixture f;
  f.pending(kGpa);  // levels 3..1 now NL_MAPPED
  const TdxResult r = f.e.m.mem_sept_add(f.td.tdr, kGpa, 1, f.e.page());
  CHECK_STATUS(r, kIncorrect);
  CHECK((r.rdx & 7) == 1);
  CHECK(pub_of(r) == 0x84);  // NL_MAPPED
  const Hpa unused = f.e.page();
  const TdxResult ex = f.e.m.mem_sept_add(f.td.tdr, kGpa, 1, unused, true);
  REQUIRE_OK(ex);
  CHECK(ex.r8 == (unused.value() | (1ull << 63)));
  CHECK(f.e.m.pamt_leaf(unused).entry.type() == PageType::kNda);
  // A leaf at the level: a 2 MiB PENDING page.
  const Gpa big = kGpa + 4 * k2M;
  f.e.ensure_sept(f.td, big, 1);
  REQUIRE_OK(f.e.m.mem_page_aug(f.td.tdr, big, PageSize::k2M, f.e.page_2m()));
  const TdxResult leaf = f.e.m.mem_sept_add(f.td.tdr, big, 1, f.e.page(), true);
  CHECK_STATUS(leaf, kIncorrect);
  CHECK(pub_of(leaf) == 2);  // PENDING
}

TEST_CASE("tdx state rule: PAGE.ADD needs FREE") {
  Env e;
  Td td = e.build_td(20, 1, false);
  e.ensure_sept(td, kGpa);
  REQUIRE_OK(e.m.mem_page_add(td.tdr, kGpa, e.page(), e.page()));
  const TdxResult r = e.m.mem_page_add(td.tdr, kGpa, e.page(), e.page());
  CHECK_STATUS(r, kIncorrect);
  CHECK(pub_of(r) == 4);  // MAPPED
  REQUIRE_OK(e.m.mem_page_aug(td.tdr, kGpa + kPageBytes, PageSize::k4K, e.page()));
  CHECK_STATUS(e.m.mem_page_add(td.tdr, kGpa + kPageBytes, e.page(), e.page()), kIncorrect);
}

TEST_CASE("tdx state rule: PAGE.AUG needs FREE or REMOVED") {
  Fixture f;
  f.mapped(kGpa);
  const Hpa fresh = f.e.page();
  CHECK_STATUS(f.e.m.mem_page_aug(f.td.tdr, kGpa, PageSize::k4K, fresh), kIncorrect);
  // The page operand is checked after the state: it was not locked or assigned.
  CHECK(f.e.m.pamt_leaf(fresh).entry.type() == PageType::kNda);
  f.pending(kGpa + kPageBytes);
  CHECK_STATUS(f.e.m.mem_page_aug(f.td.tdr, kGpa + kPageBytes, PageSize::k4K, fresh), kIncorrect);
  f.block_and_track(kGpa, 0);
  CHECK_STATUS(f.e.m.mem_page_aug(f.td.tdr, kGpa, PageSize::k4K, fresh), kIncorrect);
  // A 4 KiB AUG over a 2 MiB leaf cannot reach level 0: EPT_WALK_FAILED.
  const Gpa big = kGpa + 4 * k2M;
  f.e.ensure_sept(f.td, big, 1);
  REQUIRE_OK(f.e.m.mem_page_aug(f.td.tdr, big, PageSize::k2M, f.e.page_2m()));
  CHECK_STATUS(f.e.m.mem_page_aug(f.td.tdr, big + kPageBytes, PageSize::k4K, fresh),
               with_operand(status::kEptWalkFailed, operand::kRcx));
}

TEST_CASE("tdx state rule: PAGE.AUG 2 MiB needs the whole 2 MiB PAMT range free") {
  Fixture f;
  const Gpa big = kGpa + 8 * k2M;
  f.e.ensure_sept(f.td, big, 1);
  const Hpa range = f.e.page_2m();
  // One 4 KiB page of the range already belongs to the TD (as an S-EPT page).
  REQUIRE_OK(f.e.m.mem_sept_add(f.td.tdr, Gpa(3ull << 30), 2, range + 5 * kPageBytes));
  CHECK_STATUS(f.e.m.mem_page_aug(f.td.tdr, big, PageSize::k2M, range),
               with_operand(status::kPageMetadataIncorrect, operand::kR8));
  // Misaligned 2 MiB page operand.
  CHECK_STATUS(f.e.m.mem_page_aug(f.td.tdr, big, PageSize::k2M, f.e.page()),
               with_operand(status::kOperandInvalid, operand::kR8));
  const Hpa ok = f.e.page_2m();
  const uint64_t chld = f.e.m.td_info(f.td.tdr)->chldcnt;
  REQUIRE_OK(f.e.m.mem_page_aug(f.td.tdr, big, PageSize::k2M, ok));
  CHECK(f.e.m.pamt_leaf(ok + 17 * kPageBytes).level == PageSize::k2M);
  CHECK(f.e.m.td_info(f.td.tdr)->chldcnt == chld + 512);  // chldcnt += 1 << (9 * level)
  // And back: a 2 MiB REMOVE returns all 512 frames to PT_NDA.
  f.block_and_track(big, 1);
  const TdxResult rm = f.e.m.mem_page_remove(f.td.tdr, big, PageSize::k2M);
  REQUIRE_OK(rm);
  CHECK(rm.rcx == ok.value());
  CHECK(f.e.m.td_info(f.td.tdr)->chldcnt == chld);
  CHECK(f.e.m.pamt_leaf(ok + 17 * kPageBytes).entry.type() == PageType::kNda);
  CHECK(f.e.m.pamt().range_2m_free(hpa_to_pfn(ok)));
}

TEST_CASE("tdx state rule: MR.EXTEND needs a present MAPPED leaf") {
  Env e;
  Td td = e.build_td(20, 1, false);
  e.ensure_sept(td, kGpa);
  REQUIRE_OK(e.m.mem_page_aug(td.tdr, kGpa, PageSize::k4K, e.page()));
  // PENDING has RWX=000: the walk to a present leaf fails -> EPT_ENTRY_NOT_PRESENT (A2.3).
  CHECK_STATUS(e.m.mr_extend(td.tdr, kGpa),
               with_operand(status::kEptEntryNotPresent, operand::kRcx));
  CHECK_STATUS(e.m.mr_extend(td.tdr, kGpa + kPageBytes),
               with_operand(status::kEptEntryNotPresent, operand::kRcx));
}

TEST_CASE("tdx state rule: RANGE.BLOCK on FREE, on BLOCKED, on PENDING and on NL_MAPPED") {
  Fixture f;
  f.mapped(kGpa);
  CHECK_STATUS(f.e.m.mem_range_block(f.td.tdr, kGpa + kPageBytes, 0), kIncorrect);
  REQUIRE_OK(f.e.m.mem_range_block(f.td.tdr, kGpa, 0));
  const TdxResult again = f.e.m.mem_range_block(f.td.tdr, kGpa, 0);
  CHECK_STATUS(again, with_operand(status::kGpaRangeAlreadyBlocked, operand::kRcx));
  CHECK_FALSE(again.is_error());  // a warning-class status (A2.3)
  CHECK(pub_of(again) == 1);      // BLOCKED
  f.pending(kGpa + 2 * kPageBytes);
  REQUIRE_OK(f.e.m.mem_range_block(f.td.tdr, kGpa + 2 * kPageBytes, 0));
  CHECK(f.e.state(f.td, kGpa + 2 * kPageBytes) == SeptState::kPendingBlocked);
  // A non-leaf entry: NL_MAPPED -> NL_BLOCKED, BEPOCH on the child S-EPT page.
  const Hpa pt = f.e.m.sept_entry(f.td.tdr, kGpa, 1).entry.hpa();
  REQUIRE_OK(f.e.m.mem_range_block(f.td.tdr, kGpa, 1));
  CHECK(f.e.state(f.td, kGpa, 1) == SeptState::kNlBlocked);
  CHECK(f.e.m.pamt_leaf(pt).entry.bepoch == f.e.m.td_info(f.td.tdr)->td_epoch);
  // Below an NL_BLOCKED entry the module walk stops: EPT_WALK_FAILED at level 1.
  const TdxResult below = f.e.m.mem_range_unblock(f.td.tdr, kGpa, 0);
  CHECK_STATUS(below, with_operand(status::kEptWalkFailed, operand::kRcx));
  CHECK((below.rdx & 7) == 1);
  CHECK(pub_of(below) == 0x81);  // NL_BLOCKED
}

TEST_CASE("tdx state rule: RANGE.UNBLOCK needs NL_BLOCKED, BLOCKED or PENDING_BLOCKED") {
  Fixture f;
  f.mapped(kGpa);
  CHECK_STATUS(f.e.m.mem_range_unblock(f.td.tdr, kGpa, 0), kIncorrect);
  f.pending(kGpa + kPageBytes);
  CHECK_STATUS(f.e.m.mem_range_unblock(f.td.tdr, kGpa + kPageBytes, 0), kIncorrect);
  f.block_and_track(kGpa + kPageBytes, 0);
  REQUIRE_OK(f.e.m.mem_range_unblock(f.td.tdr, kGpa + kPageBytes, 0));
  CHECK(f.e.state(f.td, kGpa + kPageBytes) == SeptState::kPending);
}

TEST_CASE("tdx state rule: PAGE.REMOVE needs a leaf, and BLOCKED once the TD runs") {
  Fixture f;
  f.mapped(kGpa);
  CHECK_STATUS(f.e.m.mem_page_remove(f.td.tdr, kGpa + kPageBytes, PageSize::k4K), kIncorrect);
  // Level 1 is a non-leaf NL_MAPPED entry here.
  const TdxResult nl = f.e.m.mem_page_remove(f.td.tdr, kGpa, PageSize::k2M);
  CHECK_STATUS(nl, kIncorrect);
  CHECK(pub_of(nl) == 0x84);
  CHECK_STATUS(f.e.m.mem_page_remove(f.td.tdr, kGpa, PageSize::k4K),
               with_operand(status::kGpaRangeNotBlocked, operand::kRcx));
  // PENDING_BLOCKED is removable too.
  const Hpa p = f.pending(kGpa + 3 * kPageBytes);
  f.block_and_track(kGpa + 3 * kPageBytes, 0);
  const TdxResult ok = f.e.m.mem_page_remove(f.td.tdr, kGpa + 3 * kPageBytes, PageSize::k4K);
  REQUIRE_OK(ok);
  CHECK(ok.rcx == p.value());
}

TEST_CASE("tdx state rule: SEPT.REMOVE needs NL_MAPPED or NL_BLOCKED and 512 FREE children") {
  Fixture f;
  f.mapped(kGpa);
  const Gpa big = kGpa + 4 * k2M;
  f.e.ensure_sept(f.td, big, 1);
  REQUIRE_OK(f.e.m.mem_page_aug(f.td.tdr, big, PageSize::k2M, f.e.page_2m()));
  CHECK_STATUS(f.e.m.mem_sept_remove(f.td.tdr, big, 1), kIncorrect);  // a leaf
  CHECK_STATUS(f.e.m.mem_sept_remove(f.td.tdr, kGpa, 1),
               with_operand(status::kGpaRangeNotBlocked, operand::kRcx));
  f.block_and_track(kGpa, 1);
  CHECK_STATUS(f.e.m.mem_sept_remove(f.td.tdr, kGpa, 1),
               with_operand(status::kEptPageNotFree, operand::kRcx));
  // Empty the table (unblock the parent, remove the leaf the KVM way), then remove it.
  REQUIRE_OK(f.e.m.mem_range_unblock(f.td.tdr, kGpa, 1));
  f.block_and_track(kGpa, 0);
  REQUIRE_OK(f.e.m.mem_page_remove(f.td.tdr, kGpa, PageSize::k4K));
  f.block_and_track(kGpa, 1);
  const Hpa pt = f.e.m.sept_entry(f.td.tdr, kGpa, 1).entry.hpa();
  const uint64_t chld = f.e.m.td_info(f.td.tdr)->chldcnt;
  const TdxResult ok = f.e.m.mem_sept_remove(f.td.tdr, kGpa, 1);
  REQUIRE_OK(ok);
  CHECK(ok.rcx == pt.value());
  CHECK(f.e.state(f.td, kGpa, 1) == SeptState::kFree);
  CHECK(f.e.m.pamt_leaf(pt).entry.type() == PageType::kNda);
  CHECK(f.e.m.td_info(f.td.tdr)->chldcnt == chld - 1);
}

TEST_CASE("tdx state rule: PAGE.DEMOTE needs a 2 MiB leaf, BLOCKED and tracked once runnable") {
  Fixture f;
  f.mapped(kGpa);
  CHECK_STATUS(f.e.m.mem_page_demote(f.td.tdr, kGpa, PageSize::k2M, f.e.page()), kIncorrect);
  const Gpa big = kGpa + 4 * k2M;
  f.e.ensure_sept(f.td, big, 1);
  const Hpa range = f.e.page_2m();
  REQUIRE_OK(f.e.m.mem_page_aug(f.td.tdr, big, PageSize::k2M, range));
  CHECK_STATUS(f.e.m.mem_page_demote(f.td.tdr, big, PageSize::k2M, f.e.page()),
               with_operand(status::kGpaRangeNotBlocked, operand::kRcx));
  REQUIRE_OK(f.e.m.mem_range_block(f.td.tdr, big, 1));
  CHECK_STATUS(f.e.m.mem_page_demote(f.td.tdr, big, PageSize::k2M, f.e.page()),
               with_operand(status::kTlbTrackingNotDone, operand::kRcx));
  REQUIRE_OK(f.e.m.mem_track(f.td.tdr));
  const Hpa table = f.e.page();
  REQUIRE_OK(f.e.m.mem_page_demote(f.td.tdr, big, PageSize::k2M, table));
  CHECK(f.e.state(f.td, big, 1) == SeptState::kNlMapped);
  CHECK(f.e.state(f.td, big + 7 * kPageBytes) == SeptState::kPending);
  CHECK(f.e.m.sept_lookup(f.td.tdr, big + 7 * kPageBytes).entry.pfn == hpa_to_pfn(range) + 7);
  CHECK(f.e.m.pamt_leaf(range + 7 * kPageBytes).level == PageSize::k4K);
  CHECK(f.e.m.pamt_leaf(range + 7 * kPageBytes).entry.type() == PageType::kReg);
  CHECK(f.e.m.pamt_leaf(table).entry.type() == PageType::kEpt);
  // The guest can now accept 4 KiB pieces.
  f.e.enter(f.td);
  REQUIRE_OK(f.e.m.tdg_mem_page_accept(f.td.vcpus[0], big + 7 * kPageBytes, PageSize::k4K));
}

TEST_CASE("tdx state rule: PAGE.PROMOTE needs NL_BLOCKED over 512 uniform leaves") {
  Fixture f;
  const Gpa big = kGpa + 4 * k2M;
  f.e.ensure_sept(f.td, big);
  const Hpa range = f.e.page_2m();
  for (unsigned i = 0; i < 512; ++i) {
    REQUIRE_OK(
        f.e.m.mem_page_aug(f.td.tdr, big + i * kPageBytes, PageSize::k4K, range + i * kPageBytes));
  }
  CHECK_STATUS(f.e.m.mem_page_promote(f.td.tdr, big + kPageBytes * 0, PageSize::k2M),
               with_operand(status::kGpaRangeNotBlocked, operand::kRcx));
  // Promote on a leaf entry (level 0 is not a promote level; use a 2 MiB leaf elsewhere).
  const Gpa leaf2m = kGpa + 8 * k2M;
  f.e.ensure_sept(f.td, leaf2m, 1);
  REQUIRE_OK(f.e.m.mem_page_aug(f.td.tdr, leaf2m, PageSize::k2M, f.e.page_2m()));
  CHECK_STATUS(f.e.m.mem_page_promote(f.td.tdr, leaf2m, PageSize::k2M), kIncorrect);
  // Mixed children: one accepted, 511 pending.
  f.e.enter(f.td);
  REQUIRE_OK(f.e.m.tdg_mem_page_accept(f.td.vcpus[0], big, PageSize::k4K));
  f.e.leave(f.td);
  f.block_and_track(big, 1);
  CHECK_STATUS(f.e.m.mem_page_promote(f.td.tdr, big, PageSize::k2M),
               with_operand(status::kEptInvalidPromoteConditions, operand::kRcx));
  // Make them uniform: re-create the accepted one as PENDING.
  REQUIRE_OK(f.e.m.mem_range_unblock(f.td.tdr, big, 1));
  f.block_and_track(big, 0);
  REQUIRE_OK(f.e.m.mem_page_remove(f.td.tdr, big, PageSize::k4K));
  REQUIRE_OK(f.e.m.mem_page_aug(f.td.tdr, big, PageSize::k4K, range));
  f.block_and_track(big, 1);
  const Hpa table = f.e.m.sept_entry(f.td.tdr, big, 1).entry.hpa();
  const TdxResult ok = f.e.m.mem_page_promote(f.td.tdr, big, PageSize::k2M);
  REQUIRE_OK(ok);
  CHECK(ok.rcx == table.value());
  CHECK(f.e.state(f.td, big, 1) == SeptState::kPending);
  CHECK(f.e.m.pamt_leaf(range + 100 * kPageBytes).level == PageSize::k2M);
  CHECK(f.e.m.pamt_leaf(table).entry.type() == PageType::kNda);
}

TEST_CASE(
    "tdx state rule: ACCEPT on PENDING only, FREE and BLOCKED exit, MAPPED is already accepted") {
  Fixture f;
  f.mapped(kGpa);
  f.e.enter(f.td);
  const TdxResult again = f.e.m.tdg_mem_page_accept(f.td.vcpus[0], kGpa, PageSize::k4K);
  CHECK_STATUS(again, with_operand(status::kPageAlreadyAccepted, 0));
  CHECK(again.outcome == GuestOutcome::kReturn);
  // FREE leaf entry: the lazy-AUG path exits with EEQ ACCEPT (A8).
  const TdxResult lazy = f.e.m.tdg_mem_page_accept(f.td.vcpus[0], kGpa + kPageBytes, PageSize::k4K);
  REQUIRE(lazy.outcome == GuestOutcome::kTdExit);
  CHECK(lazy.exit.eeq == EeqType::kAccept);
  CHECK(lazy.exit.sept_state == SeptState::kFree);
  CHECK(lazy.exit.level == 0);
  // BLOCKED accepted page: exit, not #VE.
  f.block_and_track(kGpa, 0);
  f.e.enter(f.td);
  const TdxResult blocked = f.e.m.tdg_mem_page_accept(f.td.vcpus[0], kGpa, PageSize::k4K);
  REQUIRE(blocked.outcome == GuestOutcome::kTdExit);
  CHECK(blocked.exit.sept_state == SeptState::kBlocked);
  // The entry lock was released on the exit path.
  CHECK_FALSE(f.e.m.sept_lookup(f.td.tdr, kGpa).entry.locked);
}

TEST_CASE("tdx state rule: SEPT.RD reads any state") {
  Fixture f;
  f.pending(kGpa);
  const TdxResult r = f.e.m.mem_sept_rd(f.td.tdr, kGpa, 0);
  REQUIRE_OK(r);
  CHECK(pub_of(r) == 2);
  CHECK((r.rcx & SeptBits::kRwx) == 0);
  CHECK((r.rcx & SeptBits::kTdp) == 0);  // architectural view hides the state bits
  const TdxResult nl = f.e.m.mem_sept_rd(f.td.tdr, Gpa(0), 2);
  CHECK_STATUS(f.e.m.mem_sept_rd(f.td.tdr, kGpa, 2),
               with_operand(status::kOperandInvalid, operand::kRcx));  // not 1 GiB aligned
  REQUIRE_OK(nl);
  CHECK(pub_of(nl) == 0x84);
  const TdxResult fr = f.e.m.mem_sept_rd(f.td.tdr, Gpa(1ull << 39), 2);
  CHECK_STATUS(fr, with_operand(status::kEptWalkFailed, operand::kRcx));
  CHECK(pub_of(fr) == 0);  // FREE at level 3
  // GPAs with the SHARED bit are refused by every S-EPT leaf (A1).
  CHECK_STATUS(f.e.m.mem_sept_rd(f.td.tdr, Gpa(1ull << 47), 0),
               with_operand(status::kOperandInvalid, operand::kRcx));
  CHECK_STATUS(
      f.e.m.mem_page_aug(f.td.tdr, Gpa((1ull << 47) | kGpa.value()), PageSize::k4K, f.e.page()),
      with_operand(status::kOperandInvalid, operand::kRcx));
}
