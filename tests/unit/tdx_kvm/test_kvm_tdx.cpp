// The KVM TDX glue (models/tdx/kvm_tdx.h) driven through KVM's uAPI facade, as a VMM would:
// TD build, private fault-in (SEPT.ADD + AUG, then the guest's ACCEPT), conversions both ways
// (the zap sequence and the cleared page), MapGPA decoding, #MC, and teardown reclaiming every
// frame (tdx-snp.md A8, A10; kvm-guest-memfd.md §7, §10, §11).
#include <catch2/catch.hpp>

#include "../kvm/kvm_test_util.h"
#include "models/guest/tdx_guest_kernel.h"
#include "models/tdx/kvm_tdx.h"

namespace cvmsim::kvmtest {
namespace {

using cvmsim::SeptState;
using tdx::KvmTdxBackend;
using tdx::TdxHost;

constexpr uint32_t kTdx = KVM_X86_TDX_VM;
constexpr uint64_t kS = 1ull << 47;  // GPAW 48: SHARED bit 47 (A1)

struct TdxFixture {
  // Declared first so that it outlives the Kvm (whose VMs' teardown calls the module); the
  // module's destructor touches no memory.
  std::unique_ptr<TdxHost> host;
  KvmFixture f;
  int vm_fd = -1, vcpu_fd = -1, gmem_fd = -1;
  RecordingUserspace user;
  bool ve_disable = true;
  // The guest kernel: accepts on #VE (SEPT_VE_DISABLE clear) and after MapGPA to private.
  std::unique_ptr<guest::TdxGuestKernel> kernel;

