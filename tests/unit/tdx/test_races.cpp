// Overlapping operations through tickets (begin_* ... complete): the module's try-locks give
// TDX_OPERAND_BUSY with the contended operand, BUSY_HOST_PRIORITY after a host failure, and
// PREVIOUS_TLB_EPOCH_BUSY while a vCPU runs in the old epoch (tdx-snp.md A4, A5, A6).
#include "tdx_test_util.h"

using namespace cvmsim;
using namespace cvmsim::tdx;
using namespace cvmsim::tdx::test;

namespace {

constexpr Gpa kGpa{0x600000};
constexpr uint64_t kBusyRcx = with_operand(status::kOperandBusy, operand::kRcx);

struct Fixture {
  Env e;
  Td td = e.build_td(20, 2);
  Hpa pending(Gpa g) {
    e.ensure_sept(td, g);
    const Hpa p = e.page();
    REQUIRE_OK(e.m.mem_page_aug(td.tdr, g, PageSize::k4K, p));
    return p;
  }
};

}  // namespace

TEST_CASE("tdx race: two vCPUs ACCEPT one entry, the second is BUSY on RCX") {
  Fixture f;
  f.pending(kGpa);
  f.e.enter(f.td, 0);
  f.e.enter(f.td, 1);
  TdxTicket a = f.e.m.begin_tdg_mem_page_accept(f.td.vcpus[0], kGpa, PageSize::k4K);
  REQUIRE(a.status() == status::kSuccess);
  CHECK(f.e.m.sept_lookup(f.td.tdr, kGpa).entry.locked);  // TDEL held in memory
  const TdxResult b = f.e.m.tdg_mem_page_accept(f.td.vcpus[1], kGpa, PageSize::k4K);
  CHECK_STATUS(b, kBusyRcx);
  CHECK(b.outcome == GuestOutcome::kReturn);
  CHECK(f.e.state(f.td, kGpa) == SeptState::kPending);
  REQUIRE_OK(f.e.m.complete(std::move(a)));
  CHECK(f.e.state(f.td, kGpa) == SeptState::kMapped);
  CHECK_FALSE(f.e.m.sept_lookup(f.td.tdr, kGpa).entry.locked);
  CHECK_STATUS(f.e.m.tdg_mem_page_accept(f.td.vcpus[1], kGpa, PageSize::k4K),
               status::kPageAlreadyAccepted);
  CHECK(f.e.m.stats().busy[static_cast<unsigned>(Leaf::kTdgMemPageAccept)] == 1);
}

TEST_CASE("tdx race: host BLOCK during a guest ACCEPT is BUSY and sets TDHP") {
  Fixture f;
  f.pending(kGpa);
  f.e.enter(f.td, 0);
  TdxTicket acc = f.e.m.begin_tdg_mem_page_accept(f.td.vcpus[0], kGpa, PageSize::k4K);
  const TdxResult blk = f.e.m.mem_range_block(f.td.tdr, kGpa, 0);
  CHECK_STATUS(blk, kBusyRcx);
  CHECK(((blk.rdx >> 8) & 0xFF) == 2);  // the entry was PENDING
  CHECK(f.e.m.sept_lookup(f.td.tdr, kGpa).entry.host_priority);
  CHECK(f.e.m.stats().host_priority_sets == 1);
  // The guest finishes: M writes back the entry copy it took under the lock, so this TDHP
  // does not survive a successful ACCEPT.
  REQUIRE_OK(f.e.m.complete(std::move(acc)));
  CHECK(f.e.state(f.td, kGpa) == SeptState::kMapped);
  CHECK_FALSE(f.e.m.sept_lookup(f.td.tdr, kGpa).entry.host_priority);
  REQUIRE_OK(f.e.m.mem_range_block(f.td.tdr, kGpa, 0));
  CHECK(f.e.state(f.td, kGpa) == SeptState::kBlocked);
}

