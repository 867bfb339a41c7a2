// The KVM TDX glue's recovery from lock contention (tdx-snp.md A5), with a fake TimeHook in
// place of the timed shell: while one party's call is in flight (its S-EPT entry lock held), the
// fake runs the other party's call to completion, once. Both orders of a guest ACCEPT and a host
// zap (BLOCK, TRACK, REMOVE) of the same PENDING page:
//   host first:  the guest's ACCEPT is BUSY; the guest retries; the page is gone, KVM re-faults
//                it (AUG) and the next ACCEPT succeeds;
//   guest first: the host's BLOCK is BUSY (TDHP set); KVM kicks (the kick waits for the TDCALL to
//                retire, here: completes it), retries once and the removal completes.
// docs/tdx-model.md "Concurrency and BUSY".
#include <catch2/catch.hpp>

#include <functional>

#include "../kvm/kvm_test_util.h"
#include "models/guest/tdx_guest_kernel.h"
#include "models/tdx/kvm_tdx.h"

namespace cvmsim::kvmtest {
namespace {

using cvmsim::SeptState;
using tdx::KvmTdxBackend;
using tdx::TdxHost;

constexpr uint32_t kTdx = KVM_X86_TDX_VM;
constexpr uint64_t kP = 0x3000;  // the contended page

// Runs `other` once, at the first yield made while `when` holds; any later yield (the other
// party's own, or a spin-wait) cannot make time pass.
struct FakeYield final : kvm::TimeHook {
  std::function<bool()> when;
  std::function<void()> other;
  bool running = false, ran = false;
  unsigned yields = 0;
  bool yield(Cycles) override {
    ++yields;
    if (running || ran || !when || !when()) return false;
    running = true;
    other();
    running = false;
    ran = true;
    return true;
  }
};

struct RaceFixture {
  std::unique_ptr<TdxHost> host;  // outlives the Kvm (its VMs' teardown calls the module)
  KvmFixture f;
  int vm_fd = -1, vcpu_fd = -1, gmem_fd = -1;
  RecordingUserspace user;
  FakeYield fake;
  // The guest kernel (lazy accept: the first-touch flow, SEPT_VE_DISABLE clear): its #VE handler
  // ACCEPTs through the backend's TdxGuestAbi. With the fake hook no time passes between its
  // BUSY retries, so it re-issues none (busy_retry_limit 0): a BUSY ACCEPT returns to the access.
  std::unique_ptr<guest::TdxGuestKernel> kernel;

