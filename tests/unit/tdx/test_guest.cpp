// Guest side: TDG.MEM.PAGE.ACCEPT (4 KiB, 2 MiB resumable), the EPT-violation dispatch, MapGPA,
// FATAL TDs (tdx-snp.md A8, A9).
#include "hw/mmu/walker.h"
#include "tdx_test_util.h"

using namespace cvmsim;
using namespace cvmsim::tdx;
using namespace cvmsim::tdx::test;

namespace {

constexpr Gpa kGpa{0x800000};  // 2 MiB aligned

struct Fixture {
  explicit Fixture(TdParams p = {}) { td = e.build_td(20, 2, true, p); }
  Env e;
  Td td;
  Hpa aug_2m(Gpa g) {
    e.ensure_sept(td, g, 1);
    const Hpa r = e.page_2m();
    for (unsigned i = 0; i < 512; ++i) e.mem.fill(r + i * kPageBytes, kPageBytes, 0x5A);
    REQUIRE_OK(e.m.mem_page_aug(td.tdr, g, PageSize::k2M, r));
    return r;
  }
};

}  // namespace

TEST_CASE("tdx accept: 2 MiB with interrupts resumes from ACCEPT_COUNTER") {
  Fixture f;
  const Hpa range = f.aug_2m(kGpa);
  f.e.enter(f.td, 0);
  f.e.enter(f.td, 1);
  // An interrupt is pending: one 4 KiB chunk per TDCALL, progress kept in the S-EPT entry.
  TdxResult r = f.e.m.tdg_mem_page_accept(f.td.vcpus[0], kGpa, PageSize::k2M, true);
  REQUIRE_OK(r);
  CHECK(r.outcome == GuestOutcome::kInterrupted);
  SeptEntry e = f.e.m.sept_entry(f.td.tdr, kGpa, 1).entry;
  CHECK(e.state == SeptState::kPending);
  CHECK(e.accept_counter == 1);
  CHECK(e.pfn == hpa_to_pfn(range));
  CHECK_FALSE(e.locked);
  CHECK(f.e.mem.is_zero(hpa_to_pfn(range)));
  CHECK_FALSE(f.e.mem.is_zero(hpa_to_pfn(range) + 1));
  // While PENDING, a 4 KiB ACCEPT inside cannot reach level 0: EPT-violation exit (host must
  // DEMOTE), A8.
  const TdxResult small =
      f.e.m.tdg_mem_page_accept(f.td.vcpus[1], kGpa + kPageBytes, PageSize::k4K);
  REQUIRE(small.outcome == GuestOutcome::kTdExit);
  CHECK(small.exit.eeq == EeqType::kAccept);
  CHECK(small.exit.sept_level == 1);
  CHECK(small.exit.sept_state == SeptState::kPending);
  // The guest re-issues the same TDCALL (any vCPU) until done.
  unsigned calls = 1;
  for (; calls < 1000; ++calls) {
    r = f.e.m.tdg_mem_page_accept(f.td.vcpus[0], kGpa, PageSize::k2M, calls < 300);
    REQUIRE_OK(r);
    if (r.outcome == GuestOutcome::kReturn) break;
    CHECK(r.outcome == GuestOutcome::kInterrupted);
  }
  CHECK(calls == 300);  // 300 single chunks (interrupted), then the remaining 212 in one call
  e = f.e.m.sept_entry(f.td.tdr, kGpa, 1).entry;
  CHECK(e.state == SeptState::kMapped);
  CHECK(e.accept_counter == 0);
  CHECK(e.pfn == hpa_to_pfn(range));
  for (unsigned i = 0; i < 512; ++i) REQUIRE(f.e.mem.is_zero(hpa_to_pfn(range) + i));
  CHECK(f.e.mem.meta(hpa_to_pfn(range) + 511).key_id == 20);
  CHECK(f.e.m.stats().accept_interrupts == 300);
  // 4 KiB inside an accepted 2 MiB leaf: ALREADY_ACCEPTED with the leaf's level as operand.
  CHECK_STATUS(f.e.m.tdg_mem_page_accept(f.td.vcpus[0], kGpa + 5 * kPageBytes, PageSize::k4K),
               with_operand(status::kPageAlreadyAccepted, 1));
  // Hardware walks it as one 2 MiB leaf.
  Pwc pwc(PwcConfig{});
  Walker w(pwc);
  const WalkResult wr = w.walk(*f.e.m.sept_walk_root(f.td.tdr), kGpa + 0x12345, 3, kPermsRW);
  CHECK(wr.fault == WalkFault::kNone);
  CHECK(wr.size == PageSize::k2M);
  CHECK(wr.pfn_for(kGpa + 0x12345) == hpa_to_pfn(range) + 0x12);
}