  // huge: guest_memfd 2 MiB folios and the TD's huge_private option (2 MiB private leaves).
  explicit TdxFixture(bool sept_ve_disable = true, bool huge = false,
                      uint64_t accept_interrupt_cycles = 0)
      : f(AttrStoreKind::kXarray, 0, huge), ve_disable(sept_ve_disable) {
    REQUIRE(f.mem.set_key_config(KeyConfig::tdx(64, 16)).ok());
    tdx::TdxGlueConfig g;
    g.sept_ve_disable = sept_ve_disable;
    host = std::make_unique<TdxHost>(f.mem, TdxHost::config_for(f.mem), g);
    f.kvm.register_backend(
        kTdx, [this, o = tdx::TdxTdOptions{sept_ve_disable, huge, accept_interrupt_cycles}](
                  const config::Section*) { return tdx::make_tdx_backend(*host, o); });
  }
  // A TD with `bytes` (2 MiB by default) of private guest memory at GPA 0 and one vCPU, finalized.
  void build(bool finalize = true, uint64_t bytes = k2M) {
    vm_fd = f.new_vm(kTdx);
    gmem_fd = f.new_gmem(vm_fd, bytes);
    f.add_slot(vm_fd, 0, 0, bytes, gmem_fd);
    REQUIRE(f.set_attrs(vm_fd, 0, bytes, kPriv).ok());
    REQUIRE(f.enable_exit_hypercall(vm_fd, 1ull << KVM_HC_MAP_GPA_RANGE).ok());
    vcpu_fd = f.new_vcpu(vm_fd);
    vcpu().set_userspace(&user);
    guest::TdxGuestKernelConfig gk;
    gk.accept = guest::AcceptPolicy::kLazy;
    gk.private_ranges.push_back(guest::GpaRange{Gpa(0), bytes});
    kernel = std::make_unique<guest::TdxGuestKernel>(gk);
    be().set_guest_side(kernel.get());
    if (finalize) REQUIRE(be().finalize(vm()).ok());
    (void)f.kvm.take_cost();
  }
  Vm& vm() { return f.vm(vm_fd); }
  Vcpu& vcpu() { return f.vcpu(vcpu_fd); }
  KvmTdxBackend& be() {
    KvmTdxBackend* b = tdx::tdx_backend_of(vm());
    REQUIRE(b != nullptr);
    return *b;
  }
  tdx::TdxModule& m() { return host->module(); }
  // The S-EPT state of a private GPA's 4 KiB entry (kInvalid if the walk stops above it).
  SeptState state(uint64_t gpa) {
    const tdx::SeptLookup l = m().sept_entry(be().tdr(), Gpa(gpa), 0);
    REQUIRE(l.found);
    return l.entry.level == 0 ? l.entry.state : SeptState::kInvalid;
  }
  ExitAction fault(uint64_t gpa, bool write = true) {
    return vcpu().handle_exit(0, stage2_exit(gpa, write));
  }
  // First touch of a private page: exit 1 maps it (SEPT.ADD + AUG); then the guest accepts it:
  // on the #VE of the next touch (SEPT_VE_DISABLE clear), or, as a Linux guest does with
  // SEPT_VE_DISABLE set, before touching it (a touch would be fatal).
  void fault_in(uint64_t gpa) {
    REQUIRE(fault(gpa).kind == ExitAction::kRetry);
    REQUIRE(state(gpa) == SeptState::kPending);
    if (ve_disable)
      REQUIRE(kernel->accept_range(be(), 0, Gpa(gpa), kPage) == 0);
    else
      REQUIRE(fault(gpa).kind == ExitAction::kRetry);
    REQUIRE(state(gpa) == SeptState::kMapped);
  }
};

TEST_CASE(
    "TDX VM creation builds a TD with a private HKID, no readonly slots, no pre-fault before "
    "finalize",
    "[tdx_kvm]") {
  TdxFixture t;
  t.build(/*finalize=*/false);
  KvmTdxBackend& be = t.be();
  REQUIRE(be.td_created());
  CHECK(be.hkid() == 17);  // 16 is the global KeyID (A1)
  CHECK(be.shared_bit().value() == kS);
  const auto info = t.m().td_info(be.tdr());
  REQUIRE(info);
  CHECK(info->lifecycle == tdx::TdLifecycle::kKeysConfigured);
  CHECK(info->op_state == tdx::OpState::kInitialized);
  CHECK(info->num_vcpus == 1);
  CHECK((info->attributes & tdx::kTdAttrSeptVeDisable) != 0);
  CHECK(be.walk_root().has_value());
  CHECK_FALSE(t.vm().pre_fault_allowed);
  // READONLY memslots: kvm_arch_has_readonly_mem is false for TDX (§4).
  const Hva h = t.f.anon(kPage);
  CHECK(err(t.f.set_region(t.vm_fd, region2(1, 0x40000000, kPage, h.value(), KVM_MEM_READONLY))) ==
        Errno::kEINVAL);
  // No INIT_SHARED guest_memfd with private memory (§2).
  CHECK_FALSE(be.supports_gmem_init_shared());
  REQUIRE(be.finalize(t.vm()).ok());
  CHECK(t.m().td_info(be.tdr())->op_state == tdx::OpState::kRunnable);
  CHECK(t.vm().pre_fault_allowed);
  // A second TD gets the next HKID.
  const int vm2 = t.f.new_vm(kTdx);
  CHECK(tdx::tdx_backend_of(t.f.vm(vm2))->hkid() == 18);
  CHECK(t.host->hkids_in_use() == 2);
}

TEST_CASE("TDX private fault: SEPT.ADD and PAGE.AUG, then the guest accepts", "[tdx_kvm]") {
  const bool ve_disable = GENERATE(true, false);
  TdxFixture t(ve_disable);
  t.build();
  const uint64_t adds0 = t.m().stats().calls[static_cast<size_t>(tdx::Leaf::kMemSeptAdd)];
  // Exit 1: the S-EPT has nothing: a TD exit, KVM's fault path maps it (PENDING).
  REQUIRE(t.fault(0x1000).kind == ExitAction::kRetry);
  CHECK(t.state(0x1000) == SeptState::kPending);
  CHECK(t.m().stats().calls[static_cast<size_t>(tdx::Leaf::kMemSeptAdd)] - adds0 ==
        3);  // levels 3, 2, 1
  CHECK(t.be().private_pages_mapped() == 1);
  const Pfn pfn = t.f.gmem_pfn(t.gmem_fd, 1);
  CHECK(t.m().pamt_leaf(pfn_to_hpa(pfn)).entry.type() == tdx::PageType::kReg);
  // Exit 2: PENDING. SEPT_VE_DISABLE clear: #VE, the guest kernel's handler accepts. Set: a
  // PENDING EPT-violation TD exit, which KVM treats as fatal (the vCPU stops); the guest
  // should have accepted first, and accepting then works.
  const ExitAction second = t.fault(0x1000);
  if (ve_disable) {
    CHECK(second.kind == ExitAction::kStop);
    CHECK(second.reason.find("guest access before accepting") != std::string::npos);
    CHECK(t.host->stats().pending_access_fatal == 1);
    CHECK(t.state(0x1000) == SeptState::kPending);
    // kvm_vm_dead: any later private fault of the TD stops too.
    const ExitAction later = t.fault(0x2000);
    CHECK(later.kind == ExitAction::kStop);
    CHECK(later.reason.find("the VM is dead") != std::string::npos);
    CHECK(t.be().private_pages_mapped() == 1);
    REQUIRE(t.kernel->accept_range(t.be(), 0, Gpa(0x1000), kPage) == 0);
    CHECK(t.f.kvm.take_cost().count() > 0);  // the TDCALL's cost, outside any exit here
  } else {
    CHECK(second.kind == ExitAction::kRetry);
    CHECK(t.vcpu().stats().private_faults_below_kvm == 1);
    CHECK(t.kernel->stats().ves_handled == 1);
  }
  CHECK(t.state(0x1000) == SeptState::kMapped);
  // The #VE handler tried 2 MiB first (the chunk is whole private memory): PAGE_SIZE_MISMATCH,
  // then 4 KiB; the explicit accept is 4 KiB only.
  CHECK(t.kernel->stats().accepts_4k == 1);
  CHECK(t.kernel->stats().size_mismatch == (ve_disable ? 0u : 1u));
  CHECK(t.host->stats().guest_accepts == (ve_disable ? 1u : 2u));
  CHECK(t.m().stats().ve_injected == (ve_disable ? 0u : 1u));
  CHECK(t.f.mem.meta(pfn).key_id == t.be().hkid());
  // The vCPU's private root maps it; the checkers' view agrees.
  const Stage2Lookup lk = t.be().lookup_private(t.vm(), Gpa(0x1000));
  REQUIRE(lk.mapped());
  CHECK(lk.pfn_for(Gpa(0x1000)) == pfn);
  // Nothing went into the shared table.
  CHECK(KvmFixture::leaf_count(t.vm()) == 0);
  // The exits cost the module's cycles.
  CHECK(t.f.kvm.take_cost().count() == 0);  // already taken by the exits
  CHECK(t.m().stats().cycles[static_cast<size_t>(tdx::Leaf::kMemPageAug)] > 0);
}

TEST_CASE(
    "TDX conversion to shared and back: BLOCK, TRACK, REMOVE, WBINVD, page cleared, AUG again",
    "[tdx_kvm]") {
  TdxFixture t;
  t.build();
  t.fault_in(0x1000);
  const Pfn pfn = t.f.gmem_pfn(t.gmem_fd, 1);
  // The guest writes its secret under the TD key.
  (void)t.f.mem.fill_keyed(pfn_to_hpa(pfn), kPage, 0xab,
                           KeyedAccess{t.be().hkid(), t.vm().principal(), true});
  const auto leaf = [&](tdx::Leaf l) { return t.m().stats().calls[static_cast<size_t>(l)]; };
  const uint64_t blocks = leaf(tdx::Leaf::kMemRangeBlock), tracks = leaf(tdx::Leaf::kMemTrack),
                 removes = leaf(tdx::Leaf::kMemPageRemove),
                 wbinvds = leaf(tdx::Leaf::kPhymemPageWbinvd);
  const uint64_t epoch0 = t.m().td_info(t.be().tdr())->td_epoch;

  // MapGPA(gpa|S): TDG.VP.VMCALL<MapGPA> becomes KVM_HC_MAP_GPA_RANGE without the S bit.
  ExitAction a = t.vcpu().handle_exit(0, hypercall_exit(tdx::kTdvmcallMapGpa, 0x1000 | kS, kPage));
  REQUIRE(t.user.exits.size() == 1);
  const kvm_run& run = t.user.exits.back().run;
  CHECK(run.exit_reason == KVM_EXIT_HYPERCALL);
  CHECK(run.hypercall.nr == KVM_HC_MAP_GPA_RANGE);
  CHECK(run.hypercall.args[0] == 0x1000);
  CHECK(run.hypercall.args[1] == 1);
  CHECK(run.hypercall.args[2] == 0);
  CHECK(a.ret == 0);
  // The VMM converts: the private mapping is zapped in the A10.3 order.
  REQUIRE(t.f.set_attrs(t.vm_fd, 0x1000, kPage, 0).ok());
  CHECK(leaf(tdx::Leaf::kMemRangeBlock) - blocks == 1);
  CHECK(leaf(tdx::Leaf::kMemTrack) - tracks == 1);
  CHECK(leaf(tdx::Leaf::kMemPageRemove) - removes == 1);
  CHECK(leaf(tdx::Leaf::kPhymemPageWbinvd) - wbinvds == 1);
  CHECK(t.m().td_info(t.be().tdr())->td_epoch == epoch0 + 1);
  CHECK(t.be().private_pages_mapped() == 0);
  CHECK(t.m().pamt_leaf(pfn_to_hpa(pfn)).entry.type() == tdx::PageType::kNda);
  CHECK_FALSE(t.be().lookup_private(t.vm(), Gpa(0x1000)).mapped());
  // The host cleared the page: key 0, zeros, nobody's data.
  CHECK(t.f.mem.meta(pfn).key_id == 0);
  CHECK(t.f.mem.meta(pfn).label == kNobody);
  CHECK(t.f.frame_is(pfn, 0));

  // The shared side: the guest accesses gpa|S; KVM maps the shared EPT at gfn|S.
  REQUIRE(t.fault(0x1000 | kS).kind == ExitAction::kRetry);
  CHECK(KvmFixture::mapped(t.vm(), 0x1000 | kS));
  CHECK_FALSE(KvmFixture::mapped(t.vm(), 0x1000));
  // A private access to the now-shared gfn is a KVM_EXIT_MEMORY_FAULT (attribute mismatch, §7).
  t.user.exits.clear();
  (void)t.fault(0x1000);
  REQUIRE(t.user.exits.size() == 1);
  CHECK(t.user.exits.back().run.exit_reason == KVM_EXIT_MEMORY_FAULT);
  CHECK(t.user.exits.back().run.memory_fault.gpa == 0x1000);
  CHECK(t.user.exits.back().run.memory_fault.flags == KVM_MEMORY_EXIT_FLAG_PRIVATE);

  // And back: MapGPA(gpa) is a to-private request; the shared leaf at gfn|S goes.
  t.user.exits.clear();
  (void)t.vcpu().handle_exit(0, hypercall_exit(tdx::kTdvmcallMapGpa, 0x1000, kPage));
  REQUIRE(t.user.exits.size() == 1);
  CHECK(t.user.exits.back().run.hypercall.args[2] == KVM_MAP_GPA_RANGE_ENCRYPTED);
  REQUIRE(t.f.set_attrs(t.vm_fd, 0x1000, kPage, kPriv).ok());
  CHECK_FALSE(KvmFixture::mapped(t.vm(), 0x1000 | kS));
  // The S-EPT entry is FREE again: the next touch AUGs a page and the guest accepts it.
  CHECK(t.state(0x1000) == SeptState::kFree);
  t.fault_in(0x1000);
}

TEST_CASE("TDX MapGPA with a bad operand is answered by KVM without an exit", "[tdx_kvm]") {
  TdxFixture t;
  t.build();
  ExitAction a = t.vcpu().handle_exit(0, hypercall_exit(tdx::kTdvmcallMapGpa, 0x1001 | kS, kPage));
  CHECK(t.user.exits.empty());
  CHECK(a.kind == ExitAction::kResume);
  CHECK(a.ret == tdx::tdvmcall_status::kAlignError);
  // Another TDVMCALL is not a conversion: -KVM_ENOSYS.
  a = t.vcpu().handle_exit(0, hypercall_exit(0x10002, 0, 0));
  CHECK(t.user.exits.empty());
  CHECK(a.ret == static_cast<uint64_t>(-static_cast<int64_t>(KVM_ENOSYS)));
}

TEST_CASE("TDX machine check makes the TD fatal and stops the vCPU, teardown still reclaims",
          "[tdx_kvm]") {
  TdxFixture t;
  const uint64_t free0 = t.f.frames.free_frames();
  t.build();
  t.fault_in(0x2000);
  MachineCheck mc;
  mc.gpa = Gpa(0x2000);
  const ExitAction a = t.vcpu().handle_machine_check(0, mc);
  CHECK(a.kind == ExitAction::kStop);
  CHECK(a.reason.find("FATAL") != std::string::npos);
  CHECK(t.m().td_info(t.be().tdr())->fatal);
  CHECK(t.fault(0x3000).kind == ExitAction::kStop);  // VP.ENTER fails TDX_TD_FATAL
  REQUIRE(t.f.proc.close(t.vcpu_fd).ok());
  REQUIRE(t.f.proc.close(t.gmem_fd).ok());
  REQUIRE(t.f.proc.close(t.vm_fd).ok());
  CHECK(t.f.frames.free_frames() == free0);
  CHECK(t.host->hkids_in_use() == 0);
}

TEST_CASE("TDX teardown reclaims every frame and frees the HKID", "[tdx_kvm]") {
  TdxFixture t;
  const uint64_t free0 = t.f.frames.free_frames();
  t.build();
  for (uint64_t gpa = 0; gpa < 0x10000; gpa += kPage) t.fault_in(gpa);
  // Convert a few back and forth so that zapped pages, S-EPT pages and live pages all exist.
  REQUIRE(t.f.set_attrs(t.vm_fd, 0x4000, 0x4000, 0).ok());
  REQUIRE(t.f.set_attrs(t.vm_fd, 0x4000, 0x2000, kPriv).ok());
  t.fault_in(0x4000);
  CHECK(t.be().private_pages_mapped() == 13);
  CHECK(t.f.frames.free_frames() < free0);
  const Hpa tdr = t.be().tdr();
  const uint64_t reclaimed0 = t.m().stats().tds_reclaimed;
  REQUIRE(t.f.proc.close(t.vcpu_fd).ok());
  REQUIRE(t.f.proc.close(t.gmem_fd).ok());
  REQUIRE(t.f.proc.close(t.vm_fd).ok());
  CHECK(t.m().stats().tds_reclaimed == reclaimed0 + 1);
  CHECK_FALSE(t.m().td_info(tdr).has_value());
  CHECK(t.f.frames.free_frames() == free0);
  CHECK(t.host->hkids_in_use() == 0);
  CHECK(t.m().kot(17).state == tdx::HkidState::kFree);
  // Nothing is left assigned in the PAMT.
  uint64_t assigned = 0;
  t.m().pamt().for_each_assigned([&](auto&&...) { ++assigned; });
  CHECK(assigned == 0);
  CHECK(t.host->stats().tds_reclaimed == 1);
  CHECK(t.host->stats().hkids_freed == 1);
  // A new TD gets the freed HKID back.
  t.build();
  CHECK(t.be().hkid() == 17);
  CHECK(t.m().kot(17).state != tdx::HkidState::kFree);
}

// The TD's MRTD after adding one 4 KiB page at GPA 0x10000 holding `byte` (measured or not).
std::string mrtd_after_image(uint8_t byte, bool measure) {
  TdxFixture t;
  t.build(/*finalize=*/false);
  auto src = t.f.frames.alloc();
  REQUIRE(src.ok());
  std::vector<uint8_t> buf(kPage, byte);
  (void)t.f.mem.write_keyed(pfn_to_hpa(*src), buf, KeyedAccess{0, kHostUser, true});
  REQUIRE(t.be().init_mem_page(t.vm(), Gfn(0x10), pfn_to_hpa(*src), measure).ok());
  CHECK(t.state(0x10000) == SeptState::kMapped);  // PAGE.ADD: MAPPED, no ACCEPT needed
  CHECK(t.be().private_pages_mapped() == 1);
  CHECK_FALSE(t.be().mrtd_hex().has_value());  // not final before MR.FINALIZE
  // Adding it again, or after finalize, is refused.
  CHECK(t.be().init_mem_page(t.vm(), Gfn(0x10), pfn_to_hpa(*src), measure).error() ==
        Errno::kEEXIST);
  REQUIRE(t.be().finalize(t.vm()).ok());
  CHECK(t.be().init_mem_page(t.vm(), Gfn(0x11), pfn_to_hpa(*src), measure).error() ==
        Errno::kEINVAL);
  CHECK(t.host->stats().pages_added == 1);
  CHECK(t.host->stats().mr_extends == (measure ? 16u : 0u));
  auto h = t.be().mrtd_hex();
  REQUIRE(h.has_value());
  CHECK(h->size() == 96);
  return *h;
}

TEST_CASE(
    "TDX initial image: PAGE.ADD maps the page, MR.EXTEND makes the MRTD depend on its contents",
    "[tdx_kvm]") {
  const std::string a = mrtd_after_image(0x5a, true);
  CHECK(mrtd_after_image(0x5a, true) == a);  // identical image: identical MRTD
  CHECK(mrtd_after_image(0xa5, true) != a);  // different contents: different MRTD
  // Unmeasured: PAGE.ADD extends the MRTD with the GPA only, so the contents do not matter.
  const std::string u = mrtd_after_image(0x5a, false);
  CHECK(mrtd_after_image(0xa5, false) == u);
  CHECK(u != a);
}

}  // namespace
}  // namespace cvmsim::kvmtest

