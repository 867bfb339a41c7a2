// The KVM TDX glue (KVM_X86_TDX_VM, type 5): the KvmBackend that drives the TDX module model
// (tdx_module_core.h) the way Linux's arch/x86/kvm/vmx/tdx.c does (tdx-snp.md A10,
// kvm-guest-memfd.md §7, §10). docs/tdx-model.md "KVM glue" explains it.
//
// Per platform there is one TDX module and one HKID allocator: TdxHost. Every TDX VM's backend
// (make_tdx_backend) refers to it.
//
//   vm_init       TDH.MNG.CREATE (HKID from the allocator: the private KeyID range minus the
//                 global KeyID), KEY.CONFIG on every package, ADDCX x num_tdcs_pages, MNG.INIT
//   vcpu_create   TDH.VP.CREATE, VP.ADDCX, VP.INIT
//   init_mem_page KVM_TDX_INIT_MEM_REGION: SEPT.ADD, PAGE.ADD from a source page, MR.EXTEND x16
//   finalize      TDH.MR.FINALIZE (KVM_TDX_FINALIZE_VM); pre-fault allowed from then on
//   set_external_spte   SEPT.ADD for missing levels, then PAGE.AUG (PENDING)
//   zap           RANGE.BLOCK, MEM.TRACK, kick every vCPU (TD exit), PAGE.REMOVE,
//                 PHYMEM.PAGE.WBINVD, then the host clears the page (MOVDIR64B under key 0)
//   private fault the module's EPT-violation dispatch first: #VE goes to the guest kernel (below);
//                 a PENDING TD exit (SEPT_VE_DISABLE) marks the VM dead as KVM does
//   map 2M        SEPT.ADD for levels 3 and 2 (down to the table whose level-1 entry holds the
//                 leaf), PAGE.AUG 2M; when TdxTdOptions::huge_private lets gmem_max_mapping_level
//                 say 2M and guest_memfd hands out a 2 MiB folio. Smaller leaves already under the
//                 2 MiB range: EEXIST, KVM falls back to 4 KiB (no PROMOTE)
//   zap in 2M     a range covering a whole 2M leaf removes it (BLOCK, TRACK, REMOVE 2M); a
//                 partial range first splits it: BLOCK, TRACK, DEMOTE (new S-EPT page), then
//                 the 4 KiB leaves go as usual (A2.3, A10.3)
//   teardown      VP.FLUSH, VPFLUSHDONE, CACHE.WB per package, KEY.FREEID, RECLAIM every page
//                 (TDR last), frames cleared and returned to the VM's FrameAllocator
//
// Like KVM, the glue keeps a mirror of what it mapped (private leaves and S-EPT pages) instead
// of reading the S-EPT, which is TD-private (A5); the module's inspection is used only for the
// checkers' view (lookup_private). Statuses map to errnos as KVM does: TDX_OPERAND_BUSY* and
// PREVIOUS_TLB_EPOCH_BUSY -> EBUSY, every other error -> EIO. The module enforces its own rules;
// the glue never assumes a call succeeded.
//
// Concurrency (docs/tdx-model.md "Concurrency and BUSY"): BLOCK, TRACK, DEMOTE, REMOVE (4 KiB and
// 2 MiB) and the guest's ACCEPT run split (begin, the call's cost passes through Kvm::yield with
// the locks held, then complete), so that with a timed shell another thread meeting the locks gets
// BUSY (A5). Without a TimeHook (pure tests) nothing is in flight and every call is atomic.
//
// Guest side: the glue does not act for the guest. What the hardware delivers to the guest kernel
// (a #VE for a PENDING page, the end of a MapGPA TDVMCALL) goes to a TdxGuestSide the platform
// attaches (models/guest/tdx_guest_kernel.h implements it; declared here so that the glue never
// calls up, ARCHITECTURE.md principle 2), and the guest kernel issues its TDCALLs through the
// TdxGuestAbi this backend implements (guest_accept: the ACCEPT in flight, BUSY counted and
// retried). With SEPT_VE_DISABLE set, a guest access to a PENDING page
// is a TD exit that KVM treats as fatal (tdx_handle_ept_violation: "Guest access before
// accepting", kvm_vm_dead, -EIO): the vCPU stops, and the TD's other vCPUs at their next
// private fault (the model's vCPUs return to KVM only on exits). docs/tdx-model.md "Guest side".
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hw/base/stat_visitor.h"
#include "hw/memory/phys_mem.h"
#include "models/kvm/backend.h"
#include "models/tdx/tdx_access_policy.h"
#include "models/tdx/tdx_module_core.h"

