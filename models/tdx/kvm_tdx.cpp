#include "models/tdx/kvm_tdx.h"

#include <algorithm>
#include <bit>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <memory>

#include "models/kvm/guest_memfd.h"
#include "models/kvm/kvm.h"
#include "models/kvm/uapi.h"
#include "models/kvm/vcpu.h"
#include "models/kvm/vm.h"

namespace cvmsim::tdx {

using kvm::Vm;

// ============================================================================================
// TdxHost

TdxHost::TdxHost(PhysMem& mem, TdxConfig cfg, TdxGlueConfig glue)
    : module_(mem, std::move(cfg)), glue_(glue) {
  const TdxConfig& c = module_.config();
  hkid_used_.assign(
      c.private_hkid_max >= c.private_hkid_min ? c.private_hkid_max - c.private_hkid_min + 1u : 0u,
      false);
  // The global KeyID is the host's (PAMT, TDR): never a TD's (A1).
  if (c.global_hkid >= c.private_hkid_min && c.global_hkid <= c.private_hkid_max)
    hkid_used_[c.global_hkid - c.private_hkid_min] = true;
}

TdxConfig TdxHost::config_for(const PhysMem& mem) {
  TdxConfig c;
  c.tdmrs.push_back(Tdmr{Hpa(0), mem.size_bytes(), {}});
  const KeyConfig& k = mem.keys();
  if (k.has_private_keys()) {
    c.private_hkid_min = static_cast<KeyId>(k.first_private);
    c.private_hkid_max = static_cast<KeyId>(k.num_key_ids - 1);
    c.global_hkid = k.global_private_key();
  }
  return c;
}

std::optional<KeyId> TdxHost::alloc_hkid() {
  for (size_t i = 0; i < hkid_used_.size(); ++i)
    if (!hkid_used_[i]) {
      hkid_used_[i] = true;
      hkids_live_ = hkids_in_use();
      const KeyId k = static_cast<KeyId>(module_.config().private_hkid_min + i);
      if (double(k) > hkid_highest_) hkid_highest_ = double(k);
      return k;
    }
  ++stats_.hkid_exhausted;
  return std::nullopt;
}

void TdxHost::free_hkid(KeyId k) {
  const KeyId lo = module_.config().private_hkid_min;
  if (k >= lo && k - lo < static_cast<int>(hkid_used_.size()) && k != module_.config().global_hkid)
    hkid_used_[k - lo] = false;
  hkids_live_ = hkids_in_use();
}

TdxTdOptions TdxHost::default_td_options() const {
  TdxTdOptions o;
  o.sept_ve_disable = glue_.sept_ve_disable;
  return o;
}

unsigned TdxHost::hkids_in_use() const {
  unsigned n = 0;
  for (size_t i = 0; i < hkid_used_.size(); ++i)
    if (hkid_used_[i] && module_.config().private_hkid_min + i != module_.config().global_hkid) ++n;
  return n;
}

void TdxHost::describe_stats(StatVisitor& v) const {
  module_.describe_stats(v);
  PrefixedStats g(v, "glue");
  g.value("hkids_in_use", hkids_live_, "keys", "HKIDs held by TDs (the global KeyID excluded)");
  g.value("hkid_highest", hkid_highest_, "key",
          "highest HKID ever given to a TD (lowest free first: it stays put when freed HKIDs are "
          "reused)");
  g.counter("seamcall_errors", stats_.seamcall_errors, "calls",
            "module calls made by the KVM glue that failed (mapped to EBUSY or EIO)");
  g.counter(
      "busy_retries", stats_.busy_retries, "calls",
      "BUSY answered by kicking every vCPU out of the TD and retrying once (tdh_do_no_vcpus)");
  g.counter("guest_accept_busy", stats_.guest_accept_busy, "calls",
            "TDG.MEM.PAGE.ACCEPTs that got TDX_OPERAND_BUSY or BUSY_HOST_PRIORITY (a host SEAMCALL "
            "held the S-EPT entry); the guest retries");
  g.counter(
      "kick_waits", stats_.kick_waits, "kicks",
      "vCPU kicks that waited for the vCPU's TDCALL in flight to retire before it took the IPI");
  g.counter("fault_waits", stats_.fault_waits, "waits",
            "faults, private maps, zaps, DEMOTEs and ACCEPT exits that waited for a zap or DEMOTE "
            "holding mmu_lock");
  g.counter(
      "enter_waits", stats_.enter_waits, "entries",
      "TD entries held back by wait_for_sept_zap or retried after TDH.VP.ENTER returned BUSY");
  g.counter("private_maps", stats_.private_maps, "pages",
            "private pages added at runtime (TDH.MEM.PAGE.AUG) for KVM faults");
  g.counter(
      "pages_added", stats_.pages_added, "pages",
      "initial-image pages added before finalize (TDH.MEM.PAGE.ADD, KVM_TDX_INIT_MEM_REGION)");
  g.counter("mr_extends", stats_.mr_extends, "calls",
            "TDH.MR.EXTEND calls (256 B each) measuring the initial image");
  g.counter("sept_pages_added", stats_.sept_pages_added, "pages",
            "S-EPT pages added (TDH.MEM.SEPT.ADD)");
  g.counter("private_zaps", stats_.private_zaps, "pages",
            "private pages removed (BLOCK, TRACK, kick, REMOVE, WBINVD, clear)");
  g.counter("guest_accepts", stats_.guest_accepts, "calls",
            "TDG.MEM.PAGE.ACCEPT calls the guest kernel issued through the glue (re-issues after "
            "an exit included)");
  g.counter(
      "accept_exits", stats_.accept_exits, "exits",
      "ACCEPTs that exited to KVM (EEQ ACCEPT: FREE entry or missing level, the lazy-AUG path; or "
      "a 2 MiB PENDING leaf under a 4 KiB request) and were re-issued after KVM mapped or demoted");
  g.counter("pending_access_fatal", stats_.pending_access_fatal, "exits",
            "guest accesses to a PENDING page with SEPT_VE_DISABLE set: KVM marks the VM dead "
            "(tdx_handle_ept_violation) and the vCPU stops");
  g.counter("private_maps_2m", stats_.private_maps_2m, "leaves",
            "2 MiB private leaves added at runtime (TDH.MEM.PAGE.AUG 2M); private_maps counts the "
            "4 KiB ones");
  g.counter("demotes", stats_.demotes, "leaves",
            "2 MiB private leaves split into 512 4 KiB leaves (BLOCK, TRACK, TDH.MEM.PAGE.DEMOTE) "
            "for a partial zap or a 4 KiB accept");
  g.counter("private_zaps_2m", stats_.private_zaps_2m, "leaves",
            "2 MiB private leaves removed whole (BLOCK, TRACK, REMOVE 2M, WBINVD, clear); "
            "private_zaps counts the 4 KiB ones");
  g.counter("vcpu_kicks", stats_.vcpu_kicks, "exits",
            "TD exits forced so that TLB tracking completes");
  g.counter("vp_enters", stats_.vp_enters, "calls", "TDH.VP.ENTER calls by the glue");
  g.counter("machine_checks", stats_.machine_checks, "count",
            "machine checks that made a TD fatal");
  g.counter("pages_reclaimed", stats_.pages_reclaimed, "pages",
            "pages reclaimed at teardown (TDH.PHYMEM.PAGE.RECLAIM)");
  g.counter("pages_cleared", stats_.pages_cleared, "pages",
            "pages the host cleared with MOVDIR64B under key 0 before reuse");
  g.counter("td_exits.ept_violation", stats_.td_exits_ept_violation, "exits",
            "TD exits for an EPT violation KVM handles (FREE/absent private page: SEPT.ADD + AUG)");
  g.counter("td_exits.pending_ept_violation", stats_.td_exits_pending, "exits",
            "TD exits for an EPT violation on a PENDING page (SEPT_VE_DISABLE: EEQ "
            "PENDING_EPT_VIOLATION; the guest accepts)");
  g.counter("td_exits.tdvmcall", stats_.td_exits_tdvmcall, "exits",
            "TD exits for a TDG.VP.VMCALL seen by the glue");
  g.counter("td_exits.async", stats_.td_exits_async, "exits",
            "asynchronous TD exits the glue caused (kicks for TLB tracking, teardown)");
  g.counter("td_exits.fatal", stats_.td_exits_fatal, "exits",
            "TD exits because the TD became FATAL");
  g.counter("ves_injected", stats_.ves_injected, "count",
            "#VE injected into the guest for a PENDING page (SEPT_VE_DISABLE clear)");
  g.counter("tds_reclaimed", stats_.tds_reclaimed, "count",
            "TDs torn down completely (the TDR reclaimed last)");
  g.counter("hkids_freed", stats_.hkids_freed, "keys",
            "HKIDs returned to the allocator after TDH.MNG.KEY.FREEID");
  g.counter("hkid_exhausted", stats_.hkid_exhausted, "count",
            "TDX VM creations refused because no HKID was free");
}

// ============================================================================================
// Helpers

uint32_t KvmTdxBackend::vm_type() const {
  return kvm::KVM_X86_TDX_VM;
}

TdxResult KvmTdxBackend::charged(Vm& vm, TdxResult r, std::string_view leaf, uint64_t gpa,
                                 int level, uint64_t hpa, int hkid, Cycles prepaid) {
  vm.kvm().charge(Cycles(r.cost.count() > prepaid.count() ? r.cost.count() - prepaid.count() : 0));
  if (r.is_error()) ++host_.stats().seamcall_errors;
  TdxHost::Stats& st = host_.stats();
  if (r.outcome == GuestOutcome::kInjectVe) ++st.ves_injected;
  if (r.outcome == GuestOutcome::kTdExit) {
    switch (r.exit.reason) {
      case TdExitReason::kEptViolation:
        ++(r.exit.eeq == EeqType::kPendingEptViolation ? st.td_exits_pending
                                                       : st.td_exits_ept_violation);
        break;
      case TdExitReason::kTdvmcall:
        ++st.td_exits_tdvmcall;
        break;
      case TdExitReason::kAsync:
        ++st.td_exits_async;
        break;
      case TdExitReason::kFatal:
        ++st.td_exits_fatal;
        break;
      default:
        break;
    }
  }
  if (vm.kvm().tracing()) {
    // SEAMCALLs (TDH.*) and the guest's TDCALLs (TDG.*) by leaf; the module's own events
    // (EPT_VIOLATION, TD_EXIT, MACHINE_CHECK) as "module".
    const bool seam = leaf.starts_with("TDH."), td = leaf.starts_with("TDG.");
    char buf[160];
    std::string d(leaf);
    if (gpa != kNoArg) {
      std::snprintf(buf, sizeof buf, " gpa=0x%" PRIx64, gpa);
      d += buf;
    }
    if (level >= 0) d += " level=" + std::to_string(level);
    if (hpa != kNoArg) {
      std::snprintf(buf, sizeof buf, " hpa=0x%" PRIx64, hpa);
      d += buf;
    }
    if (hkid >= 0) d += " hkid=" + std::to_string(hkid);
    d += " -> ";
    d += status_name(r.status);
    if (r.outcome == GuestOutcome::kTdExit) {
      d += " exit=";
      d += name_of(r.exit.reason);
      if (r.exit.eeq == EeqType::kPendingEptViolation) d += " eeq=pending";
      if (r.exit.eeq == EeqType::kAccept) d += " eeq=accept";
    } else if (r.outcome == GuestOutcome::kInjectVe || r.outcome == GuestOutcome::kInjectPfRsvd) {
      d += " outcome=";
      d += name_of(r.outcome);
    }
    d += " cost=" + std::to_string(r.cost.count());
    vm.kvm().trace("platform." + vm.name() + ".tdx",
                   seam ? "seamcall"
                   : td ? "tdcall"
                        : "module",
                   d);
  }
  return r;
}

Errno KvmTdxBackend::to_errno(const TdxResult& r) {
  // KVM: TDX_OPERAND_BUSY -> -EBUSY (the caller retries); any other error -> -EIO.
  return is_busy_class(r.status) ? Errno::kEBUSY : Errno::kEIO;
}

Result<Hpa> KvmTdxBackend::alloc_frame(Vm& vm) {
  auto f = vm.frames().alloc(PageSize::k4K);
  if (!f.ok()) return f.error();
  return pfn_to_hpa(*f);
}

void KvmTdxBackend::clear_page(Vm& vm, Hpa page) {
  // The host clears a page it got back from the module before reuse: MOVDIR64B under key 0
  // (whole lines, so the TD-owner bits and poison go), as nobody's data (A9, A10.3).
  (void)Initiator::host_kernel(vm.mem()).fill(page, kPageBytes, 0,
                                              WriteOptions{}.labelled(kNobody).whole_lines());
  vm.mem().revoke_dmi(hpa_to_pfn(page));
  ++host_.stats().pages_cleared;
}

KvmTdxBackend::VcpuTd* KvmTdxBackend::vcpu_td(const kvm::Vcpu& v) {
  for (auto& t : vcpus_)
    if (t.id == v.id()) return &t;
  return nullptr;
}

std::optional<Hpa> KvmTdxBackend::tdvpr_of(uint32_t vcpu_id) const {
  for (const auto& t : vcpus_)
    if (t.id == vcpu_id) return t.tdvpr;
  return std::nullopt;
}

size_t KvmTdxBackend::frames_held() const {
  size_t n = (td_created_ ? 1 : 0) + tdcs_.size() + sept_pages_.size();
  for (const auto& v : vcpus_) n += 1 + v.tdvpx.size();
  return n;
}

void KvmTdxBackend::describe_ownership(const Vm&, kvm::OwnershipVisitor& v) const {
  if (!td_created_) return;
  const TdxModule& m = host_.module();
  const auto info = m.td_info(tdr_);
  if (!info) return;
  v.firmware("TDX module", "firmware (SEAM): S-EPT, PAMT");
  // S-EPT leaves (tdx-snp.md A2.2): the TD reaches the frame of a MAPPED leaf (RWX set), and of a
  // PENDING one by its own TDG.MEM.PAGE.ACCEPT; BLOCKED, REMOVED and exported leaves give no
  // access without the host's help (an information edge).
  m.for_each_sept_entry(tdr_, [&](Gpa gpa, const SeptEntry& e) {
    if (!e.leaf || e.state == SeptState::kFree || e.state == SeptState::kRemoved) return;
    const PageSize size = e.level == 0   ? PageSize::k4K
                          : e.level == 1 ? PageSize::k2M
                                         : PageSize::k1G;
    kvm::PrivateLeafInfo l;
    l.gfn = gpa_to_gfn(Gpa(gpa.value() & ~shared_mask_));
    l.pfn = e.pfn;
    l.size = size;
    l.state = name_of(e.state);
    l.table = "S-EPT";
    l.access = e.present() || e.state == SeptState::kPending;
    v.private_leaf(l);
  });
  // PAMT entries (A7) owned by this TD's TDR, and the TDR's own entry (owner field 0), in frame
  // order (the PAMT is stored unordered).
  struct Entry {
    Pfn base;
    PageSize level;
    PageType type;
  };
  std::vector<Entry> entries;
  const Pfn tdr_pfn = hpa_to_pfn(tdr_);
  m.pamt().for_each_assigned([&](Pfn base, PageSize level, const PamtEntry& e) {
    if ((e.type() == PageType::kTdr && base == tdr_pfn) ||
        (e.type() != PageType::kTdr && e.owner() == tdr_pfn))
      entries.push_back({base, level, e.type()});
  });
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.base < b.base; });
  const Pfn sept_root = hpa_to_pfn(info->sept_root);
  for (const Entry& e : entries) {
    kvm::OwnedFramesInfo o;
    o.first = e.base;
    o.count = frames_of(e.level);
    o.type = name_of(e.type);
    o.control = e.type != PageType::kReg;
    switch (e.type) {
      case PageType::kReg:
        o.role = "TD private page";
        break;
      case PageType::kTdr:
        o.role = "TD root (TDR)";
        break;
      case PageType::kTdcx:
        o.role = e.base == sept_root ? "TDCS page, S-EPT root" : "TDCS/TDVPX page";
        break;
      case PageType::kTdvpr:
        o.role = "vCPU root (TDVPR)";
        break;
      case PageType::kEpt:
        o.role = "S-EPT page";
        break;
      default:
        o.role = "";
        break;
    }
    v.owned_frames(o);
  }
}

