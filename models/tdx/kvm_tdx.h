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
//   map_private   SEPT.ADD for missing levels, then PAGE.AUG (PENDING)
//   zap           RANGE.BLOCK, MEM.TRACK, kick every vCPU (TD exit), PAGE.REMOVE,
//                 PHYMEM.PAGE.WBINVD, then the host clears the page (MOVDIR64B under key 0)
//   private fault the module's EPT-violation dispatch first: #VE (or a PENDING TD exit) is a
//                 guest ACCEPT, done here on the guest kernel's behalf (stand-in, see below)
//   teardown      VP.FLUSH, VPFLUSHDONE, CACHE.WB per package, KEY.FREEID, RECLAIM every page
//                 (TDR last), frames cleared and returned to the VM's FrameAllocator
//
// Like KVM, the glue keeps a mirror of what it mapped (private leaves and S-EPT pages) instead
// of reading the S-EPT, which is TD-private (A5); the module's inspection is used only for the
// checkers' view (lookup_private). Statuses map to errnos as KVM does: TDX_OPERAND_BUSY* and
// PREVIOUS_TLB_EPOCH_BUSY -> EBUSY, every other error -> EIO. The module enforces its own rules;
// the glue never assumes a call succeeded.
//
// Guest side (stand-in): there is no guest-kernel model yet, so when the module says "inject
// #VE" for a PENDING page, or (SEPT_VE_DISABLE set, the default) exits with EEQ
// PENDING_EPT_VIOLATION, the glue issues TDG.MEM.PAGE.ACCEPT(4K) for the guest, charges it and
// has the access retried. A real Linux guest accepts before touching (MapGPA then ACCEPT); a
// separate guest-kernel model should take this over.
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
#include "models/tdx/tdx_module_core.h"

namespace cvmsim::tdx {

struct TdxGlueConfig {
  // TD ATTRIBUTES.SEPT_VE_DISABLE (bit 28): Linux guests require it (A8).
  bool sept_ve_disable = true;
  // TD_PARAMS.MAX_VCPUS.
  unsigned max_vcpus = 64;
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

  // HKIDs for TDs: [private_hkid_min, private_hkid_max] minus the global KeyID, lowest first.
  std::optional<KeyId> alloc_hkid();
  void free_hkid(KeyId k);
  unsigned hkids_in_use() const;

  struct Stats {
    uint64_t seamcall_errors = 0;     // module calls the glue made that failed (EIO/EBUSY)
    uint64_t busy_retries = 0;        // BUSY answered by kicking the vCPUs and retrying once
    uint64_t private_maps = 0;        // PAGE.AUG done for KVM faults
    uint64_t sept_pages_added = 0;    // SEPT.ADD done
    uint64_t pages_added = 0;         // PAGE.ADD done (initial image, before finalize)
    uint64_t mr_extends = 0;          // MR.EXTEND done (256 B each)
    uint64_t private_zaps = 0;        // private pages removed (BLOCK..REMOVE..clear)
    uint64_t guest_accepts = 0;       // ACCEPTs issued on the guest kernel's behalf
    uint64_t vcpu_kicks = 0;          // TD exits forced for TLB tracking
    uint64_t vp_enters = 0;
    uint64_t machine_checks = 0;
    uint64_t pages_reclaimed = 0;     // PHYMEM.PAGE.RECLAIM at teardown
    uint64_t pages_cleared = 0;       // pages the host cleared with MOVDIR64B (zap, teardown)
    uint64_t hkid_exhausted = 0;      // VM creations refused for lack of an HKID
    uint64_t td_exits_ept_violation = 0;  // TD exits by reason, as the glue saw them
    uint64_t td_exits_pending = 0;
    uint64_t td_exits_tdvmcall = 0;
    uint64_t td_exits_async = 0;
    uint64_t td_exits_fatal = 0;
    uint64_t ves_injected = 0;        // #VE the module injected for a PENDING page
    uint64_t tds_reclaimed = 0;       // TDs whose TDR was reclaimed (teardown complete)
    uint64_t hkids_freed = 0;         // HKIDs back in the allocator after KEY.FREEID
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
// The TDX invariants (tdx-snp.md Part D) this backend contributes to the checker: T2 so far.
std::vector<kvm::InvariantDef> tdx_invariants();

class KvmTdxBackend final : public kvm::KvmBackend {
 public:
  explicit KvmTdxBackend(TdxHost& host) : host_(host) {}

  uint32_t vm_type() const override;
  std::string_view name() const override { return "tdx"; }
  bool has_private_mem() const override { return true; }
  bool supports_gmem_init_shared() const override { return false; }
  bool pre_fault_allowed_at_create() const override { return false; }
  kvm::ConversionContents conversion_contents() const override { return kvm::ConversionContents::kLost; }
  bool has_readonly_mem() const override { return false; }

  Status vm_init(kvm::Vm& vm) override;
  Status vcpu_create(kvm::Vm& vm, kvm::Vcpu& vcpu) override;