namespace cvmsim::tdx {

// platform.tdx.hkid_reuse (docs/tdx-model.md "HKID reuse"): how KVM's teardown returns a TD's
// HKID. kFlush is mainline (tdx_mmu_release_hkid: VP.FLUSH, VPFLUSHDONE, CACHE.WB on every
// package, KEY.FREEID, and only then the HKID back to the allocator; tdx-snp.md A9, T6).
// kUnsafeNoFlush skips TDH.PHYMEM.CACHE.WB (a buggy KVM) on a module with the FREEID erratum
// (TdxConfig::erratum_freeid_ignores_cache_wb), so the next TD gets the HKID while lines tagged
// with it are still cached: ISO-8 and T6 catch it.
enum class HkidReuse : uint8_t { kFlush, kUnsafeNoFlush };

struct TdxGlueConfig {
  // TD ATTRIBUTES.SEPT_VE_DISABLE (bit 28): Linux guests require it (A8). The default for every
  // TD that has no options of its own; TdxTdOptions overrides it (scenario vms[].tdx).
  bool sept_ve_disable = true;
  // TD_PARAMS.MAX_VCPUS.
  unsigned max_vcpus = 64;
  HkidReuse hkid_reuse = HkidReuse::kFlush;
  // How long one turn of a spin-wait lasts when the glue waits for another thread (a vCPU's
  // TDCALL to retire before it takes the kick IPI, a zap holding mmu_lock, wait_for_sept_zap)
  // (estimate: a pause loop re-checking a cached line; only matters with a timed shell).
  uint64_t spin_cycles = 200;
};

// Per-TD options the VMM passes with KVM_TDX_INIT_VM (given to the TD's backend when KVM creates
// it; the scenario's vms[].tdx).
struct TdxTdOptions {
  bool sept_ve_disable = true;  // TD ATTRIBUTES.SEPT_VE_DISABLE (A8)
  // Map private memory at 2 MiB where guest_memfd hands out a 2 MiB folio and the attributes
  // allow (KVM's TDX huge-page support is not in mainline: the default, false, is mainline's 4K).
  bool huge_private = false;
  // An interrupt becomes pending for the guest every this many cycles of its ACCEPT work (a
  // timer or IPI; 0: never). A 2 MiB ACCEPT issued with one pending stops after one 4 KiB chunk
  // (ACCEPT_COUNTER saved, A8) and the guest re-issues it. A modelling parameter, not an ABI one.
  uint64_t accept_interrupt_cycles = 0;
};

// The TDX guest ABI as a guest-kernel model uses it: TDCALLs issued on one of the TD's vCPUs.
class TdxGuestAbi {
 public:
  virtual ~TdxGuestAbi() = default;
  // TDG.MEM.PAGE.ACCEPT(gpa, size) on vCPU `vcpu`, as the guest executes it: a TD exit it causes
  // (EEQ ACCEPT: a FREE entry or a missing level, the lazy-AUG path; or a PENDING 2 MiB leaf
  // under a 4 KiB request) goes to KVM, which maps the page at most at the accept's size (or
  // DEMOTEs the 2 MiB leaf), and the guest re-executes the TDCALL; an interrupted 2 MiB accept
  // is re-issued. BUSY / BUSY_HOST_PRIORITY (a host SEAMCALL holds or won the S-EPT entry, A5)
  // returns to the guest, which retries. Returns the last result (ok, PAGE_ALREADY_ACCEPTED,
  // PAGE_SIZE_MISMATCH, BUSY, or an error).
  virtual TdxResult guest_accept(unsigned vcpu, Gpa gpa, PageSize size) = 0;
};

// The guest kernel of a TD as the glue sees it: the events the hardware delivers to the guest.
class TdxGuestSide {
 public:
  virtual ~TdxGuestSide() = default;
  // A #VE for a PENDING private page (SEPT_VE_DISABLE clear). true: handled, retry the access.
  virtual bool on_ve(TdxGuestAbi& abi, unsigned vcpu, Gpa gpa) = 0;
  // TDG.VP.VMCALL<MapGPA>(gpa with or without the S bit, size) returned `ret` (R10) to the guest.
  virtual void on_map_gpa_done(TdxGuestAbi& abi, unsigned vcpu, Gpa gpa, uint64_t size,
                               bool to_private, uint64_t ret) = 0;
};

// The platform's TDX: the module and the HKID allocator every TDX VM shares.
class TdxHost {
 public:
  TdxHost(PhysMem& mem, TdxConfig cfg, TdxGlueConfig glue = {});
  // A TdxConfig for `mem`: one TDMR over all of it, the KeyID split from mem.keys() (private
  // KeyIDs [first_private, num_key_ids), the first one global, A1). EINVAL-style: the caller
  // must have given PhysMem a KeyConfig with private keys.
  static TdxConfig config_for(const PhysMem& mem);