TEST_CASE("tdx race: a guest ACCEPT after a host failure on the entry gets BUSY_HOST_PRIORITY") {
  Fixture f;
  const Hpa p = f.e.fault_in(f.td, kGpa, 0);  // MAPPED; vCPU 0 inside
  (void)p;
  f.e.enter(f.td, 1);
  // vCPU 0 re-ACCEPTs the page: it takes the entry lock, then fails ALREADY_ACCEPTED; until the
  // call completes the lock is held.
  TdxTicket spin = f.e.m.begin_tdg_mem_page_accept(f.td.vcpus[0], kGpa, PageSize::k4K);
  CHECK(spin.status() == status::kPageAlreadyAccepted);
  CHECK(spin.held().size() == 1);
  // The host's BLOCK loses the race: BUSY, and TDHP is set.
  CHECK_STATUS(f.e.m.mem_range_block(f.td.tdr, kGpa, 0), kBusyRcx);
  // The failing guest path releases TDEL only (M sept_lock_release): TDHP stays.
  CHECK_STATUS(f.e.m.complete(std::move(spin)), status::kPageAlreadyAccepted);
  CHECK(f.e.m.sept_lookup(f.td.tdr, kGpa).entry.host_priority);
  // Any guest lock attempt now yields to the host (A5).
  CHECK_STATUS(f.e.m.tdg_mem_page_accept(f.td.vcpus[1], kGpa, PageSize::k4K),
               with_operand(status::kOperandBusyHostPriority, operand::kRcx));
  CHECK_STATUS(f.e.m.tdg_mem_page_accept(f.td.vcpus[0], kGpa, PageSize::k4K),
               with_operand(status::kOperandBusyHostPriority, operand::kRcx));
  // The host retries and wins; its successful lock clears TDHP.
  REQUIRE_OK(f.e.m.mem_range_block(f.td.tdr, kGpa, 0));
  CHECK_FALSE(f.e.m.sept_lookup(f.td.tdr, kGpa).entry.host_priority);
  const TdxResult after = f.e.m.tdg_mem_page_accept(f.td.vcpus[1], kGpa, PageSize::k4K);
  CHECK(after.outcome == GuestOutcome::kTdExit);  // BLOCKED: EPT-violation exit
}

TEST_CASE("tdx race: TRACK while a vCPU is in the TD, PREVIOUS_TLB_EPOCH_BUSY until it exits") {
  Fixture f;
  f.e.fault_in(f.td, kGpa, 0);  // vCPU 0 entered in epoch 1
  REQUIRE_OK(f.e.m.mem_range_block(f.td.tdr, kGpa, 0));
  REQUIRE_OK(f.e.m.mem_track(f.td.tdr));  // epoch 2; epoch 1 still referenced by vCPU 0
  CHECK_STATUS(f.e.m.mem_track(f.td.tdr), status::kPreviousTlbEpochBusy);
  // A vCPU entering now joins epoch 2 and does not hold the TRACK up...
  f.e.enter(f.td, 1);
  CHECK(f.e.m.vcpu_info(f.td.vcpus[1])->vcpu_epoch == 2);
  CHECK_STATUS(f.e.m.mem_track(f.td.tdr), status::kPreviousTlbEpochBusy);
  // ... until vCPU 0 (epoch 1) exits.
  f.e.leave(f.td, 0);
  REQUIRE_OK(f.e.m.mem_track(f.td.tdr));
  CHECK(f.e.m.td_info(f.td.tdr)->td_epoch == 3);
  // Now vCPU 1 (epoch 2) blocks the next one.
  CHECK_STATUS(f.e.m.mem_track(f.td.tdr), status::kPreviousTlbEpochBusy);
  CHECK(f.e.m.stats().busy[static_cast<unsigned>(Leaf::kMemTrack)] == 3);
}

