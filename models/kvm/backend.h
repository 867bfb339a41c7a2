// The interface between generic KVM and a VM type's backend (ARCHITECTURE.md "Backends behind
// one KVM interface"). The hooks are Linux's: kvm_arch_init_vm / vcpu create, the gmem prepare and
// invalidate hooks (kvm-guest-memfd.md §6.3, §6.4), kvm_arch_pre/post_set_memory_attributes
// (§5), how a fault is classified private (§7), the private max mapping level (§5), the private
// map/unmap ("external" S-EPT hooks on TDX, §10), how a guest's conversion request is decoded
// (§11), and teardown. Nothing backend-specific lives in generic KVM code.
//
// Conversion semantics differ: on TDX and SNP a different frame backs each side, so contents are
// lost on conversion; on pKVM the same frame is shared in place, so contents are kept. A backend
// says which (conversion_contents()); generic code never assumes either.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hw/base/addr.h"
#include "hw/base/cycles.h"
#include "hw/base/page_size.h"
#include "hw/base/result.h"
#include "hw/cpu/guest_access_policy.h"
#include "hw/cpu/vm_exit.h"
#include "hw/mmu/perms.h"
#include "hw/mmu/stage2_table.h"
#include "hw/mmu/walker.h"
#include "models/host/host_mm.h"
#include "models/kvm/invariant.h"
#include "models/kvm/kvm_types.h"
#include "models/kvm/ownership.h"
#include "models/kvm/uapi.h"

namespace cvmsim::kvm {

class Vm;
class Vcpu;

enum class ConversionContents : uint8_t { kLost, kKept };

// A guest's request to convert a range, decoded from its ABI (KVM_HC_MAP_GPA_RANGE, TDG.VP.VMCALL
// <MapGPA>, an SNP page-state change, a pKVM share hypercall).
struct ConversionRequest {
  Gpa gpa;
  uint64_t npages = 0;
  bool to_private = false;
  uint64_t attrs_arg = 0;  // the raw attribute argument forwarded to userspace
};

// What the decoder says about a hypercall.
struct HypercallDecode {
  enum Kind : uint8_t {
    kNotConversion,  // not a conversion request: generic hypercall handling
    kConversion,     // forward to userspace as KVM_EXIT_HYPERCALL(KVM_HC_MAP_GPA_RANGE)
    kInvalid,        // malformed: return `guest_ret` to the guest without exiting
  };
  Kind kind = kNotConversion;
  ConversionRequest req;
  uint64_t guest_ret = 0;
};

class KvmBackend {
 public:
  virtual ~KvmBackend() = default;

  virtual uint32_t vm_type() const = 0;
  virtual std::string_view name() const = 0;
  // kvm_arch_has_private_mem (§2).
  virtual bool has_private_mem() const = 0;
  // kvm_arch_supports_gmem_init_shared: x86 allows INIT_SHARED only without private memory (§2).
  virtual bool supports_gmem_init_shared() const { return !has_private_mem(); }
  // kvm->arch.pre_fault_allowed at creation (§9); CoCo backends set it after finalisation.
  virtual bool pre_fault_allowed_at_create() const { return true; }
  virtual ConversionContents conversion_contents() const = 0;
  // kvm_arch_has_readonly_mem: READONLY memslots allowed (§4). False for VMs with protected state.
  virtual bool has_readonly_mem() const { return true; }

  // kvm_arch_init_vm / destroy, vCPU create / destroy.
  virtual Status vm_init(Vm&) { return {}; }
  virtual void vm_destroy(Vm&) {}
  virtual Status vcpu_create(Vm&, Vcpu&) { return {}; }
  virtual void vcpu_destroy(Vm&, Vcpu&) {}

  // §7: the gfn a faulting GPA names (TDX strips the shared bit) and whether the access is
  // private (SW_PROTECTED: the attribute; TDX: shared bit clear; SNP: the C-bit error code).
  virtual Gfn fault_gfn(const Vm&, Gpa gpa) const { return gpa_to_gfn(gpa); }
  virtual bool fault_is_private(const Vm& vm, Gfn gfn, const VmExit& e) const = 0;

  // kvm_gfn_direct_bits (§7): GFN bits KVM ORs into every shared ("direct") mapping; the shared
  // stage-2 table is indexed by gfn | direct bits (TDX: the shared bit, so the shared EPT maps
  // gpa|S as the hardware looks it up). Attributes and memslots always use the stripped gfn.
  virtual uint64_t gfn_direct_bits(const Vm&) const { return 0; }

  // kvm_arch_gmem_prepare: called on every guest_memfd lookup for the guest; must be idempotent.
  virtual Status gmem_prepare(Vm&, Gfn, Pfn, int /*order*/) { return {}; }
  // kvm_arch_gmem_invalidate: a guest_memfd folio is being freed.
  virtual void gmem_invalidate(Vm&, Pfn /*start*/, Pfn /*end*/) {}

  // Extra arch work around attribute changes; generic code already zaps the range (§5).
  // Returns "TLB flush needed".
  virtual bool pre_set_memory_attributes(Vm&, GfnRange, uint64_t /*attrs*/) { return false; }
  virtual void post_set_memory_attributes(Vm&, GfnRange, uint64_t /*attrs*/) {}