bool KvmTdxBackend::ensure_entered(Vm& vm, VcpuTd& v, std::string* why) {
  auto info = host_.module().vcpu_info(v.tdvpr);
  if (info && info->in_td) return true;
  // tdx_vcpu_enter: no TD entry while a zap retries with no vCPUs (wait_for_sept_zap, A5).
  if (spin_while(vm, [&] { return wait_for_sept_zap_; })) ++host_.stats().enter_waits;
  ++host_.stats().vp_enters;
  TdxResult r = charged(vm, host_.module().vp_enter(v.tdvpr, v.id), "TDH.VP.ENTER", kNoArg, -1,
                        v.tdvpr.value());
  // VP.ENTER takes the epoch lock SHARED (A6): BUSY while a TRACK holds it; KVM re-enters.
  while (is_busy_class(r.status) && vm.kvm().yield(Cycles(host_.glue().spin_cycles))) {
    ++host_.stats().enter_waits;
    ++host_.stats().vp_enters;
    r = charged(vm, host_.module().vp_enter(v.tdvpr, v.id), "TDH.VP.ENTER", kNoArg, -1,
                v.tdvpr.value());
  }
  if (!r.ok()) {
    if (why) *why = "TDH.VP.ENTER failed: " + std::string(status_name(r.status));
    return false;
  }
  // The module did INVEPT for the S-EPT (A6): the vCPU's cached translations go.
  if (r.flush_tlb && v.vcpu) v.vcpu->flush_tlb();
  return true;
}

void KvmTdxBackend::kick_all(Vm& vm) {
  // "Kick" (KVM_REQ_OUTSIDE_GUEST_MODE, an IPI KVM waits for) is a TD exit of every vCPU that
  // is in; each re-enters on its next exit handling. A vCPU in the middle of a TDCALL takes the
  // IPI only when the TDCALL retires: KVM waits for it (with a timed shell); without one the
  // call is completed here, which is the order the IPI imposes.
  for (auto& v : vcpus_) {
    if (v.inflight) {
      ++host_.stats().kick_waits;
      spin_while(vm, [&] { return v.inflight != nullptr; });
      if (v.inflight) {
        v.completed_early = host_.module().complete(std::move(*v.inflight));
        v.inflight = nullptr;
      }
    }
    auto info = host_.module().vcpu_info(v.tdvpr);
    if (!info || !info->in_td) continue;
    (void)charged(vm, host_.module().td_exit(v.tdvpr), "TD_EXIT", kNoArg, -1, v.tdvpr.value());
    ++host_.stats().vcpu_kicks;
    // KVM re-enters a kicked vCPU with TDH.VP.ENTER, which does INVEPT when the TD epoch moved
    // since the vCPU last ran (A6.1): after a TRACK it cannot translate through a stale private
    // entry again. The model's vCPU goes on running guest code and re-enters only at its next
    // private fault, so the flush that entry does is applied here, when the epoch has moved
    // (without it a kicked vCPU could use a removed page when KVM skips its own flush).
    const auto td = host_.module().td_info(tdr_);
    if (v.vcpu && td && td->td_epoch != info->vcpu_epoch) v.vcpu->flush_tlb();
  }
}

template <class B>
TdxResult KvmTdxBackend::in_flight(Vm& vm, VcpuTd* v, B&& begin, std::string_view leaf,
                                   uint64_t gpa, int level, uint64_t hpa, bool catch_up) {
  kvm::Kvm& k = vm.kvm();
  // Catch up first (a vCPU hands over the time it ran ahead): the call takes its locks at this
  // thread's own time, so temporal decoupling cannot hide an overlap.
  if (catch_up) (void)k.yield(Cycles(0));
  TdxTicket t = begin();
  const Cycles held = t.cost();
  if (v) {
    v->completed_early.reset();
    v->inflight = &t;
  }
  const bool passed = k.yield(held);  // the locks stay held while the call runs
  if (v) v->inflight = nullptr;
  TdxResult r;
  if (v && v->completed_early) {
    r = *v->completed_early;
    v->completed_early.reset();
  } else {
    r = host_.module().complete(std::move(t));
  }
  return charged(vm, r, leaf, gpa, level, hpa, -1, passed ? held : Cycles(0));
}

template <class C>
bool KvmTdxBackend::spin_while(Vm& vm, C&& cond) {
  bool waited = false;
  while (cond()) {
    if (!vm.kvm().yield(Cycles(host_.glue().spin_cycles))) break;
    waited = true;
  }
  return waited;
}