  TdxModule& module() { return module_; }
  const TdxModule& module() const { return module_; }
  const TdxGlueConfig& glue() const { return glue_; }
  // A TD's options when the VMM gives none (a VM a scenario step creates): the glue's defaults.
  TdxTdOptions default_td_options() const;

  // HKIDs for TDs: [private_hkid_min, private_hkid_max] minus the global KeyID, lowest first.
  std::optional<KeyId> alloc_hkid();
  void free_hkid(KeyId k);
  unsigned hkids_in_use() const;

  struct Stats {
    uint64_t seamcall_errors = 0;  // module calls the glue made that failed (EIO/EBUSY)
    uint64_t busy_retries = 0;     // BUSY answered by kicking the vCPUs and retrying once
    uint64_t guest_accept_busy =
        0;                      // ACCEPTs that got BUSY / BUSY_HOST_PRIORITY (the guest retries)
    uint64_t kick_waits = 0;    // kicks that waited for a vCPU's TDCALL in flight to retire
    uint64_t fault_waits = 0;   // faults, maps and zaps that waited for a zap holding mmu_lock
    uint64_t enter_waits = 0;   // TD entries held back (wait_for_sept_zap, VP.ENTER BUSY)
    uint64_t private_maps = 0;  // PAGE.AUG done for KVM faults
    uint64_t sept_pages_added = 0;  // SEPT.ADD done
    uint64_t pages_added = 0;       // PAGE.ADD done (initial image, before finalize)
    uint64_t mr_extends = 0;        // MR.EXTEND done (256 B each)
    uint64_t private_zaps = 0;      // private pages removed (BLOCK..REMOVE..clear)
    uint64_t guest_accepts =
        0;  // TDG.MEM.PAGE.ACCEPT calls the guest kernel issued (retries included)
    uint64_t accept_exits = 0;  // ACCEPTs that exited to KVM (EEQ ACCEPT) and were re-issued
    uint64_t pending_access_fatal = 0;  // PENDING accesses with SEPT_VE_DISABLE: KVM killed the VM
    uint64_t private_maps_2m = 0;       // PAGE.AUG 2M done for KVM faults
    uint64_t demotes = 0;          // PAGE.DEMOTE of a 2 MiB leaf (partial zap or a 4 KiB accept)
    uint64_t private_zaps_2m = 0;  // 2 MiB private leaves removed whole
    uint64_t vcpu_kicks = 0;       // TD exits forced for TLB tracking
    uint64_t vp_enters = 0;
    uint64_t machine_checks = 0;
    uint64_t pages_reclaimed = 0;         // PHYMEM.PAGE.RECLAIM at teardown
    uint64_t pages_cleared = 0;           // pages the host cleared with MOVDIR64B (zap, teardown)
    uint64_t hkid_exhausted = 0;          // VM creations refused for lack of an HKID
    uint64_t td_exits_ept_violation = 0;  // TD exits by reason, as the glue saw them
    uint64_t td_exits_pending = 0;
    uint64_t td_exits_tdvmcall = 0;
    uint64_t td_exits_async = 0;
    uint64_t td_exits_fatal = 0;
    uint64_t ves_injected = 0;   // #VE the module injected for a PENDING page
    uint64_t tds_reclaimed = 0;  // TDs whose TDR was reclaimed (teardown complete)
    uint64_t hkids_freed = 0;    // HKIDs back in the allocator after KEY.FREEID
  };
  Stats& stats() { return stats_; }
  const Stats& stats() const { return stats_; }
  // The module's statistics plus the glue's under "glue.".
  void describe_stats(StatVisitor& v) const;

