// Runtime flows of tdx-snp.md A10 (fault-in, removal, teardown), TLB epoch tracking (A6) and the
// HKID lifecycle (A9, T6).
#include "hw/mmu/walker.h"
#include "tdx_test_util.h"

using namespace cvmsim;
using namespace cvmsim::tdx;
using namespace cvmsim::tdx::test;

namespace {
constexpr Gpa kGpa{0x200000};
}  // namespace

TEST_CASE("tdx flow: fault-in, EPT violation exit, SEPT.ADD, AUG, #VE-free ACCEPT, hardware walk") {
  Env e;
  Td td = e.build_td(20);
  e.enter(td);
  // First touch: no S-EPT levels -> TD exit with the state the module found (A10.2).
  const TdxResult v = e.m.ept_violation(td.vcpus[0], kGpa, true);
  REQUIRE(v.outcome == GuestOutcome::kTdExit);
  CHECK(v.exit.reason == TdExitReason::kEptViolation);
  CHECK(v.exit.gpa == kGpa);
  CHECK_FALSE(v.exit.shared);
  CHECK(v.exit.sept_state == SeptState::kFree);
  CHECK_FALSE(e.m.vcpu_info(td.vcpus[0])->in_td);
  // Host: SEPT.ADD for missing levels, AUG -> PENDING.
  e.ensure_sept(td, kGpa);
  const Hpa page = e.page();
  e.mem.fill(page, kPageBytes, 0xAB);  // stale host data: ACCEPT must zero it
  REQUIRE_OK(e.m.mem_page_aug(td.tdr, kGpa, PageSize::k4K, page));
  CHECK(e.state(td, kGpa) == SeptState::kPending);
  CHECK(e.m.pamt_leaf(page).entry.type() == PageType::kReg);
  // Hardware sees RWX=000: the walk faults (A2.2).
  Pwc pwc(PwcConfig{});
  Walker walker(pwc);
  const WalkRoot root = *e.m.sept_walk_root(td.tdr);
  CHECK(walker.walk(root, kGpa, 1, kPermsR).fault == WalkFault::kNotPresent);
  // Re-entry; the access hits PENDING; SEPT_VE_DISABLE (default attribute) -> TD exit with
  // EEQ PENDING_EPT_VIOLATION (A8), so the Linux guest ACCEPTs on its own schedule.
  e.enter(td);
  const TdxResult pend = e.m.ept_violation(td.vcpus[0], kGpa, false);
  REQUIRE(pend.outcome == GuestOutcome::kTdExit);
  CHECK(pend.exit.eeq == EeqType::kPendingEptViolation);
  e.enter(td);
  const TdxResult acc = e.m.tdg_mem_page_accept(td.vcpus[0], kGpa, PageSize::k4K);
  REQUIRE_OK(acc);
  CHECK(acc.outcome == GuestOutcome::kReturn);
  CHECK(e.state(td, kGpa) == SeptState::kMapped);
  CHECK(e.mem.is_zero(hpa_to_pfn(page)));
  CHECK(e.mem.meta(hpa_to_pfn(page)).key_id == 20);
  CHECK((e.mem.meta(hpa_to_pfn(page)).flags & kFrameTdOwner) != 0);
  CHECK(e.mem.meta(hpa_to_pfn(page)).label == kTdOwner);
  const WalkResult w = walker.walk(root, kGpa + 0x10, 1, kPermsRW);
  CHECK(w.fault == WalkFault::kNone);
  CHECK(w.pfn == hpa_to_pfn(page));
  CHECK(w.pwc_hit);  // the faulting walk cached the upper levels
  CHECK(w.mem_refs == 1);
}