void KvmTdxBackend::wait_for_zap(Vm& vm) {
  if (spin_while(vm, [&] { return zapping_ != 0; })) ++host_.stats().fault_waits;
}

namespace {
// mmu_lock held for write over a removal or a DEMOTE (zapping_ counts them; A5).
struct ZapGuard {
  unsigned& n;
  explicit ZapGuard(unsigned& c) : n(c) { ++n; }
  ~ZapGuard() { --n; }
  ZapGuard(const ZapGuard&) = delete;
  ZapGuard& operator=(const ZapGuard&) = delete;
};
}  // namespace

template <class B>
TdxResult KvmTdxBackend::with_no_vcpus(Vm& vm, std::string_view leaf, uint64_t gpa, int level,
                                       B&& begin) {
  TdxResult r = in_flight(vm, nullptr, begin, leaf, gpa, level);
  if (is_busy_class(r.status)) {
    // tdh_do_no_vcpus (A5): no TD entry from now, kick every vCPU (waiting for the IPIs), retry
    // once; with no vCPU inside the retry is expected to succeed.
    ++host_.stats().busy_retries;
    wait_for_sept_zap_ = true;
    kick_all(vm);
    r = in_flight(vm, nullptr, begin, leaf, gpa, level);
    wait_for_sept_zap_ = false;
  }
  return r;
}

// ============================================================================================
// VM and vCPU creation (A10.1)

Status KvmTdxBackend::vm_init(Vm& vm) {
  TdxModule& m = host_.module();
  auto hk = host_.alloc_hkid();
  if (!hk) return Errno::kENOSPC;  // tdx_guest_keyid_alloc: ida_alloc_range -> -ENOSPC
  auto tdr = alloc_frame(vm);
  if (!tdr.ok()) {
    host_.free_hkid(*hk);
    return tdr.error();
  }
  TdxResult r = charged(vm, m.mng_create(*tdr, *hk, vm.principal()), "TDH.MNG.CREATE", kNoArg, -1,
                        tdr->value(), *hk);
  if (!r.ok()) {
    vm.frames().free(hpa_to_pfn(*tdr));
    host_.free_hkid(*hk);
    return to_errno(r);
  }
  td_created_ = true;
  tdr_ = *tdr;
  vm_ = &vm;
  hkid_ = *hk;
  for (unsigned p = 0; p < m.config().num_packages; ++p)
    if (r = charged(vm, m.mng_key_config(tdr_, p), "TDH.MNG.KEY.CONFIG", kNoArg, -1, tdr_.value());
        !r.ok())
      return to_errno(r);
  for (unsigned i = 0; i < m.config().num_tdcs_pages; ++i) {
    auto page = alloc_frame(vm);
    if (!page.ok()) return page.error();
    if (r = charged(vm, m.mng_addcx(tdr_, *page), "TDH.MNG.ADDCX", kNoArg, -1, page->value());
        !r.ok()) {
      vm.frames().free(hpa_to_pfn(*page));
      return to_errno(r);
    }
    tdcs_.push_back(*page);
  }
  TdParams params;
  params.attributes = options_.sept_ve_disable ? kTdAttrSeptVeDisable : 0;
  params.max_vcpus = host_.glue().max_vcpus;
  params.sept_levels = 4;  // GPAW 48: SHARED = bit 47 (A1)
  if (r = charged(vm, m.mng_init(tdr_, params), "TDH.MNG.INIT", kNoArg, -1, tdr_.value()); !r.ok())
    return to_errno(r);
  const auto info = m.td_info(tdr_);
  shared_mask_ = info->shared_bit.value();
  sept_levels_ = info->sept_levels;
  return {};
}

Status KvmTdxBackend::vcpu_create(Vm& vm, kvm::Vcpu& vcpu) {
  if (!td_created_) return Errno::kEINVAL;
  if (finalized_) return Errno::kEINVAL;  // TDH.VP.CREATE is refused once RUNNABLE; say so early
  TdxModule& m = host_.module();
  VcpuTd t;
  t.id = vcpu.id();
  t.vcpu = &vcpu;
  auto tdvpr = alloc_frame(vm);
  if (!tdvpr.ok()) return tdvpr.error();
  TdxResult r = charged(vm, m.vp_create(tdr_, *tdvpr), "TDH.VP.CREATE", kNoArg, -1, tdvpr->value());
  if (!r.ok()) {
    vm.frames().free(hpa_to_pfn(*tdvpr));
    return to_errno(r);
  }
  t.tdvpr = *tdvpr;
  Status st;
  for (unsigned i = 1; i < m.config().num_tdvps_pages && st.ok(); ++i) {
    auto page = alloc_frame(vm);
    if (!page.ok()) {
      st = page.error();
      break;
    }
    if (r = charged(vm, m.vp_addcx(t.tdvpr, *page), "TDH.VP.ADDCX", kNoArg, -1, page->value());
        !r.ok()) {
      vm.frames().free(hpa_to_pfn(*page));
      st = to_errno(r);
      break;
    }
    t.tdvpx.push_back(*page);
  }
  if (st.ok())
    if (r = charged(vm, m.vp_init(t.tdvpr), "TDH.VP.INIT", kNoArg, -1, t.tdvpr.value()); !r.ok())
      st = to_errno(r);
  vcpus_.push_back(std::move(t));  // its pages are the TD's now: reclaimed at teardown
  return st;
}

Status KvmTdxBackend::init_mem_page(Vm& vm, Gfn gfn, Hpa source, bool measure) {
  if (!td_created_ || finalized_) return Errno::kEINVAL;
  if (mirror_.count(gfn.value())) return Errno::kEEXIST;
  // kvm_gmem_populate: the range must be private and in a guest_memfd-backed slot (§6.6).
  if (!vm.mem_is_private(gfn)) return Errno::kEINVAL;
  kvm::Memslot* slot = vm.memslots().find_gfn(gfn);
  if (!slot || !slot->has_gmem() || !slot->gmem.file) return Errno::kEINVAL;
  auto pfn = slot->gmem.file->populate_get_pfn(slot->id, gfn, slot->base_gfn, slot->gmem.pgoff);
  if (!pfn.ok()) return pfn.error();
  const Gpa gpa = gfn_to_gpa(gfn);
  if (Status st = ensure_sept(vm, gpa); !st.ok()) return st;
  TdxModule& m = host_.module();
  TdxResult r = charged(vm, m.mem_page_add(tdr_, gpa, pfn_to_hpa(pfn->pfn), source),
                        "TDH.MEM.PAGE.ADD", gpa.value(), 0, pfn_to_hpa(pfn->pfn).value());
  if (!r.ok()) return to_errno(r);
  mirror_[gfn.value()] = pfn->pfn;
  ++pages_added_;
  ++host_.stats().pages_added;
  if (measure) {
    // tdx_gmem_post_populate with KVM_TDX_MEASURE_MEMORY_REGION: TDH.MR.EXTEND per 256 B chunk.
    for (uint64_t off = 0; off < kPageBytes; off += 256) {
      r = charged(vm, m.mr_extend(tdr_, Gpa(gpa.value() + off)), "TDH.MR.EXTEND",
                  gpa.value() + off);
      if (!r.ok()) return to_errno(r);
      ++host_.stats().mr_extends;
    }
  }
  (void)slot->gmem.file->mark_uptodate(slot->gmem_index(gfn));
  return {};
}

std::optional<std::string> KvmTdxBackend::mrtd_hex() const {
  if (!td_created_ || !finalized_) return std::nullopt;
  const auto info = host_.module().td_info(tdr_);
  if (!info) return std::nullopt;
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (uint8_t b : info->mrtd) {
    s += hex[b >> 4];
    s += hex[b & 15];
  }
  return s;
}

Status KvmTdxBackend::finalize(Vm& vm) {
  if (!td_created_) return Errno::kEINVAL;
  const TdxResult r =
      charged(vm, host_.module().mr_finalize(tdr_), "TDH.MR.FINALIZE", kNoArg, -1, tdr_.value());
  if (!r.ok()) return to_errno(r);
  finalized_ = true;
  vm.pre_fault_allowed = true;  // kvm->arch.pre_fault_allowed after KVM_TDX_FINALIZE_VM (§9)
  return {};
}

Status KvmTdxBackend::mem_enc_ioctl(Vm& vm, HostMm& mm, kvm::kvm_memory_encrypt_cmd& cmd) {
  switch (cmd.id) {
    case KVM_TDX_INIT_MEM_REGION: {
      // tdx_vcpu_init_mem_region: only before finalisation, only the MEASURE flag, page-aligned
      // source and GPA, at least one page, no wrap, both ends private GPAs (shared bit clear).
      if (!td_created_ || finalized_) return Errno::kEINVAL;
      if (cmd.flags & ~KVM_TDX_MEASURE_MEMORY_REGION) return Errno::kEINVAL;
      if (!cmd.data) return Errno::kEFAULT;
      auto& region = *static_cast<kvm_tdx_init_mem_region*>(cmd.data);
      const uint64_t bytes = region.nr_pages << kPageShift;
      if ((region.source_addr | region.gpa) & (kPageBytes - 1) || !region.nr_pages ||
          region.nr_pages > (~uint64_t{0} >> kPageShift) || region.gpa + bytes <= region.gpa ||
          ((region.gpa | (region.gpa + bytes - 1)) & shared_mask_))
        return Errno::kEINVAL;
      // The region is advanced page by page, so that a caller can resume after an error.
      while (region.nr_pages) {
        auto src = mm.get_user_page(Hva(region.source_addr));  // get_user_pages_fast
        if (!src.ok()) return Errno::kEFAULT;
        if (Status st = init_mem_page(vm, gpa_to_gfn(Gpa(region.gpa)),
                                      pfn_to_hpa(src->pfn_for(Hva(region.source_addr))),
                                      cmd.flags & KVM_TDX_MEASURE_MEMORY_REGION);
            !st.ok())
          return st;
        region.source_addr += kPageBytes;
        region.gpa += kPageBytes;
        --region.nr_pages;
      }
      return {};
    }
    case KVM_TDX_FINALIZE_VM:
      // tdx_td_finalize: TDH.MR.FINALIZE once, before any vCPU runs.
      if (!td_created_ || finalized_) return Errno::kEINVAL;
      return finalize(vm);
    default:
      return Errno::kEINVAL;
  }
}