 private:
  TdxModule module_;
  TdxGlueConfig glue_;
  std::vector<bool> hkid_used_;  // index: hkid - private_hkid_min
  double hkids_live_ = 0;
  double hkid_highest_ = 0;
  Stats stats_;
};

// The backend of one TDX VM. Public so that the platform and tests can finalize the TD and give
// the vCPUs their private root.
// The TDX invariants (tdx-snp.md Part D) this backend contributes to the checker: T1-T6. They
// read the module of `host` (the platform's); with nullptr, the module of the first live TD's
// backend (tests, and `cvmsim list`, which never runs them).
std::vector<kvm::InvariantDef> tdx_invariants(const TdxHost* host = nullptr);

class KvmTdxBackend final : public kvm::KvmBackend, public TdxGuestAbi {
 public:
  KvmTdxBackend(TdxHost& host, TdxTdOptions options) : host_(host), options_(options) {}

  uint32_t vm_type() const override;
  std::string_view name() const override { return "tdx"; }
  bool has_private_mem() const override { return true; }
  bool supports_gmem_init_shared() const override { return false; }
  bool pre_fault_allowed_at_create() const override { return false; }
  kvm::ConversionContents conversion_contents() const override {
    return kvm::ConversionContents::kLost;
  }
  bool has_readonly_mem() const override { return false; }

  Status vm_init(kvm::Vm& vm) override;
  Status vcpu_create(kvm::Vm& vm, kvm::Vcpu& vcpu) override;

  Gfn fault_gfn(const kvm::Vm&, Gpa gpa) const override {
    return gpa_to_gfn(Gpa(gpa.value() & ~shared_mask_));
  }
  bool fault_is_private(const kvm::Vm&, Gfn, const VmExit& e) const override {
    return !(e.gpa.value() & shared_mask_);
  }
  uint64_t gfn_direct_bits(const kvm::Vm&) const override { return shared_mask_ >> kPageShift; }

  bool has_private_root() const override { return true; }
  Result<Cycles> set_external_spte(kvm::Vm& vm, Gfn gfn, Pfn pfn, PageSize size,
                                   Perms perms) override;
  Result<Cycles> remove_external_spte(kvm::Vm& vm, Gfn gfn, PageSize size) override;
  bool zap_private_range(kvm::Vm& vm, kvm::GfnRange r) override;
  PageSize gmem_max_mapping_level(const kvm::Vm&, Gfn) const override {
    return options_.huge_private ? PageSize::k2M : PageSize::k4K;
  }