  // Private mappings, named after Linux's external-SPTE hooks (kvm_x86_ops.set_external_spte,
  // remove_external_spte: KVM mirrors the private root and the vendor writes the real one,
  // kvm-guest-memfd.md §10). A backend whose private memory lives in the normal stage-2 table
  // (sw_protected) leaves these to generic code by returning false from has_private_root().
  virtual bool has_private_root() const { return false; }
  virtual Result<Cycles> set_external_spte(Vm&, Gfn, Pfn, PageSize, Perms) {
    return Errno::kEOPNOTSUPP;
  }
  virtual Result<Cycles> remove_external_spte(Vm&, Gfn, PageSize) { return Errno::kEOPNOTSUPP; }
  // Zaps private mappings of r in the private root; returns "TLB flush needed".
  virtual bool zap_private_range(Vm&, GfnRange) { return false; }
  // gmem_max_mapping_level (§5): the vendor cap on private mappings (4K unless overridden; TDX
  // allows 2M with its huge_private option). The folio's order caps it again (mainline: 0).
  virtual PageSize gmem_max_mapping_level(const Vm&, Gfn) const { return PageSize::k4K; }

  // For checkers, with a private root: whether the vCPU translates gpa (as the guest issues it,
  // shared bit included) through the private root, and what that root maps there now (a leaf
  // only if hardware would use it).
  virtual bool translates_privately(const Vm&, Gpa) const { return false; }
  virtual Stage2Lookup lookup_private(const Vm&, Gpa) const { return {}; }
  // For transition coverage (kvm_machines.h): whether the private root holds a leaf for gfn in
  // any state (TDX: an AUGed, not yet accepted PENDING leaf counts).
  virtual bool has_private_leaf(const Vm&, Gfn) const { return false; }

  // How the VM's vCPUs translate and check guest accesses (hw/cpu/guest_access_policy.h): the
  // root and key of each GPA and the checks after translation (TDX: private GPAs through the
  // Secure EPT under the TD's HKID). nullptr: one root (the stage-2 table), the vCPU's key, no
  // checks. The platform gives it to every vCPU it builds; the backend keeps it alive as long as
  // the VM.
  virtual const GuestAccessPolicy* guest_access_policy(const Vm&) const { return nullptr; }

  // A stage-2 fault on a GPA the private root translates, before generic KVM sees it: the
  // backend asks its firmware what the fault is (TDX: the module's EPT-violation dispatch says
  // #VE to the guest, or a TD exit). kToKvm: go on with KVM's fault path; kRetry: handled below
  // KVM (e.g. by the guest side), retry the access; kStop: stop the vCPU with `reason`.
  struct PrivateFaultAction {
    enum Kind : uint8_t { kToKvm, kRetry, kStop };
    Kind kind = kToKvm;
    std::string reason;
  };
  virtual PrivateFaultAction private_fault(Vm&, Vcpu&, const VmExit&) { return {}; }
  // A machine check in the guest (hw/cpu/vm_exit.h): nullopt for the default handling.
  virtual std::optional<ExitAction> machine_check(Vm&, Vcpu&, const MachineCheck&) {
    return std::nullopt;
  }

  // The guest's conversion ABI (§11).
  virtual HypercallDecode decode_hypercall(const Vm&, const VmExit& e) const = 0;
  // A conversion request the VMM completed, `ret` going back to the guest: the point where the
  // guest resumes after the hypercall (TDX: the guest kernel accepts what became private).
  virtual void conversion_done(Vm&, Vcpu&, const HypercallDecode&, uint64_t /*ret*/) {}

  // kvm_x86_ops.mem_enc_ioctl: the VM-scoped encryption commands (KVM_MEMORY_ENCRYPT_OP; TDX:
  // KVM_TDX_INIT_MEM_REGION, KVM_TDX_FINALIZE_VM; SNP: KVM_SEV_SNP_LAUNCH_START/UPDATE/FINISH).
  // `mm` is the calling process's address space (source buffers are its user memory). A VM
  // type without such commands answers ENOTTY, as Linux's vendor hook does for a VM that is not
  // of its kind.
  virtual Status mem_enc_ioctl(Vm&, HostMm& /*mm*/, kvm_memory_encrypt_cmd&) {
    return Errno::kENOTTY;
  }

  // VM teardown: reclaim whatever the backend owns.
  virtual void teardown(Vm&) {}

  // Key hygiene (ISO-8): the memory-encryption key id the VM's private memory is encrypted under
  // (a TDX HKID, later an SEV ASID) while the VM holds one, else nullopt. sim/invariants reads it
  // with PhysMem's per-line key tags, so it needs no backend switch.
  virtual std::optional<KeyId> vm_key(const Vm&) const { return std::nullopt; }

  // The ownership graph (docs/ownership-graph.md): the backend's hardware ownership structures
  // beyond KVM's stage-2 table for this VM (TDX: the S-EPT leaves and the PAMT entries the
  // module holds for the TD), read from the firmware's real state. Default: none.
  virtual void describe_ownership(const Vm&, OwnershipVisitor&) const {}

  // The backend's own isolation invariants (tdx-snp.md T1-T6, S1-S8; pkvm 1-9), checked with
  // the generic ones by sim/invariants.
  virtual std::vector<InvariantDef> invariants() const { return {}; }
};

// KVM_X86_DEFAULT_VM (§10): no private memory, every fault shared.
std::unique_ptr<KvmBackend> make_default_backend();

// Shared decoder of KVM_HC_MAP_GPA_RANGE (§11): gpa page-aligned, npages != 0, no gfn overflow,
// else -KVM_EINVAL to the guest.
HypercallDecode decode_map_gpa_range(const VmExit& e);

}  // namespace cvmsim::kvm