// ============================================================================================
// Private mappings (A10.2, A10.3)

Result<Cycles> KvmTdxBackend::set_external_spte(Vm& vm, Gfn gfn, Pfn pfn, PageSize size, Perms) {
  if (size == PageSize::k1G || (size == PageSize::k2M && !options_.huge_private))
    return Errno::kEINVAL;
  if (!td_created_) return Errno::kEIO;
  // The fault path holds mmu_lock (for read): it waits for a zap holding it for write (A5),
  // before it looks at the mirror.
  wait_for_zap(vm);
  if (size == PageSize::k2M) {
    if (auto it = mirror_2m_.find(gfn.value()); it != mirror_2m_.end())
      return it->second == pfn ? Result<Cycles>(Cycles(0)) : Errno::kEEXIST;
    // Smaller leaves (or their S-EPT page) under it: KVM falls back to 4 KiB (no PROMOTE here).
    if (sept_pages_.count({1u, gfn_to_gpa(gfn).value()})) return Errno::kEEXIST;
  } else {
    if (auto it = mirror_2m_.find(gfn.align_down(PageSize::k2M).value()); it != mirror_2m_.end()) {
      // A 2 MiB leaf maps it already: a spurious fault.
      return it->second + (gfn - gfn.align_down(PageSize::k2M)) == pfn ? Result<Cycles>(Cycles(0))
                                                                       : Errno::kEEXIST;
    }
    if (auto it = mirror_.find(gfn.value()); it != mirror_.end()) {
      // Already mapped: a spurious fault (the mirror says so, as KVM's mirror SPTE would).
      if (it->second == pfn) return Cycles(0);
      return Errno::kEEXIST;
    }
  }
  TdxModule& m = host_.module();
  const Gpa gpa = gfn_to_gpa(gfn);
  const unsigned leaf_level = size == PageSize::k2M ? 1u : 0u;
  // SEPT.ADD down to the level holding the leaf (A10.2): levels 3..1 for 4 KiB, 3..2 for 2 MiB.
  if (Status st = ensure_sept(vm, gpa, leaf_level); !st.ok()) return st.error();
  // Runtime: PAGE.AUG (PENDING; the guest accepts). The initial image goes through
  // init_mem_page (PAGE.ADD) instead; AUG is refused by nothing here, the module decides.
  const TdxResult r =
      charged(vm, m.mem_page_aug(tdr_, gpa, size, pfn_to_hpa(pfn)), "TDH.MEM.PAGE.AUG", gpa.value(),
              static_cast<int>(leaf_level), pfn_to_hpa(pfn).value());
  if (!r.ok()) return to_errno(r);
  if (size == PageSize::k2M) {
    mirror_2m_[gfn.value()] = pfn;
    ++host_.stats().private_maps_2m;
  } else {
    mirror_[gfn.value()] = pfn;
    ++host_.stats().private_maps;
  }
  return Cycles(0);  // the module's cost is already on KVM's meter
}

Status KvmTdxBackend::ensure_sept(Vm& vm, Gpa gpa, unsigned leaf_level) {
  TdxModule& m = host_.module();
  for (unsigned l = sept_levels_ - 1; l >= leaf_level + 1; --l) {
    const uint64_t span = uint64_t{1} << (kPageShift + 9 * l);
    const auto key = std::make_pair(l, gpa.value() & ~(span - 1));
    if (sept_pages_.count(key)) continue;
    auto page = alloc_frame(vm);
    if (!page.ok()) return page.error();
    const TdxResult r = charged(vm, m.mem_sept_add(tdr_, Gpa(key.second), l, *page),
                                "TDH.MEM.SEPT.ADD", key.second, static_cast<int>(l), page->value());
    if (!r.ok()) {
      vm.frames().free(hpa_to_pfn(*page));
      return to_errno(r);
    }
    sept_pages_[key] = *page;
    ++host_.stats().sept_pages_added;
  }
  return {};
}

bool KvmTdxBackend::zap_one(Vm& vm, Gfn gfn, Pfn pfn, PageSize size) {
  TdxModule& m = host_.module();
  const Gpa gpa = gfn_to_gpa(gfn);
  // KVM holds mmu_lock for write over the whole removal (A5): another zap waits for this one,
  // and so do faults (private_fault, set_external_spte) and DEMOTEs.
  wait_for_zap(vm);
  ZapGuard zapping(zapping_);
  const int level = size == PageSize::k2M ? 1 : 0;
  TdxResult r = with_no_vcpus(vm, "TDH.MEM.RANGE.BLOCK", gpa.value(), level, [&] {
    return m.begin_mem_range_block(tdr_, gpa, static_cast<unsigned>(level));
  });
  if (r.is_error()) return false;
  // tdx_track: TRACK, then kick every vCPU so that none runs in the previous epoch (A6).
  r = with_no_vcpus(vm, "TDH.MEM.TRACK", kNoArg, -1, [&] { return m.begin_mem_track(tdr_); });
  if (r.is_error()) return false;
  kick_all(vm);
  r = with_no_vcpus(vm, "TDH.MEM.PAGE.REMOVE", gpa.value(), level,
                    [&] { return m.begin_mem_page_remove(tdr_, gpa, size); });
  if (r.is_error()) return false;
  for (uint64_t i = 0; i < frames_of(size); ++i) {
    const Hpa page = pfn_to_hpa(pfn + i);
    r = charged(vm, m.phymem_page_wbinvd(m.with_hkid(page, hkid_)), "TDH.PHYMEM.PAGE.WBINVD",
                kNoArg, -1, m.with_hkid(page, hkid_).value());
    if (r.is_error()) return false;
    clear_page(vm, page);
  }
  ++(size == PageSize::k2M ? host_.stats().private_zaps_2m : host_.stats().private_zaps);
  return true;
}

bool KvmTdxBackend::demote_2m(Vm& vm, Gfn head) {
  // KVM splits under mmu_lock held for write (A5), like a removal: wait for a zap in progress
  // (it may have removed or demoted this leaf meanwhile), then hold it.
  wait_for_zap(vm);
  auto it = mirror_2m_.find(head.value());
  if (it == mirror_2m_.end()) return false;
  ZapGuard zapping(zapping_);
  TdxModule& m = host_.module();
  const Gpa gpa = gfn_to_gpa(head);
  // A runnable TD needs the leaf blocked and the block tracked before DEMOTE (A2.3). Each runs
  // in flight, with KVM's BUSY handling (tdh_do_no_vcpus), as the 4 KiB removal's calls do.
  TdxResult r = with_no_vcpus(vm, "TDH.MEM.RANGE.BLOCK", gpa.value(), 1,
                              [&] { return m.begin_mem_range_block(tdr_, gpa, 1); });
  if (r.is_error()) return false;
  r = with_no_vcpus(vm, "TDH.MEM.TRACK", kNoArg, -1, [&] { return m.begin_mem_track(tdr_); });
  if (r.is_error()) return false;
  kick_all(vm);
  auto page = alloc_frame(vm);
  if (!page.ok()) return false;
  r = with_no_vcpus(vm, "TDH.MEM.PAGE.DEMOTE", gpa.value(), 1,
                    [&] { return m.begin_mem_page_demote(tdr_, gpa, PageSize::k2M, *page); });
  if (r.is_error()) {
    vm.frames().free(hpa_to_pfn(*page));
    return false;
  }
  sept_pages_[{1u, gpa.value()}] = *page;
  ++host_.stats().sept_pages_added;
  ++host_.stats().demotes;
  for (uint64_t i = 0; i < kEntriesPerTable; ++i) mirror_[head.value() + i] = it->second + i;
  mirror_2m_.erase(it);
  vm.note_changed(kvm::GfnRange{head, head + kEntriesPerTable});
  return true;
}

Result<Cycles> KvmTdxBackend::remove_external_spte(Vm& vm, Gfn gfn, PageSize size) {
  wait_for_zap(vm);  // mmu_lock: the mirror is looked up after a zap in progress is done
  if (size == PageSize::k2M) {
    auto it = mirror_2m_.find(gfn.value());
    if (it == mirror_2m_.end()) return Errno::kENOENT;
    if (!zap_one(vm, gfn, it->second, PageSize::k2M)) return Errno::kEIO;
    mirror_2m_.erase(it);
    vm.note_changed(kvm::GfnRange{gfn, gfn + kEntriesPerTable});
    return Cycles(0);
  }
  if (size != PageSize::k4K) return Errno::kEINVAL;
  if (mirror_2m_.count(gfn.align_down(PageSize::k2M).value()) &&
      !demote_2m(vm, gfn.align_down(PageSize::k2M)))
    return Errno::kEIO;
  auto it = mirror_.find(gfn.value());
  if (it == mirror_.end()) return Errno::kENOENT;
  if (!zap_one(vm, gfn, it->second)) return Errno::kEIO;
  mirror_.erase(it);
  vm.note_changed(kvm::GfnRange{gfn, gfn + 1});
  return Cycles(0);
}

bool KvmTdxBackend::zap_private_range(Vm& vm, kvm::GfnRange r) {
  bool any = false;
  // mmu_lock for write: wait for another zap first, so that the mirror walked below is current
  // (each zap_one/demote_2m then holds it while its calls are in flight).
  wait_for_zap(vm);
  // 2 MiB leaves first: one the range covers goes whole; one it cuts is demoted (A10.3; KVM's
  // TDX huge-page series splits before a partial zap), its 4 KiB pages then go below.
  const uint64_t first_head = r.start.align_down(PageSize::k2M).value();
  for (auto it = mirror_2m_.lower_bound(first_head);
       it != mirror_2m_.end() && it->first < r.end.value();) {
    const Gfn head(it->first);
    const bool whole = r.start <= head && head + kEntriesPerTable <= r.end;
    if (whole) {
      if (zap_one(vm, head, it->second, PageSize::k2M)) {
        vm.note_changed(kvm::GfnRange{head, head + kEntriesPerTable});
        it = mirror_2m_.erase(it);
        any = true;
      } else {
        ++it;
      }
    } else {
      ++it;  // demote_2m erases it
      if (!demote_2m(vm, head)) continue;
      any = true;
    }
  }
  for (auto it = mirror_.lower_bound(r.start.value());
       it != mirror_.end() && it->first < r.end.value();) {
    const Gfn gfn(it->first);
    if (zap_one(vm, gfn, it->second)) {
      it = mirror_.erase(it);
      vm.note_changed(kvm::GfnRange{gfn, gfn + 1});
      any = true;
    } else {
      // KVM_BUG_ON in Linux: the page stays the TD's (teardown reclaims it).
      ++it;
    }
  }
  return any;
}