  Gfn fault_gfn(const kvm::Vm&, Gpa gpa) const override { return gpa_to_gfn(Gpa(gpa.value() & ~shared_mask_)); }
  bool fault_is_private(const kvm::Vm&, Gfn, const VmExit& e) const override {
    return !(e.gpa.value() & shared_mask_);
  }
  uint64_t gfn_direct_bits(const kvm::Vm&) const override { return shared_mask_ >> kPageShift; }

  bool has_private_root() const override { return true; }
  Result<Cycles> map_private(kvm::Vm& vm, Gfn gfn, Pfn pfn, PageSize size, Perms perms) override;
  Result<Cycles> unmap_private(kvm::Vm& vm, Gfn gfn, PageSize size) override;
  bool zap_private_range(kvm::Vm& vm, kvm::GfnRange r) override;
  PageSize private_max_level(const kvm::Vm&, Gfn) const override { return PageSize::k4K; }

  bool translates_privately(const kvm::Vm&, Gpa gpa) const override {
    return td_created_ && !(gpa.value() & shared_mask_);
  }
  Stage2Lookup lookup_private(const kvm::Vm&, Gpa gpa) const override;
  bool has_private_leaf(const kvm::Vm& vm, Gfn gfn) const override;
  PrivateFaultAction private_fault(kvm::Vm& vm, kvm::Vcpu& vcpu, const VmExit& e) override;
  std::optional<ExitAction> machine_check(kvm::Vm& vm, kvm::Vcpu& vcpu, const MachineCheck& mc) override;

  kvm::HypercallDecode decode_hypercall(const kvm::Vm&, const VmExit& e) const override;
  void teardown(kvm::Vm& vm) override;

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
  std::vector<kvm::InvariantDef> invariants() const override { return tdx_invariants(); }
  KeyId hkid() const { return hkid_; }
  Gpa shared_bit() const { return Gpa(shared_mask_); }
  std::optional<WalkRoot> walk_root() const { return host_.module().sept_walk_root(tdr_); }
  std::optional<Hpa> tdvpr_of(uint32_t vcpu_id) const;
  // Frames the TD holds from the VM's allocator (TDR, TDCS, TDVPS, S-EPT pages).
  size_t frames_held() const;
  // Private pages mapped (the mirror).
  size_t private_pages_mapped() const { return mirror_.size(); }
  TdxHost& host() { return host_; }

 private:
  struct VcpuTd {
    uint32_t id = 0;
    Hpa tdvpr;
    std::vector<Hpa> tdvpx;
    kvm::Vcpu* vcpu = nullptr;
  };
  // Charges the module's cost to KVM's meter and counts errors.
  // and traces the call (platform.<vm>.tdx: leaf, gpa, level, hpa, status; docs/trace-output.md).
  static constexpr uint64_t kNoArg = ~uint64_t{0};
  TdxResult charged(kvm::Vm& vm, TdxResult r, std::string_view leaf, uint64_t gpa = kNoArg, int level = -1,
                    uint64_t hpa = kNoArg, int hkid = -1);
  static Errno to_errno(const TdxResult& r);
  Result<Hpa> alloc_frame(kvm::Vm& vm);
  void clear_page(kvm::Vm& vm, Hpa page);
  VcpuTd* vcpu_td(const kvm::Vcpu& v);
  // VP.ENTER if the vCPU is not in the TD (flushing its TLB when the module did INVEPT).
  bool ensure_entered(kvm::Vm& vm, VcpuTd& v, std::string* why);
  void kick_all(kvm::Vm& vm);
  // BLOCK/TRACK/REMOVE with KVM's "BUSY: kick everyone, retry once" (tdh_do_no_vcpus).
  template <class F>
  TdxResult with_no_vcpus(kvm::Vm& vm, std::string_view leaf, uint64_t gpa, int level, F&& call);
  bool zap_one(kvm::Vm& vm, Gfn gfn, Pfn pfn);
  // SEPT.ADD for every missing level above the 4 KiB leaf of `gpa`, top down (A10.2).
  Status ensure_sept(kvm::Vm& vm, Gpa gpa);

  TdxHost& host_;
  bool td_created_ = false;
  bool finalized_ = false;
  Hpa tdr_;
  KeyId hkid_ = 0;
  uint64_t shared_mask_ = 0;
  unsigned sept_levels_ = 4;
  size_t pages_added_ = 0;
  std::vector<Hpa> tdcs_;
  std::vector<VcpuTd> vcpus_;
  std::map<std::pair<unsigned, uint64_t>, Hpa> sept_pages_;  // (level, gpa base) -> page
  std::map<uint64_t, Pfn> mirror_;                           // gfn -> private frame (4 KiB)
};

// KVM_X86_TDX_VM's factory for Kvm::register_backend.
std::unique_ptr<kvm::KvmBackend> make_tdx_backend(TdxHost& host);
// The TDX backend of a VM, or nullptr for other types.
KvmTdxBackend* tdx_backend_of(kvm::Vm& vm);

}  // namespace cvmsim::tdx