TEST_CASE("tdx accept: 2 MiB over 4 KiB mappings is PAGE_SIZE_MISMATCH, 1 GiB is invalid") {
  Fixture f;
  f.e.fault_in(f.td, kGpa, 0);
  CHECK_STATUS(f.e.m.tdg_mem_page_accept(f.td.vcpus[0], kGpa, PageSize::k2M),
               with_operand(status::kPageSizeMismatch, 1));
  CHECK_STATUS(f.e.m.tdg_mem_page_accept(f.td.vcpus[0], Gpa(0), PageSize::k1G),
               with_operand(status::kOperandInvalid, operand::kRcx));
  CHECK_STATUS(f.e.m.tdg_mem_page_accept(f.td.vcpus[0], kGpa + 0x800, PageSize::k4K),
               with_operand(status::kOperandInvalid, operand::kRcx));
  // A missing intermediate level: exit, the host must SEPT.ADD (A8).
  const TdxResult miss = f.e.m.tdg_mem_page_accept(f.td.vcpus[0], Gpa(7ull << 30), PageSize::k4K);
  REQUIRE(miss.outcome == GuestOutcome::kTdExit);
  CHECK(miss.exit.sept_level == 2);
}

TEST_CASE("tdx ept violation: PENDING without SEPT_VE_DISABLE injects #VE, shared GPA exits") {
  TdParams p;
  p.attributes = 0;  // SEPT_VE_DISABLE clear
  Fixture f(p);
  f.e.ensure_sept(f.td, kGpa);
  REQUIRE_OK(f.e.m.mem_page_aug(f.td.tdr, kGpa, PageSize::k4K, f.e.page()));
  f.e.enter(f.td, 0);
  const TdxResult ve = f.e.m.ept_violation(f.td.vcpus[0], kGpa + 0x40, false);
  CHECK(ve.outcome == GuestOutcome::kInjectVe);
  CHECK(f.e.m.vcpu_info(f.td.vcpus[0])->in_td);  // no host involvement
  CHECK(f.e.m.stats().ve_injected == 1);
  // PENDING_BLOCKED is not acceptable: TD exit.
  REQUIRE_OK(f.e.m.mem_range_block(f.td.tdr, kGpa, 0));
  const TdxResult pb = f.e.m.ept_violation(f.td.vcpus[0], kGpa, true);
  REQUIRE(pb.outcome == GuestOutcome::kTdExit);
  CHECK(pb.exit.sept_state == SeptState::kPendingBlocked);
  CHECK(pb.exit.write);
  // Shared GPA: always the host's shared EPT (T4).
  f.e.enter(f.td, 0);
  const Gpa shared((1ull << 47) | kGpa.value());
  const TdxResult sh = f.e.m.ept_violation(f.td.vcpus[0], shared, false);
  REQUIRE(sh.outcome == GuestOutcome::kTdExit);
  CHECK(sh.exit.shared);
  CHECK(sh.exit.gpa == shared);
  // Bits between the SHARED bit and MAX_PA with GPAW 48: #PF(RSVD), no exit (A1).
  f.e.enter(f.td, 0);
  const TdxResult pf = f.e.m.ept_violation(f.td.vcpus[0], Gpa(1ull << 49), false);
  CHECK(pf.outcome == GuestOutcome::kInjectPfRsvd);
  CHECK(f.e.m.vcpu_info(f.td.vcpus[0])->in_td);
}