Stage2Lookup KvmTdxBackend::lookup_private(const Vm&, Gpa gpa) const {
  Stage2Lookup lk;
  if (!td_created_) return lk;
  const SeptLookup s = host_.module().sept_lookup(tdr_, gpa);
  if (!s.found || !s.entry.leaf || !s.entry.present()) return lk;
  lk.kind = EntryKind::kLeaf;
  lk.level = s.entry.level;
  lk.base = gpa.align_down(static_cast<PageSize>(s.entry.level));
  lk.raw = s.entry.raw;
  lk.pte.kind = EntryKind::kLeaf;
  lk.pte.valid = true;
  lk.pte.pfn = s.entry.pfn;
  lk.pte.perms = kPermsRWX;
  return lk;
}

// Transition coverage (models/kvm/kvm_machines.h): an AUGed PENDING leaf is a private mapping.
bool KvmTdxBackend::has_private_leaf(const Vm&, Gfn gfn) const {
  if (!td_created_) return false;
  const SeptLookup s = host_.module().sept_lookup(tdr_, gfn_to_gpa(gfn));
  return s.found && s.entry.leaf && s.entry.state != SeptState::kFree &&
         s.entry.state != SeptState::kRemoved;
}

// ============================================================================================
// The vCPU side: EPT violations, #VE, #MC (A8, A9)

KvmTdxBackend::PrivateFaultAction KvmTdxBackend::private_fault(Vm& vm, kvm::Vcpu& vcpu,
                                                               const VmExit& e) {
  PrivateFaultAction a;
  VcpuTd* v = vcpu_td(vcpu);
  if (!v) return a;
  if (vm_dead_) {
    // kvm_vm_dead: every KVM_RUN of the VM fails from then on (-EIO).
    a.kind = PrivateFaultAction::kStop;
    a.reason = "the VM is dead (an earlier guest access before accepting): KVM_RUN fails with -EIO";
    return a;
  }
  TdxModule& m = host_.module();
  if (!ensure_entered(vm, *v, &a.reason)) {
    a.kind = PrivateFaultAction::kStop;
    return a;
  }
  const TdxResult r = charged(vm, m.ept_violation(v->tdvpr, e.gpa, e.write), "EPT_VIOLATION",
                              e.gpa.value(), -1, v->tdvpr.value());
  char buf[200];
  switch (r.outcome) {
    case GuestOutcome::kInjectVe:
      // #VE: the guest kernel's handler (TDG.VP.VEINFO.GET, then its policy: ACCEPT).
      if (guest_ && guest_->on_ve(*this, vcpu.id(), Gpa(e.gpa.value() & ~(kPageBytes - 1)))) {
        a.kind = PrivateFaultAction::kRetry;
        return a;
      }
      a.kind = PrivateFaultAction::kStop;
      std::snprintf(
          buf, sizeof buf, "#VE for the PENDING private page at gpa 0x%" PRIx64 " and %s",
          e.gpa.value(),
          guest_ ? "the guest kernel did not accept it" : "no guest kernel model handles #VE");
      a.reason = buf;
      return a;
    case GuestOutcome::kInjectPfRsvd:
      a.kind = PrivateFaultAction::kStop;
      a.reason =
          "#PF(RSVD) injected for a GPA above the SHARED bit (no guest kernel model handles it)";
      return a;
    case GuestOutcome::kTdExit:
      if (r.exit.eeq == EeqType::kPendingEptViolation) {
        // SEPT_VE_DISABLE: the guest touched a page it had not accepted. KVM treats it as fatal
        // (tdx_handle_ept_violation: "Guest access before accepting", kvm_vm_dead, -EIO).
        ++host_.stats().pending_access_fatal;
        vm_dead_ = true;
        a.kind = PrivateFaultAction::kStop;
        std::snprintf(buf, sizeof buf,
                      "guest access before accepting gpa 0x%" PRIx64
                      " (PENDING, SEPT_VE_DISABLE set): KVM marks the VM dead (-EIO)",
                      e.gpa.value());
        a.reason = buf;
      }
      // Otherwise KVM's fault path (FREE -> SEPT.ADD + AUG). It takes mmu_lock, so it waits for
      // a zap in progress (a BLOCKED page); then it sees the page gone and maps a new one (A5).
      if (a.kind != PrivateFaultAction::kStop) wait_for_zap(vm);
      return a;
    default:
      return a;
  }
}

TdxResult KvmTdxBackend::guest_accept(unsigned vcpu_id, Gpa gpa, PageSize size) {
  TdxResult last;
  last.status = with_operand(status::kOperandInvalid, operand::kRcx);
  VcpuTd* v = nullptr;
  for (auto& t : vcpus_)
    if (t.id == vcpu_id) v = &t;
  if (!v || !vm_ || !td_created_) return last;
  Vm& vm = *vm_;
  TdxModule& m = host_.module();
  const int level = size == PageSize::k2M ? 1 : 0;
  // Bounded: each round trip either accepts, or lets KVM map/demote, or retries an interrupted
  // 2 MiB accept; a 2 MiB accept needs at most 512 interrupted rounds. BUSY goes back to the
  // guest kernel, which retries (TdxGuestAbi).
  for (unsigned round = 0; round < 4 * kEntriesPerTable + 8; ++round) {
    std::string why;
    // Back in the TD and caught up with this vCPU's own time before the TDCALL (a kick may take
    // it out again while it catches up; a few rounds at most, then the TDCALL decides).
    for (int r = 0; r < 8; ++r) {
      if (!ensure_entered(vm, *v, &why)) return last;
      if (!vm.kvm().yield(Cycles(0))) break;  // no timed shell: nothing else runs
      if (auto info = m.vcpu_info(v->tdvpr); info && info->in_td) break;
    }
    ++host_.stats().guest_accepts;
    // An interrupt is pending once accept_interrupt_cycles of ACCEPT work have passed since the
    // last one the guest took: a 2 MiB ACCEPT then zeroes one chunk and returns interrupted (its
    // ACCEPT_COUNTER saved), to be re-issued (A8). The guest takes the interrupt when a TDCALL
    // returns to it (interrupted or not); across an exit to KVM it stays pending.
    const uint64_t every = options_.accept_interrupt_cycles;
    const bool irq = every && accept_work_ >= every;
    // In flight: a host BLOCK/DEMOTE/REMOVE meeting its entry lock gets BUSY and sets TDHP (A5);
    // a kick waits for it to retire.
    last = in_flight(
        vm, v, [&] { return m.begin_tdg_mem_page_accept(v->tdvpr, gpa, size, irq); },
        "TDG.MEM.PAGE.ACCEPT", gpa.value(), level, kNoArg, /*catch_up=*/false);
    accept_work_ += last.cost.count();
    if (irq && last.outcome != GuestOutcome::kTdExit) accept_work_ = 0;
    if (is_busy_class(last.status)) {
      // A host SEAMCALL holds the entry (BUSY) or won it (BUSY_HOST_PRIORITY): the TDCALL returns
      // to the guest, whose kernel retries (TdxGuestKernel::accept_one).
      ++host_.stats().guest_accept_busy;
      return last;
    }
    if (last.outcome == GuestOutcome::kInterrupted) continue;
    if (last.outcome != GuestOutcome::kTdExit) return last;
    if (last.exit.reason != TdExitReason::kEptViolation || last.exit.eeq != EeqType::kAccept)
      return last;
    // The ACCEPT exited to KVM (tdx_handle_ept_violation with the accept level as the fault's
    // maximum): a 2 MiB PENDING leaf under a 4 KiB request is demoted; otherwise the fault
    // path maps the page (SEPT.ADD, AUG). Both take mmu_lock: they wait for a zap holding it
    // (the page may be BLOCKED by one in flight). Then the guest re-executes the TDCALL.
    ++host_.stats().accept_exits;
    wait_for_zap(vm);
    const Gfn gfn = gpa_to_gfn(gpa);
    if (size == PageSize::k4K && mirror_2m_.count(gfn.align_down(PageSize::k2M).value())) {
      if (!demote_2m(vm, gfn.align_down(PageSize::k2M))) return last;
      continue;
    }
    kvm::PageFault f;
    f.gfn = gfn;
    f.write = true;  // KVM treats every S-EPT violation as a write
    f.is_private = true;
    f.max_level = size;
    kvm::FaultOutcome o;
    unsigned tries = 0;
    do {
      o = vm.page_fault(f);
    } while (o.kind == kvm::FaultOutcome::kRetry && ++tries < 8);
    if (o.kind != kvm::FaultOutcome::kFixed) return last;
  }
  return last;
}

std::optional<ExitAction> KvmTdxBackend::machine_check(Vm& vm, kvm::Vcpu& vcpu,
                                                       const MachineCheck& mc) {
  VcpuTd* v = vcpu_td(vcpu);
  if (!v) return std::nullopt;
  ++host_.stats().machine_checks;
  (void)charged(vm, host_.module().machine_check(v->tdvpr), "MACHINE_CHECK", mc.gpa.value(), -1,
                mc.hpa.value());
  ExitAction a;
  a.kind = ExitAction::kStop;
  char m[200];
  std::snprintf(m, sizeof m,
                "%s vCPU %u: machine check at gpa 0x%" PRIx64 " (hpa 0x%" PRIx64
                "): the TD is FATAL (TDX_NON_RECOVERABLE_TD)",
                vm.name().c_str(), vcpu.id(), mc.gpa.value(), mc.hpa.value());
  a.reason = m;
  return a;
}

// ============================================================================================
// TDG.VP.VMCALL<MapGPA> (A8, §10, §11)

kvm::HypercallDecode KvmTdxBackend::decode_hypercall(const Vm&, const VmExit& e) const {
  kvm::HypercallDecode d;
  if (e.nr != kTdvmcallMapGpa) return d;
  const uint64_t r12 = e.args[0], r13 = e.args[1];
  unsigned bit = 47;
  for (unsigned b = 0; b < 64; ++b)
    if (shared_mask_ == (uint64_t{1} << b)) bit = b;
  const uint64_t st = check_map_gpa(Gpa(r12), r13, bit);
  if (st != tdvmcall_status::kSuccess) {
    d.kind = kvm::HypercallDecode::kInvalid;
    d.guest_ret = st;
    return d;
  }
  d.kind = kvm::HypercallDecode::kConversion;
  d.req.gpa = Gpa(r12 & ~shared_mask_);  // args[0]: the GPA without the S bit
  d.req.npages = r13 >> kPageShift;
  d.req.to_private = !(r12 & shared_mask_);
  d.req.attrs_arg = d.req.to_private ? kvm::KVM_MAP_GPA_RANGE_ENCRYPTED : 0;
  return d;
}

