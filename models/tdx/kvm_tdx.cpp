#include "models/tdx/kvm_tdx.h"

#include <cinttypes>
#include <cstdio>

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
  hkid_used_.assign(c.private_hkid_max >= c.private_hkid_min ? c.private_hkid_max - c.private_hkid_min + 1u : 0u,
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
  g.value("hkid_highest", hkid_highest_, "key", "highest HKID ever given to a TD (lowest free first: it stays put when freed HKIDs are reused)");
  g.counter("seamcall_errors", stats_.seamcall_errors, "calls", "module calls made by the KVM glue that failed (mapped to EBUSY or EIO)");
  g.counter("busy_retries", stats_.busy_retries, "calls", "BUSY answered by kicking every vCPU out of the TD and retrying once (tdh_do_no_vcpus)");
  g.counter("private_maps", stats_.private_maps, "pages", "private pages added at runtime (TDH.MEM.PAGE.AUG) for KVM faults");
  g.counter("pages_added", stats_.pages_added, "pages", "initial-image pages added before finalize (TDH.MEM.PAGE.ADD, KVM_TDX_INIT_MEM_REGION)");
  g.counter("mr_extends", stats_.mr_extends, "calls", "TDH.MR.EXTEND calls (256 B each) measuring the initial image");
  g.counter("sept_pages_added", stats_.sept_pages_added, "pages", "S-EPT pages added (TDH.MEM.SEPT.ADD)");
  g.counter("private_zaps", stats_.private_zaps, "pages", "private pages removed (BLOCK, TRACK, kick, REMOVE, WBINVD, clear)");
  g.counter("guest_accepts", stats_.guest_accepts, "calls", "TDG.MEM.PAGE.ACCEPT issued on the guest kernel's behalf after #VE or a PENDING EPT violation");
  g.counter("vcpu_kicks", stats_.vcpu_kicks, "exits", "TD exits forced so that TLB tracking completes");
  g.counter("vp_enters", stats_.vp_enters, "calls", "TDH.VP.ENTER calls by the glue");
  g.counter("machine_checks", stats_.machine_checks, "count", "machine checks that made a TD fatal");
  g.counter("pages_reclaimed", stats_.pages_reclaimed, "pages", "pages reclaimed at teardown (TDH.PHYMEM.PAGE.RECLAIM)");
  g.counter("pages_cleared", stats_.pages_cleared, "pages", "pages the host cleared with MOVDIR64B under key 0 before reuse");
  g.counter("td_exits.ept_violation", stats_.td_exits_ept_violation, "exits", "TD exits for an EPT violation KVM handles (FREE/absent private page: SEPT.ADD + AUG)");
  g.counter("td_exits.pending_ept_violation", stats_.td_exits_pending, "exits", "TD exits for an EPT violation on a PENDING page (SEPT_VE_DISABLE: EEQ PENDING_EPT_VIOLATION; the guest accepts)");
  g.counter("td_exits.tdvmcall", stats_.td_exits_tdvmcall, "exits", "TD exits for a TDG.VP.VMCALL seen by the glue");
  g.counter("td_exits.async", stats_.td_exits_async, "exits", "asynchronous TD exits the glue caused (kicks for TLB tracking, teardown)");
  g.counter("td_exits.fatal", stats_.td_exits_fatal, "exits", "TD exits because the TD became FATAL");
  g.counter("ves_injected", stats_.ves_injected, "count", "#VE injected into the guest for a PENDING page (SEPT_VE_DISABLE clear)");
  g.counter("tds_reclaimed", stats_.tds_reclaimed, "count", "TDs torn down completely (the TDR reclaimed last)");
  g.counter("hkids_freed", stats_.hkids_freed, "keys", "HKIDs returned to the allocator after TDH.MNG.KEY.FREEID");
  g.counter("hkid_exhausted", stats_.hkid_exhausted, "count", "TDX VM creations refused because no HKID was free");
}

// ============================================================================================
// Helpers

uint32_t KvmTdxBackend::vm_type() const { return kvm::KVM_X86_TDX_VM; }