  bool translates_privately(const kvm::Vm&, Gpa gpa) const override {
    return td_created_ && !(gpa.value() & shared_mask_);
  }
  Stage2Lookup lookup_private(const kvm::Vm&, Gpa gpa) const override;
  bool has_private_leaf(const kvm::Vm& vm, Gfn gfn) const override;
  // The TD's vCPUs walk private GPAs through the Secure EPT under the HKID, shared ones through
  // KVM's shared EPT under key 0 (tdx_access_policy.h). nullptr until the TD exists.
  const GuestAccessPolicy* guest_access_policy(const kvm::Vm& vm) const override;
  PrivateFaultAction private_fault(kvm::Vm& vm, kvm::Vcpu& vcpu, const VmExit& e) override;
  std::optional<ExitAction> machine_check(kvm::Vm& vm, kvm::Vcpu& vcpu,
                                          const MachineCheck& mc) override;

  kvm::HypercallDecode decode_hypercall(const kvm::Vm&, const VmExit& e) const override;
  void conversion_done(kvm::Vm& vm, kvm::Vcpu& vcpu, const kvm::HypercallDecode& d,
                       uint64_t ret) override;

  // The guest kernel (models/guest) that gets #VE and MapGPA completions; none: a #VE stops the
  // vCPU.
  void set_guest_side(TdxGuestSide* g) { guest_ = g; }
  TdxGuestSide* guest_side() const { return guest_; }
  // TdxGuestAbi. Each TDG.MEM.PAGE.ACCEPT is a TDCALL in flight (docs/tdx-model.md "Concurrency
  // and BUSY"): the vCPU (re-)enters the TD and catches up with its own time, the call holds the
  // entry lock for its cost (a host BLOCK/DEMOTE/REMOVE meeting it gets BUSY; a kick waits for
  // it), then it is charged and traced. BUSY / BUSY_HOST_PRIORITY are counted
  // (glue.guest_accept_busy) and returned: the guest kernel retries. An unknown vCPU id answers
  // TDX_OPERAND_INVALID.
  TdxResult guest_accept(unsigned vcpu, Gpa gpa, PageSize size) override;
  const TdxTdOptions& options() const { return options_; }
  void teardown(kvm::Vm& vm) override;
  // KVM_MEMORY_ENCRYPT_OP (tdx_vm_ioctl / tdx_vcpu_init_mem_region, arch/x86/kvm/vmx/tdx.c):
  // KVM_TDX_INIT_MEM_REGION (init_mem_page for each page, the source read from `mm`) and
  // KVM_TDX_FINALIZE_VM (finalize). Other ids: EINVAL, as tdx_vm_ioctl answers.
  Status mem_enc_ioctl(kvm::Vm& vm, HostMm& mm, kvm::kvm_memory_encrypt_cmd& cmd) override;

  // KVM_TDX_INIT_MEM_REGION for one 4 KiB page (before finalize): the page comes from the
  // memslot's guest_memfd (kvm_gmem_populate: no zeroing), SEPT.ADD for each missing level,
  // TDH.MEM.PAGE.ADD copying `source` (a host page holding the image, under key 0) with the MRTD
  // update, TDH.MR.EXTEND x16 (256 B each) when `measure`, and the folio marked uptodate. The GFN
  // must be private (attribute) and in a slot with a guest_memfd: EINVAL otherwise.
  Status init_mem_page(kvm::Vm& vm, Gfn gfn, Hpa source, bool measure);
  // KVM_TDX_FINALIZE_VM: TDH.MR.FINALIZE. The platform adds the initial image first
  // (init_mem_page), then finalizes before any vCPU runs.
  Status finalize(kvm::Vm& vm);
  // The TD's MRTD once finalized (nullopt before), as lowercase hex (96 digits).
  std::optional<std::string> mrtd_hex() const;
  size_t pages_added() const { return pages_added_; }