void KvmTdxBackend::conversion_done(Vm&, kvm::Vcpu& vcpu, const kvm::HypercallDecode& d,
                                    uint64_t ret) {
  // The guest resumes after TDG.VP.VMCALL<MapGPA>: its kernel finishes the conversion.
  if (guest_)
    guest_->on_map_gpa_done(*this, vcpu.id(), d.req.gpa, d.req.npages << kPageShift,
                            d.req.to_private, ret);
}

// ============================================================================================
// Teardown (A10.4)

void KvmTdxBackend::teardown(Vm& vm) {
  if (!td_created_) return;
  TdxModule& m = host_.module();
  // VP.FLUSH on each vCPU's LP (after a TD exit if it is in).
  for (auto& v : vcpus_) {
    auto info = m.vcpu_info(v.tdvpr);
    if (!info) continue;
    if (info->in_td) (void)charged(vm, m.td_exit(v.tdvpr), "TD_EXIT", kNoArg, -1, v.tdvpr.value());
    if (info->lp >= 0)
      (void)charged(vm, m.vp_flush(v.tdvpr, static_cast<unsigned>(info->lp)), "TDH.VP.FLUSH",
                    kNoArg, -1, v.tdvpr.value());
  }
  (void)charged(vm, m.mng_vpflushdone(tdr_), "TDH.MNG.VPFLUSHDONE", kNoArg, -1, tdr_.value());
  // hkid_reuse = unsafe_no_flush: KVM skips the write-back (the HKID's lines stay cached).
  for (unsigned p = 0; host_.glue().hkid_reuse == HkidReuse::kFlush && p < m.config().num_packages;
       ++p) {
    TdxResult r = charged(vm, m.phymem_cache_wb(p, CacheWbCmd::kStart), "TDH.PHYMEM.CACHE.WB");
    while (r.code() == status::kInterruptedResumable)
      r = charged(vm, m.phymem_cache_wb(p, CacheWbCmd::kResume), "TDH.PHYMEM.CACHE.WB");
  }
  if (charged(vm, m.mng_key_freeid(tdr_), "TDH.MNG.KEY.FREEID", kNoArg, -1, tdr_.value(), hkid_)
          .ok()) {
    host_.free_hkid(hkid_);
    ++host_.stats().hkids_freed;
  }
  auto reclaim = [&](Hpa page, bool ours) {
    const TdxResult r = charged(vm, m.phymem_page_reclaim(page), "TDH.PHYMEM.PAGE.RECLAIM", kNoArg,
                                -1, page.value());
    if (!r.ok()) return false;  // still the module's: leaked (a checker sees it in the PAMT)
    ++host_.stats().pages_reclaimed;
    clear_page(vm, page);
    if (ours) vm.frames().free(hpa_to_pfn(page));
    return true;
  };
  // Private pages still mapped belong to guest_memfd (it frees them); S-EPT, TDVPS and TDCS
  // pages came from the VM's allocator; the TDR last (TDX_TD_ASSOCIATED_PAGES_EXIST before).
  for (const auto& [gfn, pfn] : mirror_) reclaim(pfn_to_hpa(pfn), false);
  mirror_.clear();
  for (const auto& [gfn, pfn] : mirror_2m_) {
    // One RECLAIM for the 2 MiB page (its PAMT entry is at 2 MiB); the host clears all of it.
    if (charged(vm, m.phymem_page_reclaim(pfn_to_hpa(pfn)), "TDH.PHYMEM.PAGE.RECLAIM", kNoArg, -1,
                pfn_to_hpa(pfn).value())
            .ok()) {
      ++host_.stats().pages_reclaimed;
      for (uint64_t i = 0; i < kEntriesPerTable; ++i) clear_page(vm, pfn_to_hpa(pfn + i));
    }
  }
  mirror_2m_.clear();
  for (auto it = sept_pages_.rbegin(); it != sept_pages_.rend(); ++it) reclaim(it->second, true);
  sept_pages_.clear();
  for (auto& v : vcpus_) {
    for (Hpa p : v.tdvpx) reclaim(p, true);
    reclaim(v.tdvpr, true);
  }
  vcpus_.clear();
  for (Hpa p : tdcs_) reclaim(p, true);
  tdcs_.clear();
  if (reclaim(tdr_, true)) ++host_.stats().tds_reclaimed;
  td_created_ = false;
}

// ============================================================================================

std::unique_ptr<kvm::KvmBackend> make_tdx_backend(TdxHost& host,
                                                  std::optional<TdxTdOptions> options) {
  return std::make_unique<KvmTdxBackend>(host, options ? *options : host.default_td_options());
}