namespace cvmsim::kvmtest {
namespace {

std::vector<Violation> run_tdx_invariants(TdxFixture& t) {
  std::vector<Violation> out;
  CheckScope scope{t.f.kvm, t.f.mem, true, nullptr, nullptr, nullptr};
  for (const auto& d : tdx::tdx_invariants()) d.check(scope, out);
  return out;
}

TEST_CASE(
    "TDX invariant T2 holds on a built TD and catches an S-EPT leaf pointing at a foreign page",
    "[tdx_kvm]") {
  TdxFixture t;
  t.build();
  t.fault_in(0x1000);
  t.fault_in(0x2000);
  CHECK(run_tdx_invariants(t).empty());
  // Break it behind the module's back: point the leaf of 0x2000 at a frame the TD does not own
  // (a free page: PAMT PT_NDA), as a corrupted or forged S-EPT would.
  const tdx::SeptLookup l = t.m().sept_entry(t.be().tdr(), Gpa(0x2000), 0);
  REQUIRE(l.found);
  REQUIRE(l.entry.level == 0);
  auto stray = t.f.frames.alloc(PageSize::k4K);
  REQUIRE(stray.ok());
  const uint64_t raw = t.f.mem.read_u64(l.entry_hpa);
  t.f.mem.write_u64(l.entry_hpa, (raw & ~0x000FFFFFFFFFF000ull) | (stray->value() << kPageShift));
  const auto v = run_tdx_invariants(t);
  REQUIRE(v.size() == 1);
  CHECK(v[0].invariant == "T2");
  CHECK(v[0].frames.at(0) == *stray);
}

}  // namespace
}  // namespace cvmsim::kvmtest