  // ---- For the platform and tests ----
  bool td_created() const { return td_created_; }
  Hpa tdr() const { return tdr_; }
  const TdxHost& host() const { return host_; }
  // The ownership graph (docs/ownership-graph.md "TDX"): the TDX module as the firmware principal,
  // every S-EPT leaf of the TD (TDH.MEM.SEPT.RD's view, module.for_each_sept_entry) and every PAMT
  // entry the TD owns or that is its TDR (module.pamt()), from the module's state, not the mirror.
  void describe_ownership(const kvm::Vm& vm, kvm::OwnershipVisitor& v) const override;
  std::vector<kvm::InvariantDef> invariants() const override { return tdx_invariants(&host_); }
  std::optional<KeyId> vm_key(const kvm::Vm&) const override {
    return td_created_ ? std::optional<KeyId>(hkid_) : std::nullopt;
  }
  KeyId hkid() const { return hkid_; }
  Gpa shared_bit() const { return Gpa(shared_mask_); }
  std::optional<WalkRoot> walk_root() const { return host_.module().sept_walk_root(tdr_); }
  std::optional<Hpa> tdvpr_of(uint32_t vcpu_id) const;
  // Frames the TD holds from the VM's allocator (TDR, TDCS, TDVPS, S-EPT pages).
  size_t frames_held() const;
  // Private 4 KiB pages mapped (the mirror; a 2 MiB leaf counts 512).
  size_t private_pages_mapped() const { return mirror_.size() + 512 * mirror_2m_.size(); }
  // 2 MiB private leaves mapped.
  size_t private_2m_mapped() const { return mirror_2m_.size(); }
  TdxHost& host() { return host_; }

 private:
  struct VcpuTd {
    uint32_t id = 0;
    Hpa tdvpr;
    std::vector<Hpa> tdvpx;
    kvm::Vcpu* vcpu = nullptr;
    // A TDCALL of this vCPU in flight (its thread is in Kvm::yield). A kick waits for it to
    // retire; if time cannot pass (no shell) the kick completes it, and the vCPU's thread takes
    // the result from completed_early.
    TdxTicket* inflight = nullptr;
    std::optional<TdxResult> completed_early;
  };
  // Charges the module's cost to KVM's meter and counts errors.
  // and traces the call (platform.<vm>.tdx: leaf, gpa, level, hpa, status; docs/trace-output.md).
  static constexpr uint64_t kNoArg = ~uint64_t{0};
  // `prepaid`: cycles of r.cost that already passed in flight (not charged again).
  TdxResult charged(kvm::Vm& vm, TdxResult r, std::string_view leaf, uint64_t gpa = kNoArg,
                    int level = -1, uint64_t hpa = kNoArg, int hkid = -1,
                    Cycles prepaid = Cycles(0));
  // A module call run split (A5): catch up with this thread's time, begin() (checks, locks), let
  // the call's cost pass with the locks held (Kvm::yield), complete (commit, release), charge
  // and trace. `v`: the vCPU issuing a TDCALL (kicks wait for it).
  // catch_up = false: the caller has caught up already.
  template <class B>
  TdxResult in_flight(kvm::Vm& vm, VcpuTd* v, B&& begin, std::string_view leaf,
                      uint64_t gpa = kNoArg, int level = -1, uint64_t hpa = kNoArg,
                      bool catch_up = true);
  // mmu_lock: wait (spinning) while a zap or DEMOTE holds it for write (counted as fault_waits).
  void wait_for_zap(kvm::Vm& vm);
  // Spin (through Kvm::yield) while cond() holds and time can pass; true if it had to wait.
  template <class C>
  bool spin_while(kvm::Vm& vm, C&& cond);
  static Errno to_errno(const TdxResult& r);
  Result<Hpa> alloc_frame(kvm::Vm& vm);
  void clear_page(kvm::Vm& vm, Hpa page);
  VcpuTd* vcpu_td(const kvm::Vcpu& v);
  // VP.ENTER if the vCPU is not in the TD (flushing its TLB when the module did INVEPT).
  bool ensure_entered(kvm::Vm& vm, VcpuTd& v, std::string* why);
  void kick_all(kvm::Vm& vm);
  // BLOCK/TRACK/REMOVE with KVM's "BUSY: kick everyone, retry once" (tdh_do_no_vcpus).
  // `begin` starts the call (a TdxTicket); each attempt runs in flight.
  template <class B>
  TdxResult with_no_vcpus(kvm::Vm& vm, std::string_view leaf, uint64_t gpa, int level, B&& begin);
  bool zap_one(kvm::Vm& vm, Gfn gfn, Pfn pfn, PageSize size = PageSize::k4K);
  // BLOCK, TRACK (kick), DEMOTE of the 2 MiB leaf at `head` into a new S-EPT page; the mirror
  // then holds its 512 4 KiB pages.
  bool demote_2m(kvm::Vm& vm, Gfn head);
  // SEPT.ADD for every missing level above the leaf of `gpa` at `leaf_level` (0: 4 KiB, 1:
  // 2 MiB), top down (A10.2).
  Status ensure_sept(kvm::Vm& vm, Gpa gpa, unsigned leaf_level = 0);