namespace {

bool is_leaf_mapping_state(SeptState s) {
  switch (s) {
    case SeptState::kMapped:
    case SeptState::kBlocked:
    case SeptState::kBlockedW:
    case SeptState::kExportedBlockedW:
    case SeptState::kExportedDirty:
    case SeptState::kExportedDirtyBlockedW:
    case SeptState::kPending:
    case SeptState::kPendingBlocked:
    case SeptState::kPendingBlockedW:
    case SeptState::kPendingExportedBlockedW:
    case SeptState::kPendingExportedDirty:
    case SeptState::kPendingExportedDirtyBlockedW:
      return true;
    default:
      return false;
  }
}

// T2 (tdx-snp.md Part D): an S-EPT leaf in a mapped, pending or blocked state points to a page
// whose PAMT entry is PT_REG owned by this TD; an S-EPT non-leaf entry points to a PT_EPT page of
// this TD. Read from the module's real S-EPT pages and PAMT; the TDs are found through the VMs.
void check_t2(const kvm::CheckScope& s, std::vector<kvm::Violation>& out) {
  for (const auto& vmp : s.kvm.vms()) {
    const auto* be = dynamic_cast<const KvmTdxBackend*>(&vmp->backend());
    if (!be || be->tdr().value() == 0) continue;
    const std::vector<kvm::GfnRange>* dirty = s.dirty ? s.dirty(*vmp) : nullptr;
    if (dirty && dirty->empty()) continue;  // unchanged
    const TdxModule& m = be->host().module();
    const Hpa tdr = be->tdr();
    auto check = [&](Gpa gpa, const SeptEntry& e) {
      PageType want;
      if (e.leaf && is_leaf_mapping_state(e.state))
        want = PageType::kReg;
      else if (!e.leaf && (e.state == SeptState::kNlMapped || e.state == SeptState::kNlBlocked))
        want = PageType::kEpt;
      else
        return;
      const PamtLeaf pl = m.pamt_leaf(e.hpa());
      if (pl.entry.type() == want && pl.entry.owner() == hpa_to_pfn(tdr)) return;
      char buf[240];
      std::snprintf(
          buf, sizeof buf,
          "%s: S-EPT %s at gpa 0x%llx level %u points to frame 0x%llx whose PAMT entry is type %u "
          "owned by "
          "TDR frame 0x%llx (expected type %u owned by this TD's TDR 0x%llx)",
          vmp->name().c_str(), e.leaf ? "leaf" : "table",
          static_cast<unsigned long long>(gpa.value()), e.level,
          static_cast<unsigned long long>(e.pfn.value()), static_cast<unsigned>(pl.entry.type()),
          static_cast<unsigned long long>(pl.entry.owner().value()), static_cast<unsigned>(want),
          static_cast<unsigned long long>(hpa_to_pfn(tdr).value()));
      out.push_back({"T2", buf, vmp->name(), {gpa_to_gfn(gpa)}, {e.pfn}});
    };
    if (!dirty) {
      m.for_each_sept_entry(tdr, check);
      continue;
    }
    // Incremental: the entries on the walk to each changed GFN (its leaf and the table entries
    // above it), each once. A full check reads every entry.
    const auto info = m.td_info(tdr);
    if (!info || info->sept_levels == 0) continue;
    std::vector<uint64_t> seen;
    for (const kvm::GfnRange& r : *dirty)
      for (Gfn g = r.start; g < r.end; ++g)
        for (unsigned level = info->sept_levels; level-- > 0;) {
          const Gpa gpa = gfn_to_gpa(g);
          const SeptLookup l = m.sept_entry(tdr, gpa, level);
          if (!l.found || l.entry.level != level) break;  // the walk stopped above
          const uint64_t at = l.entry_hpa.value();
          if (std::find(seen.begin(), seen.end(), at) != seen.end()) {
            if (l.entry.leaf) break;
            continue;
          }
          if (seen.size() < 64) seen.push_back(at);
          check(Gpa(gpa.value() & ~((uint64_t{1} << (kPageShift + 9 * level)) - 1)), l.entry);
          if (l.entry.leaf) break;
        }
  }
}

// ---- T1, T3-T6 ----
// Each reads the module of `host` when the platform gave one, else that of the first TDX VM
// (tests; `cvmsim list` never runs a check).

const TdxModule* module_of(const kvm::CheckScope& s, const TdxHost* host) {
  if (host) return &host->module();
  for (const auto& vmp : s.kvm.vms())
    if (const auto* be = dynamic_cast<const KvmTdxBackend*>(&vmp->backend()))
      return &be->host().module();
  return nullptr;
}

std::string hx(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%" PRIx64, v);
  return b;
}

bool is_blocked_state(SeptState s) {
  switch (s) {
    case SeptState::kBlocked:
    case SeptState::kBlockedW:
    case SeptState::kExportedBlockedW:
    case SeptState::kExportedDirtyBlockedW:
    case SeptState::kPendingBlocked:
    case SeptState::kPendingBlockedW:
    case SeptState::kPendingExportedBlockedW:
    case SeptState::kPendingExportedDirtyBlockedW:
      return true;
    default:
      return false;
  }
}

bool is_pending_state(SeptState s) {
  switch (s) {
    case SeptState::kPending:
    case SeptState::kPendingBlocked:
    case SeptState::kPendingBlockedW:
    case SeptState::kPendingExportedBlockedW:
    case SeptState::kPendingExportedDirty:
    case SeptState::kPendingExportedDirtyBlockedW:
      return true;
    default:
      return false;
  }
}

// The pages a PAMT-based check must look at: those changed since it last ran (the PAMT's change
// journal), or every assigned one (full check, first run, or the journal overflowed).
struct PamtCursor {
  uint64_t seq = 0;
  bool primed = false;
  const TdxModule* module = nullptr;
  // True: `pages` holds the changed pages; false: the caller re-reads everything.
  bool changed(const kvm::CheckScope& s, const TdxModule& m,
               std::vector<std::pair<Pfn, PageSize>>& pages) {
    pages.clear();
    const bool incremental = !s.full && primed && module == &m;
    primed = true;
    module = &m;
    if (incremental)
      if (auto now = m.pamt().changes_since(seq, pages)) {
        seq = *now;
        return true;
      }
    seq = m.pamt().change_seq();
    pages.clear();
    return false;
  }
};

// T1: every 4 KiB frame of a TDMR has exactly one PAMT leaf, with one owner TDR. Checked per
// assigned entry: inside a TDMR, no assigned entry above or below it (one leaf), a page type
// the module hands out, the owner a live TD whose TDR page is PT_TDR (a TDR's owner field is 0);
// on a full check also each TD's CHLDCNT against the 4 KiB-equivalents the PAMT gives it.
void check_t1(PamtCursor& cur, const TdxHost* host, const kvm::CheckScope& s,
              std::vector<kvm::Violation>& out) {
  const TdxModule* m = module_of(s, host);
  if (!m) return;
  const Pamt& pamt = m->pamt();
  std::vector<std::pair<Pfn, PageSize>> pages;
  const bool incremental = cur.changed(s, *m, pages);
  if (!incremental)
    pamt.for_each_assigned(
        [&](Pfn base, PageSize level, const PamtEntry&) { pages.emplace_back(base, level); });
  std::map<uint64_t, uint64_t> owned;  // TDR frame -> 4 KiB-equivalents (full check)
  for (const auto& [base, level] : pages) {
    const PamtEntry e = pamt.entry(base, level);
    const PageType t = e.type();
    if (t == PageType::kNda || t == PageType::kRsvd) continue;
    const std::string where = "PAMT " + std::string(name_of(t)) + " entry of frame " +
                              hx(base.value()) + " (" + std::string(name_of(level)) + ")";
    auto bad = [&](const std::string& why) {
      out.push_back({"T1", where + " " + why, "", {}, {base}});
    };
    if (!pamt.covers_range(base, level)) bad("lies outside every TDMR");
    // Exactly one leaf: no assigned entry at a larger level covering it, none below it.
    for (PageSize up : {PageSize::k2M, PageSize::k1G}) {
      if (static_cast<unsigned>(up) <= static_cast<unsigned>(level)) continue;
      const PamtEntry pe = pamt.entry(base.align_down(up), up);
      if (pe.type() != PageType::kNda && pe.type() != PageType::kRsvd)
        bad("is covered by an assigned " + std::string(name_of(up)) +
            " entry too (two PAMT leaves for one frame)");
    }
    if (level == PageSize::k2M && pamt.assigned_4k_in_2m(base) != 0)
      bad("has assigned 4K entries inside it (two PAMT leaves for one frame)");
    switch (t) {
      case PageType::kReg:
      case PageType::kTdr:
      case PageType::kTdcx:
      case PageType::kTdvpr:
      case PageType::kEpt:
        break;
      default:
        bad("has page type " + std::to_string(e.pt) + ", which the module never assigns");
    }
    if (t == PageType::kTdr) {
      if (e.owner().value() != 0)
        bad("(a TDR) has owner " + hx(e.owner().value()) + " (a TDR's owner field is 0)");
      if (!m->td_info(pfn_to_hpa(base))) bad("is a TDR the module has no TD for");
      continue;
    }
    const PamtLeaf owner = pamt.leaf(e.owner());
    if (owner.entry.type() != PageType::kTdr || !m->td_info(pfn_to_hpa(e.owner())))
      bad("is owned by frame " + hx(e.owner().value()) + ", which is not the TDR of a live TD");
    if (!incremental) owned[e.owner().value()] += frames_of(level);
  }
  if (incremental) return;
  for (Hpa tdr : m->tds()) {
    const auto info = m->td_info(tdr);
    const uint64_t n = owned[hpa_to_pfn(tdr).value()];
    if (info && info->chldcnt != n)
      out.push_back({"T1",
                     "TD with TDR " + hx(tdr.value()) + " has CHLDCNT " +
                         std::to_string(info->chldcnt) + " but the PAMT gives it " +
                         std::to_string(n) + " 4K-equivalents",
                     "",
                     {},
                     {hpa_to_pfn(tdr)}});
  }
}

// T3 and T4 through their consequence in the TLBs: a vCPU inside the TD (TDH.VP.ENTER done, no TD
// exit since) translates a private GPA only through an S-EPT leaf that maps it to that frame in a
// guest-accessible state. T3: a translation whose leaf was REMOVEd, changed, or BLOCKED with its
// BEPOCH already tracked (every vCPU has left that epoch and flushes at entry) means the
// operation ran without BLOCK + TRACK. T4: a translation through a PENDING leaf means the guest
// used a page it never accepted (the walk must fault: #VE, or a TD exit with SEPT_VE_DISABLE).
// Also T4: a PENDING 4 KiB leaf whose frame holds TD-owned lines written by the TD (AUG does not
// write the page; only ACCEPT does, and it makes the leaf MAPPED).
void check_t3_t4(const char* which, const kvm::CheckScope& s, std::vector<kvm::Violation>& out) {
  const bool t3 = which[1] == '3';
  for (const auto& vmp : s.kvm.vms()) {
    const kvm::Vm& vm = *vmp;
    const auto* be = dynamic_cast<const KvmTdxBackend*>(&vm.backend());
    if (!be || !be->td_created()) continue;
    // Incremental: the GFN ranges that changed (nullptr: everything).
    const std::vector<kvm::GfnRange>* dirty = s.dirty ? s.dirty(vm) : nullptr;
    if (dirty && dirty->empty()) continue;  // unchanged
    uint64_t dirty_pages = 0;
    if (dirty)
      for (const kvm::GfnRange& r : *dirty) dirty_pages += r.pages();
    const TdxModule& m = be->host().module();
    const Hpa tdr = be->tdr();
    vm.for_each_vcpu([&](const kvm::Vcpu& vc) {
      const Tlb* tlb = vc.tlb();
      const auto tdvpr = be->tdvpr_of(vc.id());
      if (!tlb || !tdvpr) return;
      const auto vi = m.vcpu_info(*tdvpr);
      if (!vi || !vi->in_td) return;
      auto check_entry = [&](const TlbEntry& e) {
        if (e.asid != vm.asid() || !be->translates_privately(vm, e.base())) return;
        const SeptLookup sl = m.sept_lookup(tdr, e.base());
        const std::string who = vm.name() + " vCPU " + std::to_string(vc.id()) +
                                " (in the TD) translates private gpa " + hx(e.base().value()) +
                                " to frame " + hx(e.pfn.value());
        const bool leaf = sl.found && sl.entry.leaf && is_leaf_mapping_state(sl.entry.state);
        if (!leaf) {
          if (t3)
            out.push_back(
                {"T3",
                 who + ", but its S-EPT entry is " +
                     std::string(info_of(sl.found ? sl.entry.state : SeptState::kFree).name) +
                     ": removed without BLOCK + TRACK",
                 vm.name(),
                 {e.gfn},
                 {e.pfn}});
          return;
        }
        const Gpa base = e.base().align_down(static_cast<PageSize>(sl.entry.level));
        const Pfn want = sl.entry.pfn + ((e.base() - base) >> kPageShift);
        if (t3 && want != e.pfn)
          out.push_back({"T3",
                         who + ", but the S-EPT leaf maps frame " + hx(want.value()) +
                             ": changed without BLOCK + TRACK",
                         vm.name(),
                         {e.gfn},
                         {e.pfn, want}});
        else if (t3 && is_blocked_state(sl.entry.state) &&
                 m.tlb_tracked(tdr, m.pamt_leaf(sl.entry.hpa()).entry.bepoch))
          out.push_back(
              {"T3",
               who + " through a " + std::string(info_of(sl.entry.state).name) +
                   " leaf whose block epoch is already tracked (the vCPU should have flushed)",
               vm.name(),
               {e.gfn},
               {e.pfn}});
        else if (!t3 && is_pending_state(sl.entry.state))
          out.push_back({"T4",
                         who + " through a " + std::string(info_of(sl.entry.state).name) +
                             " leaf: the guest used a page it never accepted",
                         vm.name(),
                         {e.gfn},
                         {e.pfn}});
      };
      // Look up the changed GFNs when that is cheaper than scanning the TLB (as ISO-5 does).
      if (dirty && dirty_pages <= tlb->occupancy()) {
        for (const kvm::GfnRange& r : *dirty)
          for (Gfn g = r.start; g < r.end; ++g)
            if (const TlbEntry* e = tlb->peek(vm.asid(), gfn_to_gpa(g))) check_entry(*e);
      } else {
        tlb->for_each_occupied(check_entry);
      }
    });
    if (t3) continue;
    const auto info = m.td_info(tdr);
    if (!info) continue;
    auto pending_page = [&](Gpa gpa, const SeptEntry& e) {
      if (!e.leaf || e.level != 0 || !is_pending_state(e.state)) return;
      const LineState ls = s.mem.line_state(e.pfn);
      if (ls.td_owner && ls.private_key == info->hkid && s.mem.meta(e.pfn).label == info->principal)
        out.push_back({"T4",
                       vm.name() + ": PENDING page at gpa " + hx(gpa.value()) + " (frame " +
                           hx(e.pfn.value()) +
                           ") holds the TD's data: written before TDG.MEM.PAGE.ACCEPT",
                       vm.name(),
                       {gpa_to_gfn(gpa)},
                       {e.pfn}});
    };
    if (dirty) {
      for (const kvm::GfnRange& r : *dirty)
        for (Gfn g = r.start; g < r.end; ++g) {
          const SeptLookup sl = m.sept_entry(tdr, gfn_to_gpa(g), 0);
          if (sl.found) pending_page(gfn_to_gpa(g), sl.entry);
        }
    } else {
      m.for_each_sept_entry(tdr, pending_page);
    }
  }
}

// T5: the TD-owner bits and keys of cache lines agree with the PAMT. A frame with TD-owned lines
// is assigned in the PAMT (a page the host got back was cleared with MOVDIR64B, which drops
// them), and its TD-owned lines carry the owning TD's HKID (the global KeyID for a TDR). Per
// frame of the PAMT pages changed since the last check, every frame with line state on a full
// check. (The read semantics themselves, poison and zeros, are PhysMem's and tested there.)
void check_t5(PamtCursor& cur, const TdxHost* host, const kvm::CheckScope& s,
              std::vector<kvm::Violation>& out) {
  const TdxModule* m = module_of(s, host);
  if (!m) return;
  std::vector<std::pair<Pfn, PageSize>> pages;
  auto check = [&](Pfn f, const LineState& ls) {
    if (!ls.td_owner) return;
    const PamtLeaf l = m->pamt_leaf(pfn_to_hpa(f));
    const PageType t = l.entry.type();
    const std::string fr = "frame " + hx(f.value());
    if (t == PageType::kNda || t == PageType::kRsvd) {
      out.push_back({"T5",
                     fr + " is the host's (PAMT " + std::string(name_of(t)) + ") but " +
                         std::to_string(std::popcount(ls.td_owner)) +
                         " of its lines are still TD-owned under HKID " +
                         std::to_string(ls.private_key) +
                         ": not cleared with MOVDIR64B when it left the TD",
                     "",
                     {},
                     {f}});
      return;
    }
    KeyId want = m->config().global_hkid;
    if (t != PageType::kTdr) {
      const auto info = m->td_info(pfn_to_hpa(l.entry.owner()));
      if (!info) return;  // T1 reports the orphan
      want = info->hkid;
    }
    if (ls.private_key != want)
      out.push_back({"T5",
                     fr + " (PAMT " + std::string(name_of(t)) + ") has TD-owned lines under HKID " +
                         std::to_string(ls.private_key) + ", not its owner's HKID " +
                         std::to_string(want),
                     "",
                     {},
                     {f}});
  };
  if (cur.changed(s, *m, pages)) {
    for (const auto& [base, level] : pages)
      for (uint64_t i = 0; i < frames_of(level); ++i) check(base + i, s.mem.line_state(base + i));
    return;
  }
  s.mem.for_each_line_state(check);
}

// T6: HKID reuse only after VPFLUSHDONE -> CACHE.WB on all packages -> KEY.FREEID. Checked on the
// state it protects: an HKID the KOT says is FREE has no line tagged with it left in a cache, and
// an ASSIGNED HKID has no cached line written by anyone but its TD (a reuse before the write-back);
// the KOT and the TDs agree (an ASSIGNED or FLUSHED HKID belongs to a live TD holding it, and a TD
// before TD_TEARDOWN holds its HKID). Page reclaim only in TD_TEARDOWN is refused by the module
// itself (TDH.PHYMEM.PAGE.RECLAIM) and leaves no state of its own; T1 sees orphans. Runs when
// the KOT, the TDs or the cached lines changed (a full check always).
struct T6State {
  std::vector<uint64_t> last, cur;  // signatures of the state T6 reads (buffers reused)
};

void check_t6(T6State& st, const TdxHost* host, const kvm::CheckScope& s,
              std::vector<kvm::Violation>& out) {
  const TdxModule* m = module_of(s, host);
  if (!m) return;
  const TdxConfig& c = m->config();
  std::vector<uint64_t>& sig = st.cur;
  sig.clear();
  for (unsigned k = c.private_hkid_min; k <= c.private_hkid_max; ++k) {
    const KotEntry e = m->kot(static_cast<KeyId>(k));
    sig.push_back((uint64_t(e.state) << 56) ^ (e.wbinvd_bitmap << 8) ^ e.tdr.value());
  }
  for (Hpa tdr : m->tds()) sig.push_back(tdr.value());
  sig.push_back(s.mem.stats().lines_written_back);
  if (!s.full && sig == st.last) return;
  std::swap(st.last, st.cur);
  std::map<KeyId, Hpa> holder;  // HKID -> TDR of the live TD holding it (before TD_TEARDOWN)
  std::map<KeyId, Principal> holder_principal;
  for (Hpa tdr : m->tds()) {
    const auto info = m->td_info(tdr);
    if (!info || info->lifecycle == TdLifecycle::kTeardown) continue;
    holder[info->hkid] = tdr;
    holder_principal[info->hkid] = info->principal;
    const KotEntry e = m->kot(info->hkid);
    if ((e.state != HkidState::kAssigned && e.state != HkidState::kFlushed) || e.tdr != tdr)
      out.push_back({"T6",
                     "TD with TDR " + hx(tdr.value()) + " (" +
                         std::string(name_of(info->lifecycle)) + ") holds HKID " +
                         std::to_string(info->hkid) + " but the KOT entry is " +
                         std::string(name_of(e.state)) +
                         (e.tdr.value() ? " for TDR " + hx(e.tdr.value()) : std::string()),
                     "",
                     {},
                     {hpa_to_pfn(tdr)}});
  }
  for (unsigned k = c.private_hkid_min; k <= c.private_hkid_max; ++k) {
    const KotEntry e = m->kot(static_cast<KeyId>(k));
    if ((e.state == HkidState::kAssigned || e.state == HkidState::kFlushed) &&
        !holder.count(static_cast<KeyId>(k)))
      out.push_back({"T6",
                     "KOT entry of HKID " + std::to_string(k) + " is " +
                         std::string(name_of(e.state)) +
                         " but no live TD before TD_TEARDOWN holds it",
                     "",
                     {},
                     {}});
  }
  // Cached lines by HKID: FREE ones must have none, ASSIGNED ones only their TD's.
  struct Seen {
    uint64_t lines = 0;
    std::vector<Pfn> frames;
    Principal writer;
  };
  std::map<std::pair<KeyId, bool>, Seen> bad;  // (hkid, free?) -> what is still cached
  s.mem.for_each_line_state([&](Pfn f, const LineState& ls) {
    if (!ls.cached || ls.cached_key < c.private_hkid_min || ls.cached_key > c.private_hkid_max)
      return;
    const KotEntry e = m->kot(ls.cached_key);
    bool is_free = e.state == HkidState::kFree;
    bool stale = false;
    if (!is_free && e.state == HkidState::kAssigned) {
      auto it = holder_principal.find(ls.cached_key);
      stale = it != holder_principal.end() && it->second != ls.cached_owner;
    }
    if (!is_free && !stale) return;
    Seen& sn = bad[{ls.cached_key, is_free}];
    sn.lines += std::popcount(ls.cached);
    if (sn.frames.size() < 8) sn.frames.push_back(f);
    sn.writer = ls.cached_owner;
  });
  for (const auto& [key, sn] : bad) {
    const std::string k = std::to_string(key.first);
    out.push_back(
        {"T6",
         key.second ? "HKID " + k + " is FREE in the KOT but " + std::to_string(sn.lines) +
                          " cache lines tagged with it are still cached (KEY.FREEID before "
                          "CACHE.WB on every package)"
                    : "HKID " + k + " is ASSIGNED to a new TD while " + std::to_string(sn.lines) +
                          " cache lines a previous holder wrote under it are still cached (reused "
                          "without CACHE.WB)",
         "",
         {},
         sn.frames});
  }
}

}  // namespace