TEST_CASE("tdx flow: removal BLOCK, TRACK, vCPU exits, REMOVE, WBINVD with the HKID") {
  Env e;
  Td td = e.build_td(20, 2);
  const Hpa page = e.fault_in(td, kGpa, 0);
  e.enter(td, 1);
  REQUIRE_OK(e.m.mem_range_block(td.tdr, kGpa, 0));
  CHECK(e.state(td, kGpa) == SeptState::kBlocked);
  const uint64_t bepoch = e.m.pamt_leaf(page).entry.bepoch;
  CHECK(bepoch == e.m.td_info(td.tdr)->td_epoch);
  // A guest access now exits (blocked accepted page -> TD exit, not #VE, A8).
  const TdxResult acc = e.m.ept_violation(td.vcpus[1], kGpa, false);
  REQUIRE(acc.outcome == GuestOutcome::kTdExit);
  CHECK(acc.exit.sept_state == SeptState::kBlocked);
  // vCPU 0 is still inside, in the current epoch.
  REQUIRE_OK(e.m.mem_track(td.tdr));
  CHECK_STATUS(e.m.mem_page_remove(td.tdr, kGpa, PageSize::k4K),
               with_operand(status::kTlbTrackingNotDone, operand::kRcx));
  // The host kicks every vCPU out (IPI, A6.5); then REMOVE succeeds.
  e.leave(td, 0);
  const TdxResult rm = e.m.mem_page_remove(td.tdr, kGpa, PageSize::k4K);
  REQUIRE_OK(rm);
  CHECK(rm.rcx == page.value());
  CHECK(e.state(td, kGpa) == SeptState::kFree);
  CHECK(e.m.pamt_leaf(page).entry.type() == PageType::kNda);
  // REMOVE does not clear the page: it still carries the TD's key and owner bit (A2.3, A9).
  CHECK(e.mem.meta(hpa_to_pfn(page)).key_id == 20);
  // WBINVD takes the PA with the TD's KeyID; the page must be PT_NDA by now.
  REQUIRE_OK(e.m.phymem_page_wbinvd(e.m.with_hkid(page, 20)));
  const Hpa other = e.fault_in(td, kGpa + kPageBytes, 0);
  CHECK_STATUS(e.m.phymem_page_wbinvd(e.m.with_hkid(other, 20)),
               with_operand(status::kPageMetadataIncorrect, operand::kRcx));
}

TEST_CASE("tdx flow: teardown in the spec's order reclaims every page and frees the HKID") {
  Env e;
  Td td = e.build_td(20, 2);
  std::vector<Hpa> data;
  for (unsigned i = 0; i < 3; ++i) data.push_back(e.fault_in(td, kGpa + i * kPageBytes, i % 2));
  e.leave(td, 0);
  e.leave(td, 1);
  // RECLAIM only during teardown (A9, T6).
  CHECK_STATUS(e.m.phymem_page_reclaim(data[0]), status::kLifecycleStateIncorrect);
  // KVM_TDX teardown (A10.4): VP.FLUSH on each vCPU's LP, VPFLUSHDONE, CACHE.WB, FREEID, RECLAIM.
  CHECK_STATUS(e.m.mng_vpflushdone(td.tdr), status::kFlushvpNotDone);
  CHECK_STATUS(e.m.vp_flush(td.vcpus[1], 0), status::kVcpuAssociated);
  REQUIRE_OK(e.m.vp_flush(td.vcpus[0], 0));
  REQUIRE_OK(e.m.vp_flush(td.vcpus[1], 1));
  CHECK_STATUS(e.m.vp_flush(td.vcpus[1], 1), status::kVcpuNotAssociated);
  REQUIRE_OK(e.m.mng_vpflushdone(td.tdr));
  CHECK(e.m.td_info(td.tdr)->lifecycle == TdLifecycle::kBlocked);
  CHECK(e.m.kot(20).state == HkidState::kFlushed);
  CHECK(e.m.kot(20).wbinvd_bitmap == 1);
  // Memory SEAMCALLs now fail: the TD is no longer KEYS_CONFIGURED.
  CHECK_STATUS(e.m.mem_range_block(td.tdr, kGpa, 0), status::kTdKeysNotConfigured);
  CHECK_STATUS(e.m.vp_enter(td.vcpus[0]), status::kTdKeysNotConfigured);
  CHECK_STATUS(e.m.mng_key_freeid(td.tdr), status::kWbcacheNotComplete);
  REQUIRE_OK(e.m.phymem_cache_wb(0));
  CHECK(e.m.kot(20).wbinvd_bitmap == 0);
  REQUIRE_OK(e.m.mng_key_freeid(td.tdr));
  CHECK(e.m.kot(20).state == HkidState::kFree);
  CHECK(e.m.td_info(td.tdr)->lifecycle == TdLifecycle::kTeardown);
  // The TDR goes last (A7).
  CHECK_STATUS(e.m.phymem_page_reclaim(td.tdr), status::kTdAssociatedPagesExist);
  // Reclaim every page the TD owns: data, S-EPT pages, TDCX, TDVPR/TDVPX.
  std::vector<std::pair<Pfn, PageSize>> owned;
  e.m.pamt().for_each_assigned([&](Pfn base, PageSize level, const PamtEntry& pe) {
    if (pe.owner() == hpa_to_pfn(td.tdr) && pe.type() != PageType::kTdr)
      owned.emplace_back(base, level);
  });
  CHECK(owned.size() == 3 /*data*/ + 3 /*S-EPT*/ + 6 /*TDCS*/ + 2 * 6 /*TDVPS*/);
  CHECK(e.m.td_info(td.tdr)->chldcnt == owned.size());
  unsigned ept = 0;
  for (auto [base, level] : owned) {
    const TdxResult r = e.m.phymem_page_reclaim(pfn_to_hpa(base));
    REQUIRE_OK(r);
    CHECK(r.rdx == td.tdr.value());
    if (r.rcx == static_cast<uint64_t>(PageType::kEpt)) ++ept;
  }
  CHECK(ept == 3);
  // Reclaimed pages are not cleared (A9): the data page still has the TD's key and owner bit.
  CHECK(e.mem.meta(hpa_to_pfn(data[0])).key_id == 20);
  CHECK((e.mem.meta(hpa_to_pfn(data[0])).flags & kFrameTdOwner) != 0);
  CHECK(e.m.td_info(td.tdr)->chldcnt == 0);
  const TdxResult last = e.m.phymem_page_reclaim(td.tdr);
  REQUIRE_OK(last);
  CHECK(last.rcx == static_cast<uint64_t>(PageType::kTdr));
  CHECK_FALSE(e.m.td_info(td.tdr).has_value());
  CHECK(e.m.pamt().pages(PageType::kReg) == 0);
  CHECK(e.m.pamt().entries_stored() == 0);
  // Reclaiming a free page: PAGE_METADATA_INCORRECT on RCX (canonical/tdx issue #153).
  CHECK(e.m.phymem_page_reclaim(data[0]).status == 0xC000030000000001ull);
  // The HKID can be used again.
  Td again = e.build_td(20);
  CHECK(e.m.kot(20).tdr == again.tdr);
}