  // huge: 2 MiB guest_memfd folios and 2 MiB private leaves (huge_private), 4 MiB of memory.
  explicit RaceFixture(bool huge = false) : f(AttrStoreKind::kXarray, 0, huge) {
    REQUIRE(f.mem.set_key_config(KeyConfig::tdx(64, 16)).ok());
    tdx::TdxGlueConfig g;
    g.sept_ve_disable = false;
    host = std::make_unique<TdxHost>(f.mem, TdxHost::config_for(f.mem), g);
    f.kvm.register_backend(kTdx,
                           [this, o = tdx::TdxTdOptions{false, huge, 0}](const config::Section*) {
                             return tdx::make_tdx_backend(*host, o);
                           });
    const uint64_t bytes = huge ? 2 * k2M : k2M;
    vm_fd = f.new_vm(kTdx);
    gmem_fd = f.new_gmem(vm_fd, bytes);
    f.add_slot(vm_fd, 0, 0, bytes, gmem_fd);
    REQUIRE(f.set_attrs(vm_fd, 0, bytes, kPriv).ok());
    vcpu_fd = f.new_vcpu(vm_fd);
    f.vcpu(vcpu_fd).set_userspace(&user);
    guest::TdxGuestKernelConfig gk;
    gk.accept = guest::AcceptPolicy::kLazy;
    gk.private_ranges.push_back(guest::GpaRange{Gpa(0), bytes});
    gk.busy_retry_limit = 0;
    kernel = std::make_unique<guest::TdxGuestKernel>(gk);
    be().set_guest_side(kernel.get());
    REQUIRE(be().finalize(f.vm(vm_fd)).ok());
    (void)f.kvm.take_cost();
  }
  ~RaceFixture() { f.kvm.set_time_hook(nullptr); }
  KvmTdxBackend& be() { return *tdx::tdx_backend_of(f.vm(vm_fd)); }
  tdx::TdxModule& m() { return host->module(); }
  const TdxHost::Stats& glue() { return host->stats(); }
  tdx::SeptLookup entry(uint64_t gpa) { return m().sept_entry(be().tdr(), Gpa(gpa), 0); }
  SeptState state(uint64_t gpa) {
    const tdx::SeptLookup l = entry(gpa);
    REQUIRE(l.found);
    return l.entry.level == 0 ? l.entry.state : SeptState::kInvalid;
  }
  bool locked(uint64_t gpa) {
    const tdx::SeptLookup l = entry(gpa);
    return l.found && (l.entry.raw & SeptBits::kTdel);
  }
  ExitAction touch(uint64_t gpa) { return f.vcpu(vcpu_fd).handle_exit(0, stage2_exit(gpa, true)); }
  // The VMM punches the page out of guest_memfd: KVM zaps it (BLOCK, TRACK, kick, REMOVE).
  Status punch(uint64_t gpa) {
    return f.kvm.fallocate(f.proc, gmem_fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE,
                           static_cast<int64_t>(gpa), static_cast<int64_t>(kPageBytes));
  }
  // The VMM punches [gpa, gpa + bytes) (2 MiB runs: a whole 2 MiB leaf goes, a part DEMOTEs it).
  Status punch(uint64_t gpa, uint64_t bytes) {
    return f.kvm.fallocate(f.proc, gmem_fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE,
                           static_cast<int64_t>(gpa), static_cast<int64_t>(bytes));
  }
  // The level-1 entry of the 2 MiB chunk at gpa (a 2 MiB leaf, or the table after DEMOTE).
  tdx::SeptLookup entry_2m(uint64_t gpa) { return m().sept_entry(be().tdr(), Gpa(gpa), 1); }
  bool locked_2m(uint64_t gpa) {
    const tdx::SeptLookup l = entry_2m(gpa);
    return l.found && (l.entry.raw & SeptBits::kTdel);
  }
  SeptState state_2m(uint64_t gpa) {
    const tdx::SeptLookup l = entry_2m(gpa);
    REQUIRE(l.found);
    return l.entry.level == 1 && l.entry.leaf ? l.entry.state : SeptState::kInvalid;
  }
  uint64_t busy(tdx::Leaf l) { return m().stats().busy[static_cast<size_t>(l)]; }
  uint64_t calls(tdx::Leaf l) { return m().stats().calls[static_cast<size_t>(l)]; }
};

TEST_CASE("tdx recovery: without a time hook every call is atomic and nothing is in flight",
          "[tdx_kvm][race]") {
  RaceFixture t;
  REQUIRE(t.touch(kP).kind == ExitAction::kRetry);  // AUG
  REQUIRE(t.state(kP) == SeptState::kPending);
  REQUIRE(t.touch(kP).kind == ExitAction::kRetry);  // ACCEPT
  REQUIRE(t.state(kP) == SeptState::kMapped);
  REQUIRE(t.punch(kP).ok());
  CHECK(t.state(kP) == SeptState::kFree);
  CHECK(t.glue().busy_retries == 0);
  CHECK(t.glue().guest_accept_busy == 0);
  CHECK(t.busy(tdx::Leaf::kTdgMemPageAccept) == 0);
}

TEST_CASE(
    "tdx recovery: host zap first, the guest's ACCEPT is BUSY, retries, and re-faults the removed "
    "page",
    "[tdx_kvm][race]") {
  RaceFixture t;
  REQUIRE(t.touch(kP).kind == ExitAction::kRetry);  // AUG: PENDING, not yet accepted
  REQUIRE(t.state(kP) == SeptState::kPending);

  // While the host's BLOCK holds the entry (still PENDING), the vCPU touches the page: the
  // module says PENDING, the guest ACCEPTs and meets the lock.
  ExitAction during{};
  t.fake.when = [&] { return t.locked(kP) && t.state(kP) == SeptState::kPending; };
  t.fake.other = [&] { during = t.touch(kP); };
  t.f.kvm.set_time_hook(&t.fake);
  REQUIRE(t.punch(kP).ok());
  REQUIRE(t.fake.ran);
  CHECK(during.kind == ExitAction::kRetry);  // the guest retries
  CHECK(t.glue().guest_accept_busy == 1);
  CHECK(t.busy(tdx::Leaf::kTdgMemPageAccept) == 1);
  CHECK(t.m().stats().host_priority_sets == 0);  // the host never failed
  CHECK(t.glue().busy_retries == 0);
  // The host won: the page is gone (REMOVE, cleared), not accepted.
  CHECK(t.state(kP) == SeptState::kFree);
  CHECK(t.glue().private_zaps == 1);
  CHECK(t.glue().pages_cleared == 1);

  // The guest's retry: EPT violation on a FREE entry -> KVM maps a new page (AUG) -> ACCEPT.
  REQUIRE(t.touch(kP).kind == ExitAction::kRetry);
  CHECK(t.state(kP) == SeptState::kPending);
  REQUIRE(t.touch(kP).kind == ExitAction::kRetry);
  CHECK(t.state(kP) == SeptState::kMapped);
  CHECK(t.calls(tdx::Leaf::kMemPageAug) == 2);
  CHECK(!t.locked(kP));
}

TEST_CASE("tdx recovery: guest ACCEPT first, the host's BLOCK is BUSY, KVM kicks and retries once",
          "[tdx_kvm][race]") {
  RaceFixture t;
  REQUIRE(t.touch(kP).kind == ExitAction::kRetry);  // AUG
  REQUIRE(t.state(kP) == SeptState::kPending);

  // While the guest's ACCEPT holds the entry, the VMM punches the page.
  Status punched = Errno::kEINVAL;
  t.fake.when = [&] { return t.locked(kP); };
  t.fake.other = [&] { punched = t.punch(kP); };
  t.f.kvm.set_time_hook(&t.fake);
  const ExitAction a = t.touch(kP);
  REQUIRE(t.fake.ran);
  REQUIRE(punched.ok());
  // The host's first BLOCK met the guest's lock: BUSY, TDHP set (A5 host side).
  CHECK(t.busy(tdx::Leaf::kMemRangeBlock) == 1);
  CHECK(t.m().stats().host_priority_sets == 1);
  // tdh_do_no_vcpus: kick (the kick waited for the TDCALL: the ACCEPT completed first), retry.
  CHECK(t.glue().busy_retries == 1);
  CHECK(t.glue().kick_waits == 1);
  CHECK(t.calls(tdx::Leaf::kMemRangeBlock) == 2);
  // The ACCEPT itself succeeded (it held the lock); then the removal completed.
  CHECK(a.kind == ExitAction::kRetry);
  CHECK(t.glue().guest_accept_busy == 0);
  CHECK(t.busy(tdx::Leaf::kTdgMemPageAccept) == 0);
  // The guest kernel's #VE handler: ACCEPT(2M) first (PAGE_SIZE_MISMATCH: 4 KiB leaves), then
  // the 4 KiB ACCEPT, which succeeded.
  CHECK(t.kernel->stats().size_mismatch == 1);
  CHECK(t.kernel->stats().accepts_4k == 1);
  CHECK(t.kernel->stats().accept_errors == 0);
  CHECK(t.kernel->stats().busy_retries == 0);
  CHECK(t.state(kP) == SeptState::kFree);
  CHECK(t.glue().private_zaps == 1);
  CHECK(!t.locked(kP));

  // The guest's next access re-faults the page: AUG, ACCEPT, MAPPED.
  t.f.kvm.set_time_hook(nullptr);
  REQUIRE(t.touch(kP).kind == ExitAction::kRetry);
  CHECK(t.state(kP) == SeptState::kPending);
  REQUIRE(t.touch(kP).kind == ExitAction::kRetry);
  CHECK(t.state(kP) == SeptState::kMapped);
  // TDHP was cleared by the ACCEPT's write-back and the host's successful retry: no priority left.
  CHECK(!(t.entry(kP).entry.raw & SeptBits::kTdhp));
}

TEST_CASE(
    "tdx recovery: a guest ACCEPT against a REMOVE in flight is BUSY, then sees the page gone",
    "[tdx_kvm][race]") {
  // A guest that accepts on #VE issues ACCEPT only for a PENDING page, i.e. before BLOCK; one
  // that accepts without touching (Linux's accept_memory) can meet REMOVE itself. At the module:
  // the entry lock is taken before the state is looked at, so it is BUSY, not a state error.
  RaceFixture t;
  REQUIRE(t.touch(kP).kind == ExitAction::kRetry);  // AUG
  const Hpa tdr = t.be().tdr();
  const Hpa tdvpr = *t.be().tdvpr_of(0);
  REQUIRE(t.m().mem_range_block(tdr, Gpa(kP), 0).ok());
  REQUIRE(t.m().mem_track(tdr).ok());
  if (auto info = t.m().vcpu_info(tdvpr); info && info->in_td) REQUIRE(t.m().td_exit(tdvpr).ok());
  tdx::TdxTicket remove = t.m().begin_mem_page_remove(tdr, Gpa(kP), PageSize::k4K);
  REQUIRE(remove.status() == tdx::status::kSuccess);
  REQUIRE(t.m().vp_enter(tdvpr, 0).ok());
  const tdx::TdxResult busy = t.m().tdg_mem_page_accept(tdvpr, Gpa(kP), PageSize::k4K);
  CHECK(busy.code() == tdx::status_code(tdx::status::kOperandBusy));
  REQUIRE(t.m().complete(std::move(remove)).ok());
  // The retried ACCEPT finds the entry FREE: EPT-violation TD exit, KVM maps a new page.
  const tdx::TdxResult again = t.m().tdg_mem_page_accept(tdvpr, Gpa(kP), PageSize::k4K);
  CHECK(again.outcome == tdx::GuestOutcome::kTdExit);
  CHECK(again.exit.sept_state == SeptState::kFree);
}

TEST_CASE(
    "tdx recovery: guest_accept (the guest kernel's ACCEPT ABI) during the host's REMOVE is BUSY, "
    "then the lazy-AUG exit",
    "[tdx_kvm][race]") {
  // What a guest-kernel model accepting before it touches meets: the REMOVE itself in flight.
  RaceFixture t;
  REQUIRE(t.touch(kP).kind == ExitAction::kRetry);  // AUG
  std::optional<tdx::TdxResult> during;
  // The fake fires while REMOVE holds the entry: BLOCK has completed (PENDING_BLOCKED), locked.
  t.fake.when = [&] { return t.locked(kP) && t.state(kP) == SeptState::kPendingBlocked; };
  t.fake.other = [&] { during = t.be().guest_accept(0, Gpa(kP), PageSize::k4K); };
  t.f.kvm.set_time_hook(&t.fake);
  REQUIRE(t.punch(kP).ok());
  REQUIRE(t.fake.ran);
  REQUIRE(during);
  CHECK(during->code() == tdx::status_code(tdx::status::kOperandBusy));
  CHECK(t.glue().guest_accept_busy == 1);
  CHECK(t.busy(tdx::Leaf::kMemPageRemove) == 0);  // the host was not disturbed
  CHECK(t.state(kP) == SeptState::kFree);
  // The guest's retry: the entry is FREE, the lazy-AUG path exits to KVM.
  // The guest's retry: the entry is FREE, the ACCEPT exits to KVM (the lazy-AUG path), KVM
  // maps a new page and the re-executed ACCEPT succeeds.
  t.f.kvm.set_time_hook(nullptr);
  const tdx::TdxResult again = t.be().guest_accept(0, Gpa(kP), PageSize::k4K);
  CHECK(again.ok());
  CHECK(t.glue().accept_exits == 1);
  CHECK(t.state(kP) == SeptState::kMapped);
  CHECK(t.calls(tdx::Leaf::kMemPageAug) == 2);
  // A vCPU id that is not the TD's is refused.
  CHECK(t.be().guest_accept(7, Gpa(kP), PageSize::k4K).code() ==
        tdx::status_code(tdx::status::kOperandInvalid));
}

// ---- 2 MiB private pages: the guest kernel's ACCEPT(2M) against the 2 MiB zap path ----

TEST_CASE(
    "tdx recovery 2M: ACCEPT(2M) against a 2 MiB BLOCK/REMOVE in flight is BUSY, the retry maps a "
    "new 2 MiB leaf",
    "[tdx_kvm][race][2m]") {
  RaceFixture t(/*huge=*/true);
  REQUIRE(t.touch(0x9000).kind == ExitAction::kRetry);  // KVM maps the chunk at 2 MiB, PENDING
  REQUIRE(t.state_2m(0) == SeptState::kPending);
  REQUIRE(t.be().private_2m_mapped() == 1);
  // The VMM punches the whole chunk: BLOCK (level 1), TRACK, REMOVE 2M run in flight. While the
  // first of them holds the 2 MiB entry, the guest kernel ACCEPTs the chunk at 2 MiB.
  tdx::TdxResult during;
  t.fake.when = [&] { return t.locked_2m(0); };
  t.fake.other = [&] { during = t.be().guest_accept(0, Gpa(0), PageSize::k2M); };
  t.f.kvm.set_time_hook(&t.fake);
  REQUIRE(t.punch(0, k2M).ok());
  REQUIRE(t.fake.ran);
  CHECK(during.code() == tdx::status_code(tdx::status::kOperandBusy));
  CHECK(t.glue().guest_accept_busy == 1);
  CHECK(t.busy(tdx::Leaf::kTdgMemPageAccept) == 1);
  CHECK(t.m().stats().host_priority_sets == 0);  // the host was not disturbed
  CHECK(t.glue().busy_retries == 0);
  CHECK(t.glue().private_zaps_2m == 1);
  CHECK(t.be().private_2m_mapped() == 0);
  CHECK(!t.locked_2m(0));
  // The guest kernel retries: the ACCEPT exits (nothing mapped), KVM maps a new 2 MiB folio,
  // the re-issued ACCEPT(2M) succeeds.
  t.f.kvm.set_time_hook(nullptr);
  REQUIRE(t.kernel->accept_range(t.be(), 0, Gpa(0), k2M) == 0);
  CHECK(t.kernel->stats().accepts_2m == 1);
  CHECK(t.state_2m(0) == SeptState::kMapped);
  CHECK(t.be().private_2m_mapped() == 1);
  CHECK(t.calls(tdx::Leaf::kMemPageAug) == 2);
}

TEST_CASE(
    "tdx recovery 2M: ACCEPT(2M) against a DEMOTE in flight is BUSY, after the split the guest "
    "accepts at 4 KiB",
    "[tdx_kvm][race][2m]") {
  RaceFixture t(/*huge=*/true);
  REQUIRE(t.touch(0x9000).kind == ExitAction::kRetry);  // 2 MiB leaf, PENDING
  REQUIRE(t.state_2m(0) == SeptState::kPending);
  // A 4 KiB punch inside the chunk: BLOCK, TRACK, DEMOTE of the 2 MiB leaf, then the 4 KiB page's
  // removal. The fake fires while DEMOTE holds the (now BLOCKED) 2 MiB entry.
  tdx::TdxResult during;
  t.fake.when = [&] { return t.locked_2m(0) && t.state_2m(0) == SeptState::kPendingBlocked; };
  t.fake.other = [&] { during = t.be().guest_accept(0, Gpa(0), PageSize::k2M); };
  t.f.kvm.set_time_hook(&t.fake);
  REQUIRE(t.punch(kP, kPageBytes).ok());
  REQUIRE(t.fake.ran);
  CHECK(during.code() == tdx::status_code(tdx::status::kOperandBusy));
  CHECK(t.glue().guest_accept_busy == 1);
  CHECK(t.glue().demotes == 1);
  CHECK(t.glue().private_zaps == 1);  // the punched 4 KiB page
  CHECK(t.be().private_2m_mapped() == 0);
  CHECK(t.state_2m(0) == SeptState::kInvalid);  // a table now
  CHECK(t.state(kP) == SeptState::kFree);
  CHECK(t.state(0x9000) == SeptState::kPending);  // the children keep their state
  // The guest kernel's retry: ACCEPT(2M) is now PAGE_SIZE_MISMATCH, it falls back to 4 KiB; the
  // punched page exits to KVM (lazy AUG) and is accepted like the rest.
  t.f.kvm.set_time_hook(nullptr);
  REQUIRE(t.kernel->accept_range(t.be(), 0, Gpa(0), k2M) == 0);
  CHECK(t.kernel->stats().size_mismatch == 1);
  CHECK(t.kernel->stats().accepts_4k == 512);
  CHECK(t.state(kP) == SeptState::kMapped);
  CHECK(t.state(0x9000) == SeptState::kMapped);
}

TEST_CASE(
    "tdx recovery 2M: ACCEPT(2M) in flight first, the 2 MiB BLOCK is BUSY, KVM kicks and retries "
    "once",
    "[tdx_kvm][race][2m]") {
  RaceFixture t(/*huge=*/true);
  REQUIRE(t.touch(0x9000).kind == ExitAction::kRetry);  // 2 MiB leaf, PENDING
  Status punched = Errno::kEINVAL;
  t.fake.when = [&] { return t.locked_2m(0); };
  t.fake.other = [&] { punched = t.punch(0, k2M); };
  t.f.kvm.set_time_hook(&t.fake);
  const tdx::TdxResult r = t.be().guest_accept(0, Gpa(0), PageSize::k2M);
  REQUIRE(t.fake.ran);
  REQUIRE(punched.ok());
  CHECK(r.ok());  // the ACCEPT held the entry and completed (the kick waited for it)
  CHECK(t.busy(tdx::Leaf::kMemRangeBlock) == 1);
  CHECK(t.m().stats().host_priority_sets == 1);
  CHECK(t.glue().busy_retries == 1);
  CHECK(t.glue().kick_waits == 1);
  CHECK(t.glue().guest_accept_busy == 0);
  CHECK(t.glue().private_zaps_2m == 1);
  CHECK(t.be().private_2m_mapped() == 0);
  CHECK(!t.locked_2m(0));
}

}  // namespace
}  // namespace cvmsim::kvmtest