std::vector<kvm::InvariantDef> tdx_invariants(const TdxHost* host) {
  const std::vector<std::string> tdx{"tdx"};
  return {
      {"T1",
       "each 4K frame of a TDMR has exactly one PAMT leaf (4K, 2M or 1G) with one page type and "
       "one owner TDR of a live TD "
       "(and each TD's CHLDCNT matches the PAMT); checked per PAMT entry changed since the last "
       "check",
       "tdx-snp.md Part D (T1), A7", tdx,
       [host, cur = std::make_shared<PamtCursor>()](const kvm::CheckScope& s,
                                                    std::vector<kvm::Violation>& out) {
         check_t1(*cur, host, s, out);
       }},
      {"T2",
       "an S-EPT leaf in a mapped, pending or blocked state points to a PT_REG page owned by its "
       "TD; an S-EPT table "
       "entry points to a PT_EPT page of the TD",
       "tdx-snp.md Part D (T2), A2.3, A7", tdx, check_t2},
      {"T3",
       "REMOVE/DEMOTE/PROMOTE/UNBLOCK of a runnable TD need BLOCKED and a tracked BEPOCH; checked "
       "as its consequence: no vCPU "
       "inside the TD still translates a private GPA whose S-EPT leaf was removed or changed, or "
       "is blocked with a tracked epoch",
       "tdx-snp.md Part D (T3), A6", tdx,
       [](const kvm::CheckScope& s, std::vector<kvm::Violation>& out) {
         check_t3_t4("T3", s, out);
       }},
      {"T4",
       "a guest access to a PENDING leaf faults (#VE, or a TD exit with SEPT_VE_DISABLE); checked "
       "as: no vCPU inside the TD "
       "translates a private GPA through a PENDING leaf, and no PENDING 4K page holds data the TD "
       "wrote",
       "tdx-snp.md Part D (T4), A8", tdx,
       [](const kvm::CheckScope& s, std::vector<kvm::Violation>& out) {
         check_t3_t4("T4", s, out);
       }},
      {"T5",
       "cache lines carry (HKID, TD-owner) consistent with the PAMT: TD-owned lines only in frames "
       "the PAMT assigns, under "
       "the owner TD's HKID (a TDR's: the global KeyID); a page back with the host has been "
       "cleared with MOVDIR64B",
       "tdx-snp.md Part D (T5), A9", tdx,
       [host, cur = std::make_shared<PamtCursor>()](const kvm::CheckScope& s,
                                                    std::vector<kvm::Violation>& out) {
         check_t5(*cur, host, s, out);
       }},
      {"T6",
       "an HKID is reused only after VPFLUSHDONE, CACHE.WB on every package and KEY.FREEID: a FREE "
       "HKID has no cached "
       "line, an ASSIGNED one only its TD's; KOT entries and TDs agree",
       "tdx-snp.md Part D (T6), A9, A10.4", tdx,
       [host, st = std::make_shared<T6State>()](const kvm::CheckScope& s,
                                                std::vector<kvm::Violation>& out) {
         check_t6(*st, host, s, out);
       }},
  };
}

KvmTdxBackend* tdx_backend_of(kvm::Vm& vm) {
  return dynamic_cast<KvmTdxBackend*>(&vm.backend());
}

}  // namespace cvmsim::tdx