TEST_CASE(
    "tdx epoch: REMOVE before TRACK, after TRACK with a vCPU in the old epoch, after it exits") {
  Env e;
  Td td = e.build_td(20, 1);
  e.fault_in(td, kGpa, 0);  // vCPU 0 stays in the TD, epoch 1
  REQUIRE_OK(e.m.mem_range_block(td.tdr, kGpa, 0));
  // Blocked but not tracked: BEPOCH == td_epoch.
  CHECK_STATUS(e.m.mem_page_remove(td.tdr, kGpa, PageSize::k4K),
               with_operand(status::kTlbTrackingNotDone, operand::kRcx));
  REQUIRE_OK(e.m.mem_track(td.tdr));
  CHECK(e.m.td_info(td.tdr)->td_epoch == 2);
  CHECK(e.m.td_info(td.tdr)->refcount[1] == 1);
  // Tracked only once no vCPU runs in epoch 1 (A6.4).
  CHECK_FALSE(e.m.tlb_tracked(td.tdr, 1));
  CHECK_STATUS(e.m.mem_page_remove(td.tdr, kGpa, PageSize::k4K),
               with_operand(status::kTlbTrackingNotDone, operand::kRcx));
  // A second TRACK is refused while the previous epoch is still referenced (A6.3).
  CHECK_STATUS(e.m.mem_track(td.tdr), status::kPreviousTlbEpochBusy);
  e.leave(td, 0);
  CHECK(e.m.tlb_tracked(td.tdr, 1));
  REQUIRE_OK(e.m.mem_page_remove(td.tdr, kGpa, PageSize::k4K));
  // Re-entry after the epoch moved on the same LP flushes the TD's translations (A6.1).
  const TdxResult enter = e.m.vp_enter(td.vcpus[0], 0);
  REQUIRE_OK(enter);
  CHECK(enter.flush_tlb);
  CHECK(e.m.vcpu_info(td.vcpus[0])->vcpu_epoch == 2);
  e.leave(td, 0);
  const TdxResult again = e.m.vp_enter(td.vcpus[0], 0);
  CHECK_FALSE(again.flush_tlb);
  CHECK(e.m.stats().invepts == 1);
}