TdxResult KvmTdxBackend::charged(Vm& vm, TdxResult r, std::string_view leaf, uint64_t gpa, int level, uint64_t hpa,
                                 int hkid) {
  vm.kvm().charge(r.cost);
  if (r.is_error()) ++host_.stats().seamcall_errors;
  TdxHost::Stats& st = host_.stats();
  if (r.outcome == GuestOutcome::kInjectVe) ++st.ves_injected;
  if (r.outcome == GuestOutcome::kTdExit) {
    switch (r.exit.reason) {
      case TdExitReason::kEptViolation:
        ++(r.exit.eeq == EeqType::kPendingEptViolation ? st.td_exits_pending : st.td_exits_ept_violation);
        break;
      case TdExitReason::kTdvmcall: ++st.td_exits_tdvmcall; break;
      case TdExitReason::kAsync: ++st.td_exits_async; break;
      case TdExitReason::kFatal: ++st.td_exits_fatal; break;
      default: break;
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
    } else if (r.outcome == GuestOutcome::kInjectVe || r.outcome == GuestOutcome::kInjectPfRsvd) {
      d += " outcome=";
      d += name_of(r.outcome);
    }
    d += " cost=" + std::to_string(r.cost.count());
    vm.kvm().trace("platform." + vm.name() + ".tdx", seam ? "seamcall" : td ? "tdcall" : "module", d);
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
  (void)vm.mem().fill_keyed(page, kPageBytes, 0, KeyedAccess{0, kNobody, true});
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

bool KvmTdxBackend::ensure_entered(Vm& vm, VcpuTd& v, std::string* why) {
  auto info = host_.module().vcpu_info(v.tdvpr);
  if (info && info->in_td) return true;
  ++host_.stats().vp_enters;
  const TdxResult r = charged(vm, host_.module().vp_enter(v.tdvpr, v.id), "TDH.VP.ENTER", kNoArg, -1, v.tdvpr.value());
  if (!r.ok()) {
    if (why) *why = "TDH.VP.ENTER failed: " + std::string(status_name(r.status));
    return false;
  }
  // The module did INVEPT for the S-EPT (A6): the vCPU's cached translations go.
  if (r.flush_tlb && v.vcpu) v.vcpu->flush_tlb();
  return true;
}

void KvmTdxBackend::kick_all(Vm& vm) {
  // In this single-threaded model "kick" (an IPI making each vCPU exit the TD) is a TD exit of
  // every vCPU that is in; each re-enters on its next exit handling.
  for (auto& v : vcpus_) {
    auto info = host_.module().vcpu_info(v.tdvpr);
    if (!info || !info->in_td) continue;
    (void)charged(vm, host_.module().td_exit(v.tdvpr), "TD_EXIT", kNoArg, -1, v.tdvpr.value());
    ++host_.stats().vcpu_kicks;
  }
}

template <class F>
TdxResult KvmTdxBackend::with_no_vcpus(Vm& vm, std::string_view leaf, uint64_t gpa, int level, F&& call) {
  TdxResult r = charged(vm, call(), leaf, gpa, level);
  if (is_busy_class(r.status)) {
    ++host_.stats().busy_retries;
    kick_all(vm);
    r = charged(vm, call(), leaf, gpa, level);
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
  TdxResult r = charged(vm, m.mng_create(*tdr, *hk, vm.principal()), "TDH.MNG.CREATE", kNoArg, -1, tdr->value(), *hk);
  if (!r.ok()) {
    vm.frames().free(hpa_to_pfn(*tdr));
    host_.free_hkid(*hk);
    return to_errno(r);
  }
  td_created_ = true;
  tdr_ = *tdr;
  hkid_ = *hk;
  for (unsigned p = 0; p < m.config().num_packages; ++p)
    if (r = charged(vm, m.mng_key_config(tdr_, p), "TDH.MNG.KEY.CONFIG", kNoArg, -1, tdr_.value()); !r.ok()) return to_errno(r);
  for (unsigned i = 0; i < m.config().num_tdcs_pages; ++i) {
    auto page = alloc_frame(vm);
    if (!page.ok()) return page.error();
    if (r = charged(vm, m.mng_addcx(tdr_, *page), "TDH.MNG.ADDCX", kNoArg, -1, page->value()); !r.ok()) {
      vm.frames().free(hpa_to_pfn(*page));
      return to_errno(r);
    }
    tdcs_.push_back(*page);
  }
  TdParams params;
  params.attributes = host_.glue().sept_ve_disable ? kTdAttrSeptVeDisable : 0;
  params.max_vcpus = host_.glue().max_vcpus;
  params.sept_levels = 4;  // GPAW 48: SHARED = bit 47 (A1)
  if (r = charged(vm, m.mng_init(tdr_, params), "TDH.MNG.INIT", kNoArg, -1, tdr_.value()); !r.ok()) return to_errno(r);
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
    if (r = charged(vm, m.vp_addcx(t.tdvpr, *page), "TDH.VP.ADDCX", kNoArg, -1, page->value()); !r.ok()) {
      vm.frames().free(hpa_to_pfn(*page));
      st = to_errno(r);
      break;
    }
    t.tdvpx.push_back(*page);
  }
  if (st.ok())
    if (r = charged(vm, m.vp_init(t.tdvpr), "TDH.VP.INIT", kNoArg, -1, t.tdvpr.value()); !r.ok()) st = to_errno(r);
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
  TdxResult r = charged(vm, m.mem_page_add(tdr_, gpa, pfn_to_hpa(pfn->pfn), source), "TDH.MEM.PAGE.ADD", gpa.value(), 0, pfn_to_hpa(pfn->pfn).value());
  if (!r.ok()) return to_errno(r);
  mirror_[gfn.value()] = pfn->pfn;
  ++pages_added_;
  ++host_.stats().pages_added;
  if (measure) {
    // tdx_gmem_post_populate with KVM_TDX_MEASURE_MEMORY_REGION: TDH.MR.EXTEND per 256 B chunk.
    for (uint64_t off = 0; off < kPageBytes; off += 256) {
      r = charged(vm, m.mr_extend(tdr_, Gpa(gpa.value() + off)), "TDH.MR.EXTEND", gpa.value() + off);
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
  const TdxResult r = charged(vm, host_.module().mr_finalize(tdr_), "TDH.MR.FINALIZE", kNoArg, -1, tdr_.value());
  if (!r.ok()) return to_errno(r);
  finalized_ = true;
  vm.pre_fault_allowed = true;  // kvm->arch.pre_fault_allowed after KVM_TDX_FINALIZE_VM (§9)
  return {};
}

// ============================================================================================
// Private mappings (A10.2, A10.3)

Result<Cycles> KvmTdxBackend::map_private(Vm& vm, Gfn gfn, Pfn pfn, PageSize size, Perms) {
  if (size != PageSize::k4K) return Errno::kEINVAL;  // private_max_level is 4K
  if (!td_created_) return Errno::kEIO;
  if (auto it = mirror_.find(gfn.value()); it != mirror_.end()) {
    // Already mapped: a spurious fault (the mirror says so, as KVM's mirror SPTE would).
    if (it->second == pfn) return Cycles(0);
    return Errno::kEEXIST;
  }
  TdxModule& m = host_.module();
  const Gpa gpa = gfn_to_gpa(gfn);
  if (Status st = ensure_sept(vm, gpa); !st.ok()) return st.error();
  // Runtime: PAGE.AUG (PENDING; the guest accepts). The initial image goes through
  // init_mem_page (PAGE.ADD) instead; AUG is refused by nothing here, the module decides.
  const TdxResult r = charged(vm, m.mem_page_aug(tdr_, gpa, PageSize::k4K, pfn_to_hpa(pfn)), "TDH.MEM.PAGE.AUG", gpa.value(), 0, pfn_to_hpa(pfn).value());
  if (!r.ok()) return to_errno(r);
  mirror_[gfn.value()] = pfn;
  ++host_.stats().private_maps;
  return Cycles(0);  // the module's cost is already on KVM's meter
}

Status KvmTdxBackend::ensure_sept(Vm& vm, Gpa gpa) {
  TdxModule& m = host_.module();
  for (unsigned l = sept_levels_ - 1; l >= 1; --l) {
    const uint64_t span = uint64_t{1} << (kPageShift + 9 * l);
    const auto key = std::make_pair(l, gpa.value() & ~(span - 1));
    if (sept_pages_.count(key)) continue;
    auto page = alloc_frame(vm);
    if (!page.ok()) return page.error();
    const TdxResult r = charged(vm, m.mem_sept_add(tdr_, Gpa(key.second), l, *page), "TDH.MEM.SEPT.ADD", key.second, static_cast<int>(l), page->value());
    if (!r.ok()) {
      vm.frames().free(hpa_to_pfn(*page));
      return to_errno(r);
    }
    sept_pages_[key] = *page;
    ++host_.stats().sept_pages_added;
  }
  return {};
}

bool KvmTdxBackend::zap_one(Vm& vm, Gfn gfn, Pfn pfn) {
  TdxModule& m = host_.module();
  const Gpa gpa = gfn_to_gpa(gfn);
  TdxResult r = with_no_vcpus(vm, "TDH.MEM.RANGE.BLOCK", gpa.value(), 0, [&] { return m.mem_range_block(tdr_, gpa, 0); });
  if (r.is_error()) return false;
  // tdx_track: TRACK, then kick every vCPU so that none runs in the previous epoch (A6).
  r = with_no_vcpus(vm, "TDH.MEM.TRACK", kNoArg, -1, [&] { return m.mem_track(tdr_); });
  if (r.is_error()) return false;
  kick_all(vm);
  r = with_no_vcpus(vm, "TDH.MEM.PAGE.REMOVE", gpa.value(), 0, [&] { return m.mem_page_remove(tdr_, gpa, PageSize::k4K); });
  if (r.is_error()) return false;
  r = charged(vm, m.phymem_page_wbinvd(m.with_hkid(pfn_to_hpa(pfn), hkid_)), "TDH.PHYMEM.PAGE.WBINVD", kNoArg, -1, m.with_hkid(pfn_to_hpa(pfn), hkid_).value());
  if (r.is_error()) return false;
  clear_page(vm, pfn_to_hpa(pfn));
  ++host_.stats().private_zaps;
  return true;
}

Result<Cycles> KvmTdxBackend::unmap_private(Vm& vm, Gfn gfn, PageSize size) {
  if (size != PageSize::k4K) return Errno::kEINVAL;
  auto it = mirror_.find(gfn.value());
  if (it == mirror_.end()) return Errno::kENOENT;
  if (!zap_one(vm, gfn, it->second)) return Errno::kEIO;
  mirror_.erase(it);
  vm.note_changed(kvm::GfnRange{gfn, gfn + 1});
  return Cycles(0);
}

bool KvmTdxBackend::zap_private_range(Vm& vm, kvm::GfnRange r) {
  bool any = false;
  for (auto it = mirror_.lower_bound(r.start.value()); it != mirror_.end() && it->first < r.end.value();) {
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
  return s.found && s.entry.leaf && s.entry.state != SeptState::kFree && s.entry.state != SeptState::kRemoved;
}

// ============================================================================================
// The vCPU side: EPT violations, #VE, #MC (A8, A9)

KvmTdxBackend::PrivateFaultAction KvmTdxBackend::private_fault(Vm& vm, kvm::Vcpu& vcpu, const VmExit& e) {
  PrivateFaultAction a;
  VcpuTd* v = vcpu_td(vcpu);
  if (!v) return a;
  TdxModule& m = host_.module();
  if (!ensure_entered(vm, *v, &a.reason)) {
    a.kind = PrivateFaultAction::kStop;
    return a;
  }
  const TdxResult r = charged(vm, m.ept_violation(v->tdvpr, e.gpa, e.write), "EPT_VIOLATION", e.gpa.value(), -1, v->tdvpr.value());
  bool accept = false;
  switch (r.outcome) {
    case GuestOutcome::kInjectVe: accept = true; break;  // #VE: the guest kernel's handler accepts
    case GuestOutcome::kInjectPfRsvd:
      a.kind = PrivateFaultAction::kStop;
      a.reason = "#PF(RSVD) injected for a GPA above the SHARED bit (no guest kernel model handles it)";
      return a;
    case GuestOutcome::kTdExit:
      // SEPT_VE_DISABLE: a PENDING page exits with EEQ PENDING_EPT_VIOLATION. A Linux guest
      // accepts before it touches; the stand-in accepts at the first touch instead.
      accept = r.exit.eeq == EeqType::kPendingEptViolation;
      break;
    default: break;
  }
  if (!accept) return a;  // a TD exit: KVM's fault path (FREE -> SEPT.ADD + AUG)
  if (!ensure_entered(vm, *v, &a.reason)) {
    a.kind = PrivateFaultAction::kStop;
    return a;
  }
  ++host_.stats().guest_accepts;
  const TdxResult acc = charged(vm, m.tdg_mem_page_accept(v->tdvpr, Gpa(e.gpa.value() & ~(kPageBytes - 1)), PageSize::k4K), "TDG.MEM.PAGE.ACCEPT", e.gpa.value() & ~(kPageBytes - 1), 0);
  if (acc.ok() || acc.code() == status::kPageAlreadyAccepted || is_busy_class(acc.status)) {
    a.kind = PrivateFaultAction::kRetry;
    return a;
  }
  if (acc.outcome == GuestOutcome::kTdExit) return a;  // e.g. the lazy-AUG path: KVM maps it
  a.kind = PrivateFaultAction::kStop;
  a.reason = "TDG.MEM.PAGE.ACCEPT failed: " + std::string(status_name(acc.status));
  return a;
}

std::optional<ExitAction> KvmTdxBackend::machine_check(Vm& vm, kvm::Vcpu& vcpu, const MachineCheck& mc) {
  VcpuTd* v = vcpu_td(vcpu);
  if (!v) return std::nullopt;
  ++host_.stats().machine_checks;
  (void)charged(vm, host_.module().machine_check(v->tdvpr), "MACHINE_CHECK", mc.gpa.value(), -1, mc.hpa.value());
  ExitAction a;
  a.kind = ExitAction::kStop;
  char m[200];
  std::snprintf(m, sizeof m,
                "%s vCPU %u: machine check at gpa 0x%" PRIx64 " (hpa 0x%" PRIx64 "): the TD is FATAL (TDX_NON_RECOVERABLE_TD)",
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
    if (info->lp >= 0) (void)charged(vm, m.vp_flush(v.tdvpr, static_cast<unsigned>(info->lp)), "TDH.VP.FLUSH", kNoArg, -1, v.tdvpr.value());
  }
  (void)charged(vm, m.mng_vpflushdone(tdr_), "TDH.MNG.VPFLUSHDONE", kNoArg, -1, tdr_.value());
  for (unsigned p = 0; p < m.config().num_packages; ++p) {
    TdxResult r = charged(vm, m.phymem_cache_wb(p, CacheWbCmd::kStart), "TDH.PHYMEM.CACHE.WB");
    while (r.code() == status::kInterruptedResumable) r = charged(vm, m.phymem_cache_wb(p, CacheWbCmd::kResume), "TDH.PHYMEM.CACHE.WB");
  }
  if (charged(vm, m.mng_key_freeid(tdr_), "TDH.MNG.KEY.FREEID", kNoArg, -1, tdr_.value(), hkid_).ok()) {
    host_.free_hkid(hkid_);
    ++host_.stats().hkids_freed;
  }
  auto reclaim = [&](Hpa page, bool ours) {
    const TdxResult r = charged(vm, m.phymem_page_reclaim(page), "TDH.PHYMEM.PAGE.RECLAIM", kNoArg, -1, page.value());
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

std::unique_ptr<kvm::KvmBackend> make_tdx_backend(TdxHost& host) { return std::make_unique<KvmTdxBackend>(host); }

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
    case SeptState::kPendingExportedDirtyBlockedW: return true;
    default: return false;
  }
}

// T2 (tdx-snp.md Part D): an S-EPT leaf in a mapped, pending or blocked state points to a page
// whose PAMT entry is PT_REG owned by this TD; an S-EPT non-leaf entry points to a PT_EPT page of
// this TD. Read from the module's real S-EPT pages and PAMT; the TDs are found through the VMs.
void check_t2(const kvm::CheckScope& s, std::vector<kvm::Violation>& out) {
  for (const auto& vmp : s.kvm.vms()) {
    const auto* be = dynamic_cast<const KvmTdxBackend*>(&vmp->backend());
    if (!be || be->tdr().value() == 0) continue;
    if (const auto* d = s.dirty ? s.dirty(*vmp) : nullptr; d && d->empty()) continue;  // unchanged
    const TdxModule& m = be->host().module();
    const Hpa tdr = be->tdr();
    m.for_each_sept_entry(tdr, [&](Gpa gpa, const SeptEntry& e) {
      PageType want;
      if (e.leaf && is_leaf_mapping_state(e.state)) want = PageType::kReg;
      else if (!e.leaf && (e.state == SeptState::kNlMapped || e.state == SeptState::kNlBlocked)) want = PageType::kEpt;
      else return;
      const PamtLeaf pl = m.pamt_leaf(e.hpa());
      if (pl.entry.type() == want && pl.entry.owner() == hpa_to_pfn(tdr)) return;
      char buf[240];
      std::snprintf(buf, sizeof buf,
                    "%s: S-EPT %s at gpa 0x%llx level %u points to frame 0x%llx whose PAMT entry is type %u owned by "
                    "TDR frame 0x%llx (expected type %u owned by this TD's TDR 0x%llx)",
                    vmp->name().c_str(), e.leaf ? "leaf" : "table", static_cast<unsigned long long>(gpa.value()), e.level,
                    static_cast<unsigned long long>(e.pfn.value()), static_cast<unsigned>(pl.entry.type()),
                    static_cast<unsigned long long>(pl.entry.owner().value()), static_cast<unsigned>(want),
                    static_cast<unsigned long long>(hpa_to_pfn(tdr).value()));
      out.push_back({"T2", buf, vmp->name(), {gpa_to_gfn(gpa)}, {e.pfn}});
    });
  }
}

}  // namespace

std::vector<kvm::InvariantDef> tdx_invariants() {
  return {{"T2",
           "an S-EPT leaf in a mapped, pending or blocked state points to a PT_REG page owned by its TD; an S-EPT table "
           "entry points to a PT_EPT page of the TD",
           "tdx-snp.md Part D (T2), A2.3, A7", {"tdx"}, check_t2}};
}

KvmTdxBackend* tdx_backend_of(kvm::Vm& vm) { return dynamic_cast<KvmTdxBackend*>(&vm.backend()); }

}  // namespace cvmsim::tdx