  TdxHost& host_;
  bool td_created_ = false;
  bool finalized_ = false;
  Hpa tdr_;
  KeyId hkid_ = 0;
  uint64_t shared_mask_ = 0;
  unsigned sept_levels_ = 4;
  size_t pages_added_ = 0;
  // kvm_tdx->wait_for_sept_zap (A5: set while a BUSY zap SEAMCALL is retried; no TD entry).
  bool wait_for_sept_zap_ = false;
  // Zaps in progress: KVM holds mmu_lock for write over each (A5), so a vCPU's fault waits.
  unsigned zapping_ = 0;
  std::vector<Hpa> tdcs_;
  std::vector<VcpuTd> vcpus_;
  std::map<std::pair<unsigned, uint64_t>, Hpa> sept_pages_;  // (level, gpa base) -> page
  std::map<uint64_t, Pfn> mirror_;                           // gfn -> private frame (4 KiB)
  std::map<uint64_t, Pfn> mirror_2m_;  // head gfn -> first frame (2 MiB leaves)
  TdxTdOptions options_;
  kvm::Vm* vm_ = nullptr;  // the VM this backend serves (vm_init)
  TdxGuestSide* guest_ = nullptr;
  uint64_t accept_work_ = 0;  // ACCEPT cycles since the last interrupt (accept_interrupt_cycles)
  bool vm_dead_ = false;      // kvm_vm_dead after a guest access before accepting
  // guest_access_policy's, made on first use (the Secure EPT's root and the HKID are the TD's
  // from TDH.MNG.CREATE on).
  mutable std::unique_ptr<TdxGuestAccessPolicy> access_policy_;
};

// KVM_X86_TDX_VM's factory for Kvm::register_backend: a TD with `options` (nullopt: the host's
// defaults).
std::unique_ptr<kvm::KvmBackend> make_tdx_backend(TdxHost& host,
                                                  std::optional<TdxTdOptions> options = {});

// The TDX commands of KVM_MEMORY_ENCRYPT_OP (arch/x86/include/uapi/asm/kvm.h enum kvm_tdx_cmd_id).
inline constexpr uint32_t KVM_TDX_CAPABILITIES = 0;
inline constexpr uint32_t KVM_TDX_INIT_VM = 1;
inline constexpr uint32_t KVM_TDX_INIT_VCPU = 2;
inline constexpr uint32_t KVM_TDX_INIT_MEM_REGION = 3;
inline constexpr uint32_t KVM_TDX_FINALIZE_VM = 4;
inline constexpr uint32_t KVM_TDX_MEASURE_MEMORY_REGION = 1u << 0;
// struct kvm_tdx_init_mem_region: updated in place as pages are added.
struct kvm_tdx_init_mem_region {
  uint64_t source_addr = 0;  // user address of the source (the caller's mm)
  uint64_t gpa = 0;
  uint64_t nr_pages = 0;
};
// The TDX backend of a VM, or nullptr for other types.
KvmTdxBackend* tdx_backend_of(kvm::Vm& vm);

}  // namespace cvmsim::tdx