TEST_CASE("tdx epoch: UNBLOCK needs tracking, before finalize no tracking is required") {
  Env e;
  Td td = e.build_td(20, 1, false);
  e.ensure_sept(td, kGpa);
  REQUIRE_OK(e.m.mem_page_add(td.tdr, kGpa, e.page(), e.page()));
  // INITIALIZED: REMOVE of a MAPPED page needs no BLOCK (A2.3: tracking only once runnable).
  REQUIRE_OK(e.m.mem_page_remove(td.tdr, kGpa, PageSize::k4K));
  REQUIRE_OK(e.m.mr_finalize(td.tdr));
  e.fault_in(td, kGpa, 0);
  e.leave(td, 0);
  CHECK_STATUS(e.m.mem_page_remove(td.tdr, kGpa, PageSize::k4K),
               with_operand(status::kGpaRangeNotBlocked, operand::kRcx));
  REQUIRE_OK(e.m.mem_range_block(td.tdr, kGpa, 0));
  CHECK_STATUS(e.m.mem_range_unblock(td.tdr, kGpa, 0),
               with_operand(status::kTlbTrackingNotDone, operand::kRcx));
  REQUIRE_OK(e.m.mem_track(td.tdr));
  REQUIRE_OK(e.m.mem_range_unblock(td.tdr, kGpa, 0));
  CHECK(e.state(td, kGpa) == SeptState::kMapped);
}

TEST_CASE("tdx hkid: FREEID before CACHE.WB, CACHE.WB per package, no reuse until FREE") {
  TdxConfig cfg = default_config();
  cfg.num_packages = 2;
  cfg.cached_sub_blocks = 4;
  Env e(cfg);
  Td td = e.build_td(25, 1);
  CHECK_STATUS(e.m.phymem_cache_wb(0), status::kNoHkidReadyToWbcache);
  REQUIRE_OK(e.m.mng_vpflushdone(td.tdr));  // the vCPU never ran: nothing associated
  CHECK(e.m.kot(25).wbinvd_bitmap == 3);
  // The HKID is not free for another TD in ASSIGNED or FLUSHED state.
  CHECK_STATUS(e.m.mng_create(e.page(), 25, kTdOwner2), status::kHkidNotFree);
  CHECK_STATUS(e.m.mng_key_freeid(td.tdr), status::kWbcacheNotComplete);
  // CACHE.WB is interruptible between sub-blocks and resumable (A9).
  const TdxResult part = e.m.phymem_cache_wb(0, CacheWbCmd::kStart, true);
  CHECK_STATUS(part, status::kInterruptedResumable);
  CHECK(e.m.kot(25).wbinvd_bitmap == 3);
  CHECK_STATUS(e.m.phymem_cache_wb(1, CacheWbCmd::kResume), status::kWbcacheResumeError);
  REQUIRE_OK(e.m.phymem_cache_wb(0, CacheWbCmd::kResume));
  CHECK(e.m.kot(25).wbinvd_bitmap == 2);
  CHECK_STATUS(e.m.mng_key_freeid(td.tdr), status::kWbcacheNotComplete);
  REQUIRE_OK(e.m.phymem_cache_wb(1));
  REQUIRE_OK(e.m.mng_key_freeid(td.tdr));
  CHECK(e.m.kot(25).state == HkidState::kFree);
  CHECK_STATUS(e.m.mng_key_freeid(td.tdr), status::kLifecycleStateIncorrect);
  // Free again: another TD may take it while the old TD's pages are still being reclaimed.
  REQUIRE_OK(e.m.mng_create(e.page(), 25, kTdOwner2));
}

TEST_CASE("tdx hkid: SKIP_PHYMEM_CACHE_WB makes CACHE.WB unnecessary") {
  TdxConfig cfg = default_config();
  cfg.skip_phymem_cache_wb = true;
  Env e(cfg);
  Td td = e.build_td(25, 1);
  REQUIRE_OK(e.m.mng_vpflushdone(td.tdr));
  CHECK(e.m.kot(25).wbinvd_bitmap == 0);
  REQUIRE_OK(e.m.phymem_cache_wb(0));
  REQUIRE_OK(e.m.mng_key_freeid(td.tdr));
}