namespace cvmsim::kvmtest {
namespace {

// The 2 MiB S-EPT leaf covering gpa: its state, or kInvalid when level 1 holds no leaf.
SeptState leaf_2m_state(TdxFixture& t, uint64_t gpa) {
  const tdx::SeptLookup l = t.m().sept_entry(t.be().tdr(), Gpa(gpa & ~(k2M - 1)), 1);
  if (!l.found || !l.entry.leaf || l.entry.level != 1) return SeptState::kInvalid;
  return l.entry.state;
}

TEST_CASE("TDX 2 MiB private pages: ACCEPT(2M) exits, KVM adds S-EPT to level 2 and AUGs 2M",
          "[tdx_kvm][2m]") {
  TdxFixture t(/*sept_ve_disable=*/true, /*huge=*/true);
  t.build(true, 2 * k2M);
  const auto leaf = [&](tdx::Leaf l) { return t.m().stats().calls[static_cast<size_t>(l)]; };
  const uint64_t septs = leaf(tdx::Leaf::kMemSeptAdd);
  REQUIRE(t.kernel->accept_range(t.be(), 0, Gpa(0), k2M) == 0);
  // One ACCEPT(2M) exit (missing level), KVM mapped a 2 MiB leaf, the re-issued ACCEPT took it.
  CHECK(t.host->stats().accept_exits == 1);
  CHECK(t.host->stats().private_maps_2m == 1);
  CHECK(t.host->stats().private_maps == 0);
  CHECK(leaf(tdx::Leaf::kMemSeptAdd) - septs == 2);  // levels 3 and 2 only
  CHECK(t.kernel->stats().accepts_2m == 1);
  CHECK(leaf_2m_state(t, 0) == SeptState::kMapped);
  CHECK(t.be().private_2m_mapped() == 1);
  CHECK(t.be().private_pages_mapped() == 512);
  // The leaf maps the guest_memfd's 2 MiB folio: contiguous, 2 MiB-aligned frames.
  const Pfn first = t.f.gmem_pfn(t.gmem_fd, 0);
  CHECK((first.value() & 511) == 0);
  CHECK(t.f.gmem_pfn(t.gmem_fd, 511) == first + 511);
  const tdx::PamtLeaf pl = t.m().pamt_leaf(pfn_to_hpa(first + 7));
  CHECK(pl.entry.type() == tdx::PageType::kReg);
  CHECK(pl.level == PageSize::k2M);
  const Stage2Lookup lk = t.be().lookup_private(t.vm(), Gpa(0x7000));
  REQUIRE(lk.mapped());
  CHECK(lk.level == 1);
  CHECK(lk.pfn_for(Gpa(0x7000)) == first + 7);
  // ALREADY_ACCEPTED on a second accept, at either size.
  REQUIRE(t.kernel->accept_range(t.be(), 0, Gpa(0), k2M) == 0);
  REQUIRE(t.kernel->accept_range(t.be(), 0, Gpa(0x3000), kPage) == 0);
  CHECK(t.kernel->stats().already_accepted == 2);
}

TEST_CASE(
    "TDX 2 MiB private pages: a 4 KiB zap inside DEMOTEs first, a whole-range zap REMOVEs the 2 "
    "MiB leaf",
    "[tdx_kvm][2m]") {
  TdxFixture t(true, true);
  t.build(true, 2 * k2M);
  REQUIRE(t.kernel->accept_range(t.be(), 0, Gpa(0), 2 * k2M) == 0);
  REQUIRE(t.be().private_2m_mapped() == 2);
  const auto leaf = [&](tdx::Leaf l) { return t.m().stats().calls[static_cast<size_t>(l)]; };
  const Pfn first = t.f.gmem_pfn(t.gmem_fd, 0);
  // The guest's data in page 4 of the first chunk, under the TD key.
  (void)t.f.mem.fill_keyed(pfn_to_hpa(first + 4), kPage, 0x5a,
                           KeyedAccess{t.be().hkid(), t.vm().principal(), true});
  const uint64_t blocks = leaf(tdx::Leaf::kMemRangeBlock), tracks = leaf(tdx::Leaf::kMemTrack),
                 removes = leaf(tdx::Leaf::kMemPageRemove);
  // Page 3 goes shared: BLOCK + TRACK + DEMOTE of the 2 MiB leaf, then BLOCK + TRACK + REMOVE of
  // page 3.
  REQUIRE(t.f.set_attrs(t.vm_fd, 0x3000, kPage, 0).ok());
  CHECK(t.host->stats().demotes == 1);
  CHECK(leaf(tdx::Leaf::kMemPageDemote) == 1);
  CHECK(leaf(tdx::Leaf::kMemRangeBlock) - blocks == 2);
  CHECK(leaf(tdx::Leaf::kMemTrack) - tracks == 2);
  CHECK(leaf(tdx::Leaf::kMemPageRemove) - removes == 1);
  CHECK(t.host->stats().private_zaps == 1);
  CHECK(t.be().private_2m_mapped() == 1);
  CHECK(t.be().private_pages_mapped() == 511 + 512);
  CHECK(leaf_2m_state(t, 0) == SeptState::kInvalid);  // level 1 is a table now
  CHECK(t.state(0x3000) == SeptState::kFree);
  CHECK(t.state(0x4000) == SeptState::kMapped);  // accepted children stay accepted
  CHECK(t.f.mem.meta(first + 4).key_id == t.be().hkid());
  CHECK(t.f.mem.meta(first + 4).label == t.vm().principal());  // the data was not touched
  CHECK(t.m().pamt_leaf(pfn_to_hpa(first + 4)).level == PageSize::k4K);
  CHECK(t.m().pamt_leaf(pfn_to_hpa(first + 3)).entry.type() == tdx::PageType::kNda);
  // The second chunk goes shared whole: one 2 MiB REMOVE, all 512 pages cleared.
  const Pfn second = t.f.gmem_pfn(t.gmem_fd, 512);
  const uint64_t cleared = t.host->stats().pages_cleared,
                 removes2 = leaf(tdx::Leaf::kMemPageRemove);
  REQUIRE(t.f.set_attrs(t.vm_fd, k2M, k2M, 0).ok());
  CHECK(t.host->stats().private_zaps_2m == 1);
  CHECK(leaf(tdx::Leaf::kMemPageRemove) - removes2 == 1);
  CHECK(t.host->stats().pages_cleared - cleared == 512);
  CHECK(t.host->stats().demotes == 1);
  CHECK(t.be().private_2m_mapped() == 0);
  CHECK(t.m().pamt_leaf(pfn_to_hpa(second)).entry.type() == tdx::PageType::kNda);
  CHECK_FALSE(t.be().lookup_private(t.vm(), Gpa(k2M + 0x5000)).mapped());
}

TEST_CASE("TDX 2 MiB private pages: ACCEPT(4K) under a PENDING 2 MiB leaf makes KVM DEMOTE it",
          "[tdx_kvm][2m]") {
  TdxFixture t(/*sept_ve_disable=*/false, true);
  t.build(true, 2 * k2M);
  // A touch maps the chunk at 2 MiB (PENDING).
  REQUIRE(t.fault(0x9000).kind == ExitAction::kRetry);
  REQUIRE(leaf_2m_state(t, 0x9000) == SeptState::kPending);
  // The guest accepts only 4 KiB: the ACCEPT exits (a larger non-accessible leaf, A8), KVM
  // demotes, the re-issued ACCEPT succeeds; the other 511 pages stay PENDING.
  REQUIRE(t.kernel->accept_range(t.be(), 0, Gpa(0x9000), kPage) == 0);
  CHECK(t.host->stats().demotes == 1);
  CHECK(t.host->stats().accept_exits == 1);
  CHECK(t.state(0x9000) == SeptState::kMapped);
  CHECK(t.state(0x8000) == SeptState::kPending);
  // The next touch of a PENDING neighbour is a #VE, accepted at 4 KiB (2 MiB: PAGE_SIZE_MISMATCH).
  REQUIRE(t.fault(0x8000).kind == ExitAction::kRetry);
  CHECK(t.state(0x8000) == SeptState::kMapped);
  CHECK(t.kernel->stats().size_mismatch == 1);
}

TEST_CASE("TDX 2 MiB private pages: teardown reclaims the 2 MiB leaf and returns every frame",
          "[tdx_kvm][2m]") {
  TdxFixture t(true, true);
  const uint64_t free0 = t.f.frames.free_frames();
  t.build(true, 2 * k2M);
  REQUIRE(t.kernel->accept_range(t.be(), 0, Gpa(0), 2 * k2M) == 0);
  REQUIRE(t.be().private_2m_mapped() == 2);
  const uint64_t reclaimed = t.host->stats().pages_reclaimed;
  REQUIRE(t.f.proc.close(t.vcpu_fd).ok());
  REQUIRE(t.f.proc.close(t.gmem_fd).ok());
  REQUIRE(t.f.proc.close(t.vm_fd).ok());
  CHECK(t.host->stats().tds_reclaimed == 1);
  CHECK(t.host->stats().pages_reclaimed > reclaimed + 2);
  uint64_t assigned = 0;
  t.m().pamt().for_each_assigned([&](auto&&...) { ++assigned; });
  CHECK(assigned == 0);
  CHECK(t.f.frames.free_frames() == free0);
}

TEST_CASE("TDX 2 MiB ACCEPT interrupted by a pending interrupt resumes from ACCEPT_COUNTER",
          "[tdx_kvm][2m]") {
  // accept_interrupt_cycles = 1: after the first ACCEPT(2M) (which exits for the AUG) an
  // interrupt is pending, so the re-issued ACCEPT zeroes one 4 KiB chunk and returns
  // interrupted; the guest takes the interrupt and re-issues it, and the module resumes at
  // ACCEPT_COUNTER = 1 and zeroes the other 511 chunks.
  TdxFixture t(true, true, /*accept_interrupt_cycles=*/1);
  t.build(true, 2 * k2M);
  const uint64_t zeroed0 = t.m().stats().pages_zeroed, septs0 = t.host->stats().sept_pages_added;
  REQUIRE(t.kernel->accept_range(t.be(), 0, Gpa(k2M), k2M) == 0);
  CHECK(leaf_2m_state(t, k2M) == SeptState::kMapped);
  CHECK(t.m().stats().accept_interrupts == 1);
  CHECK(t.kernel->stats().accepts_2m == 1);
  CHECK(t.host->stats().guest_accepts == 3);  // exit, interrupted, completed
  // Each page zeroed once (the counter resumed), plus the new S-EPT pages SEPT.ADD zeroed.
  CHECK(t.m().stats().pages_zeroed - zeroed0 == 512 + (t.host->stats().sept_pages_added - septs0));
  const Pfn first = t.f.gmem_pfn(t.gmem_fd, 512);
  for (uint64_t i = 0; i < 512; i += 73) CHECK(t.f.mem.meta(first + i).key_id == t.be().hkid());
  // Without the option nothing is interrupted.
  TdxFixture u(true, true);
  u.build(true, 2 * k2M);
  REQUIRE(u.kernel->accept_range(u.be(), 0, Gpa(k2M), k2M) == 0);
  CHECK(u.m().stats().accept_interrupts == 0);
  CHECK(u.host->stats().guest_accepts == 2);
}

}  // namespace
}  // namespace cvmsim::kvmtest