TEST_CASE("tdx race: TRACK in flight holds the epoch lock, VP.ENTER is BUSY on TD_EPOCH") {
  Fixture f;
  TdxTicket tr = f.e.m.begin_mem_track(f.td.tdr);
  REQUIRE(tr.status() == status::kSuccess);
  CHECK_STATUS(f.e.m.vp_enter(f.td.vcpus[0], 0),
               with_operand(status::kOperandBusy, operand::kTdEpoch));
  CHECK_FALSE(f.e.m.vcpu_info(f.td.vcpus[0])->in_td);
  // The failed entry left no epoch reference behind.
  CHECK(f.e.m.td_info(f.td.tdr)->refcount[1] == 0);
  REQUIRE_OK(f.e.m.complete(std::move(tr)));
  REQUIRE_OK(f.e.m.vp_enter(f.td.vcpus[0], 0));
  // And the other way round: an entry in flight holds it shared.
  TdxTicket en = f.e.m.begin_vp_enter(f.td.vcpus[1], 1);
  CHECK_STATUS(f.e.m.mem_track(f.td.tdr), with_operand(status::kOperandBusy, operand::kTdEpoch));
  REQUIRE_OK(f.e.m.complete(std::move(en)));
}

TEST_CASE("tdx race: S-EPT tree lock, BLOCK holds it exclusive, AUGs share it") {
  Fixture f;
  f.pending(kGpa);
  f.e.ensure_sept(f.td, kGpa + kPageBytes);
  TdxTicket blk = f.e.m.begin_mem_range_block(f.td.tdr, kGpa, 0);
  REQUIRE(blk.status() == status::kSuccess);
  const Hpa p = f.e.page();
  CHECK_STATUS(f.e.m.mem_page_aug(f.td.tdr, kGpa + kPageBytes, PageSize::k4K, p),
               with_operand(status::kOperandBusy, operand::kSeptTree));
  // Failure left no lock on the page.
  CHECK_FALSE(f.e.m.pamt().locked(hpa_to_pfn(p), PageSize::k4K));
  REQUIRE_OK(f.e.m.complete(std::move(blk)));
  TdxTicket a1 = f.e.m.begin_mem_page_aug(f.td.tdr, kGpa + kPageBytes, PageSize::k4K, p);
  REQUIRE(a1.status() == status::kSuccess);
  // Another AUG (tree shared) proceeds; the same page operand is BUSY on R8.
  TdxTicket a2 = f.e.m.begin_mem_page_aug(f.td.tdr, kGpa + 2 * kPageBytes, PageSize::k4K, p);
  CHECK(a2.status() == with_operand(status::kOperandBusy, operand::kR8));
  // (a2 still holds the entry lock of kGpa+2 pages until it completes; a third GPA is free.)
  const TdxResult a3 =
      f.e.m.mem_page_aug(f.td.tdr, kGpa + 3 * kPageBytes, PageSize::k4K, f.e.page());
  REQUIRE_OK(a3);
  REQUIRE_OK(f.e.m.complete(std::move(a1)));
  CHECK_STATUS(f.e.m.complete(std::move(a2)), with_operand(status::kOperandBusy, operand::kR8));
}

TEST_CASE("tdx race: PAGE.ADD holds the TDR exclusive, every other TD leaf is BUSY on the TDR") {
  Env e;
  Td td = e.build_td(20, 1, false);
  e.ensure_sept(td, kGpa);
  TdxTicket add = e.m.begin_mem_page_add(td.tdr, kGpa, e.page(), e.page());
  REQUIRE(add.status() == status::kSuccess);
  CHECK_STATUS(e.m.mem_sept_add(td.tdr, Gpa(1ull << 30), 2, e.page()),
               with_operand(status::kOperandBusy, operand::kRdx));
  CHECK_STATUS(e.m.mem_track(td.tdr), with_operand(status::kOperandBusy, operand::kRcx));
  REQUIRE_OK(e.m.complete(std::move(add)));
  REQUIRE_OK(e.m.mem_track(td.tdr));
}