TEST_CASE("tdx vmcall: MapGPA is forwarded as a TD exit, the host answers with R10 codes") {
  Fixture f;
  f.e.enter(f.td, 1);
  TdvmcallArgs a;
  a.r11 = kTdvmcallMapGpa;
  a.r12 = (1ull << 47) | kGpa.value();
  a.r13 = 4 * kPageBytes;
  const TdxResult r = f.e.m.tdg_vp_vmcall(f.td.vcpus[1], a);
  REQUIRE(r.outcome == GuestOutcome::kTdExit);
  CHECK(r.exit.reason == TdExitReason::kTdvmcall);
  CHECK(r.exit.vmcall.r11 == kTdvmcallMapGpa);
  CHECK(r.exit.vmcall.r13 == 4 * kPageBytes);
  CHECK(r.exit.gpa == Gpa(a.r12));
  CHECK(r.exit.size == 4 * kPageBytes);
  CHECK(r.exit.shared);
  CHECK_FALSE(f.e.m.vcpu_info(f.td.vcpus[1])->in_td);
  CHECK(check_map_gpa(Gpa(a.r12), a.r13, 47) == tdvmcall_status::kSuccess);
  CHECK(check_map_gpa(Gpa(a.r12 + 8), a.r13, 47) == tdvmcall_status::kAlignError);
  CHECK(check_map_gpa(Gpa(a.r12), 0, 47) == tdvmcall_status::kInvalidOperand);
  CHECK(check_map_gpa(Gpa((1ull << 47) - kPageBytes), 2 * kPageBytes, 47) ==
        tdvmcall_status::kInvalidOperand);  // crosses the SHARED bit
  // A vCPU outside the TD cannot issue TDCALLs (model misuse is reported, not applied).
  CHECK_STATUS(f.e.m.tdg_vp_vmcall(f.td.vcpus[1], a), status::kVcpuStateIncorrect);
  CHECK_STATUS(f.e.m.tdg_mem_page_accept(f.td.vcpus[1], kGpa, PageSize::k4K),
               status::kVcpuStateIncorrect);
}

TEST_CASE("tdx fatal: poison consumed in the TD makes it FATAL, VP.ENTER fails, teardown works") {
  Fixture f;
  f.e.fault_in(f.td, kGpa, 0);
  const TdxResult mc = f.e.m.machine_check(f.td.vcpus[0]);
  CHECK(mc.status == status::kNonRecoverableTdNonAccessible);
  REQUIRE(mc.outcome == GuestOutcome::kTdExit);
  CHECK(mc.exit.reason == TdExitReason::kFatal);
  CHECK(f.e.m.td_info(f.td.tdr)->fatal);
  CHECK_STATUS(f.e.m.vp_enter(f.td.vcpus[0], 0), status::kTdFatal);
  CHECK_STATUS(f.e.m.mem_page_aug(f.td.tdr, kGpa + kPageBytes, PageSize::k4K, f.e.page()),
               status::kTdFatal);
  // The normal teardown still runs (A9).
  REQUIRE_OK(f.e.m.vp_flush(f.td.vcpus[0], 0));
  REQUIRE_OK(f.e.m.mng_vpflushdone(f.td.tdr));
  REQUIRE_OK(f.e.m.phymem_cache_wb(0));
  REQUIRE_OK(f.e.m.mng_key_freeid(f.td.tdr));
}

TEST_CASE("tdx inspection: S-EPT entries, PAMT owners and KOT agree (T1, T2)") {
  Fixture f;
  f.e.fault_in(f.td, kGpa, 0);
  f.aug_2m(kGpa + 2 * k2M);
  unsigned leaves = 0, tables = 0;
  const Pfn tdr = hpa_to_pfn(f.td.tdr);
  f.e.m.for_each_sept_entry(f.td.tdr, [&](Gpa g, const SeptEntry& e) {
    const PamtLeaf pl = f.e.m.pamt_leaf(e.hpa());
    CHECK(pl.entry.owner() == tdr);
    if (e.leaf) {
      ++leaves;
      CHECK(pl.entry.type() == PageType::kReg);
      CHECK(pl.level == static_cast<PageSize>(e.level));
      CHECK(g.is_aligned(static_cast<PageSize>(e.level)));
    } else {
      ++tables;
      CHECK(pl.entry.type() == PageType::kEpt);
    }
  });
  CHECK(leaves == 2);
  CHECK(tables == 3);
  CHECK(f.e.m.kot(20).state == HkidState::kAssigned);
  CHECK(f.e.m.tds().size() == 1);
  CHECK(f.e.m.vcpus_of(f.td.tdr).size() == 2);
}