TEST_CASE("tdx race: a 2 MiB AUG in flight makes 4 KiB operands in its range BUSY") {
  Fixture f;
  const Gpa big = kGpa + 4 * k2M;
  f.e.ensure_sept(f.td, big, 1);
  f.e.ensure_sept(f.td, kGpa);
  const Hpa range = f.e.page_2m();
  TdxTicket aug = f.e.m.begin_mem_page_aug(f.td.tdr, big, PageSize::k2M, range);
  REQUIRE(aug.status() == status::kSuccess);
  // The 4 KiB walk needs the 2 MiB PAMT entry shared: BUSY on the page operand.
  CHECK_STATUS(f.e.m.mem_page_aug(f.td.tdr, kGpa, PageSize::k4K, range + 9 * kPageBytes),
               with_operand(status::kOperandBusy, operand::kR8));
  CHECK_STATUS(f.e.m.phymem_page_rdmd(range + 9 * kPageBytes), kBusyRcx);
  REQUIRE_OK(f.e.m.complete(std::move(aug)));
  const TdxResult md = f.e.m.phymem_page_rdmd(range + 9 * kPageBytes);
  REQUIRE_OK(md);
  CHECK(md.rcx == static_cast<uint64_t>(PageType::kReg));
  CHECK(md.r8 == 1);
  CHECK(md.rdx == f.td.tdr.value());
}

TEST_CASE("tdx race: an abandoned ticket releases its locks and changes nothing") {
  Fixture f;
  f.pending(kGpa);
  {
    TdxTicket blk = f.e.m.begin_mem_range_block(f.td.tdr, kGpa, 0);
    REQUIRE(blk.status() == status::kSuccess);
    REQUIRE(blk.pending());
    CHECK(f.e.m.sept_lookup(f.td.tdr, kGpa).entry.locked);
  }
  CHECK_FALSE(f.e.m.sept_lookup(f.td.tdr, kGpa).entry.locked);
  CHECK(f.e.state(f.td, kGpa) == SeptState::kPending);
  REQUIRE_OK(f.e.m.mem_range_block(f.td.tdr, kGpa, 0));
  // Abandoned calls are not counted.
  CHECK(f.e.m.stats().calls[static_cast<unsigned>(Leaf::kMemRangeBlock)] == 1);
}

TEST_CASE("tdx race: KOT, CACHE.WB mutex and a running vCPU's TDVPR") {
  Fixture f;
  f.e.enter(f.td, 0);
  // A running vCPU holds its TDVPR: a second entry or a flush is BUSY on RCX.
  CHECK_STATUS(f.e.m.vp_enter(f.td.vcpus[0], 0), kBusyRcx);
  CHECK_STATUS(f.e.m.vp_flush(f.td.vcpus[0], 0), kBusyRcx);
  f.e.leave(f.td, 0);
  // Still associated with LP 0: entering on LP 1 needs a VP.FLUSH on LP 0 first.
  CHECK_STATUS(f.e.m.vp_enter(f.td.vcpus[0], 1), status::kVcpuAssociated);
  REQUIRE_OK(f.e.m.vp_flush(f.td.vcpus[0], 0));
  TdxTicket done = f.e.m.begin_mng_vpflushdone(f.td.tdr);
  REQUIRE(done.status() == status::kSuccess);
  CHECK_STATUS(f.e.m.mng_create(f.e.page(), 30, kTdOwner2),
               with_operand(status::kOperandBusy, operand::kKot));
  REQUIRE_OK(f.e.m.complete(std::move(done)));
  TdxTicket wb = f.e.m.begin_phymem_cache_wb(0, CacheWbCmd::kStart);
  CHECK_STATUS(f.e.m.phymem_cache_wb(0), with_operand(status::kOperandBusy, operand::kWbcache));
  REQUIRE_OK(f.e.m.complete(std::move(wb)));
  REQUIRE_OK(f.e.m.mng_key_freeid(f.td.tdr));
}
