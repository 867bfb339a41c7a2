// A KVM virtual machine (struct kvm): memslots, memory attributes, the MMU-invalidation state
// and the KVM MMU's fault and zap paths over a stage-2 table in hw, plus the hooks guest_memfd
// and the host mm call back into. The ioctl-level validation lives here too, in the order of
// kvm-guest-memfd.md (§4 memslots, §5 attributes, §7 fault path, §9 pre-fault); the fd-level
// parts (fd lookup, copy_from_user) are in kvm.h's facade.
//
// Every operation adds what it cost to the owning Kvm's cost meter (Kvm::take_cost), so the
// timed shell can charge it to whichever thread did the work.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hw/base/addr.h"
#include "hw/base/principal.h"
#include "hw/base/result.h"
#include "hw/base/stat_visitor.h"
#include "hw/base/state_machine.h"
#include "hw/memory/frame_allocator.h"
#include "hw/memory/phys_mem.h"
#include "hw/mmu/pte_format.h"
#include "hw/mmu/stage2_table.h"
#include "models/host/host_mm.h"
#include "models/kvm/backend.h"
#include "models/kvm/guest_memfd.h"
#include "models/kvm/kvm_config.h"
#include "models/kvm/kvm_types.h"
#include "models/kvm/mem_attributes.h"
#include "models/kvm/memslot.h"
#include "models/kvm/uapi.h"

namespace cvmsim::kvm {

class Kvm;
class Vcpu;

// One stage-2 fault as the fault path sees it (struct kvm_page_fault).
struct PageFault {
  Gfn gfn;
  bool write = false;
  bool exec = false;
  bool is_private = false;
  bool prefault = false;  // KVM_PRE_FAULT_MEMORY
  // Largest mapping the fault may install (TDX: the level of the guest's ACCEPT that exited,
  // tdx_handle_ept_violation's accept level); the default leaves it to max_mapping_level.
  PageSize max_level = PageSize::k1G;
};

// Where a fault ended (RET_PF_* and the exits to userspace, §7, §8).
struct FaultOutcome {
  enum Kind : uint8_t {
    kFixed,            // a mapping is installed: re-enter
    kRetry,            // RET_PF_RETRY: an invalidation raced, or the slot is being changed
    kMemoryFaultExit,  // KVM_RUN returns -1/err with KVM_EXIT_MEMORY_FAULT
    kEmulate,          // no memslot and a shared access: emulated MMIO (KVM_EXIT_MMIO)
  };
  Kind kind = kFixed;
  Errno err = Errno::kEFAULT;  // kMemoryFaultExit: EFAULT or EHWPOISON (or the gmem error)
  uint64_t mf_flags = 0, mf_gpa = 0, mf_size = 0;
  PageSize level = PageSize::k4K;  // kFixed: the mapping installed
  std::string why;                 // short cause, for traces ("attribute mismatch", ...)
};

class Vm final : public GmemVm, public MmuNotifier {
 public:
  struct Env {
    PhysMem& mem;
    FrameAllocator& frames;
    HostMm& mm;           // the creating process's address space (kvm->mm)
    Stage2Format format;  // of the VM's stage-2 tables
    Principal principal;  // whose data the guest writes
    uint16_t asid;        // TLB tag of this VM's vCPUs
  };

  Vm(Kvm& kvm, std::unique_ptr<KvmBackend> backend, const Env& env, const KvmConfig& cfg,
     std::string name);
  ~Vm() override;
  // kvm_destroy_vm's teardown: memslots, vCPUs, tables and the notifier go. The object itself
  // stays (owned by Kvm) because guest_memfd may still call arch_gmem_invalidate after the
  // VM's last kvm_put, as Linux does when the file is released (§6.2).
  void destroy();
  // Second construction step (allocates the root table, calls the backend's vm_init).
  Status init();

  const std::string& name() const { return name_; }
  uint32_t type() const { return backend_->vm_type(); }
  KvmBackend& backend() { return *backend_; }
  const KvmBackend& backend() const { return *backend_; }
  Kvm& kvm() { return kvm_; }
  PhysMem& mem() { return env_.mem; }
  FrameAllocator& frames() { return env_.frames; }
  HostMm& mm() { return env_.mm; }
  Principal principal() const { return env_.principal; }
  uint16_t asid() const { return env_.asid; }
  Stage2Table& stage2() { return *stage2_; }
  const KvmConfig& config() const { return cfg_; }

  // ---- Lifetime (kvm_get_kvm / kvm_put_kvm) ----
  // References: the VM fd, every vCPU, every guest_memfd file (§6.2). At zero the VM is
  // destroyed by the Kvm that owns it.
  uint64_t users() const { return users_; }
  bool dead() const { return dead_; }
  void mark_dead() { dead_ = true; }

  // ---- Memory attributes (§5) ----
  uint64_t supported_attributes() const;
  bool mem_is_private(Gfn gfn) const {
    return (attrs_->get(gfn) & KVM_MEMORY_ATTRIBUTE_PRIVATE) != 0;
  }
  uint64_t get_memory_attributes(Gfn gfn) const { return attrs_->get(gfn); }
  // kvm_range_has_memory_attributes
  bool range_has_memory_attributes(GfnRange r, uint64_t mask, uint64_t attrs) const;
  // KVM_SET_MEMORY_ATTRIBUTES after copy_from_user.
  Status set_memory_attributes(const kvm_memory_attributes& a);
  const MemAttributeStore& attributes() const { return *attrs_; }

  // ---- Memslots (§4) ----
  // KVM_SET_USER_MEMORY_REGION{,2} after copy_from_user; `v2` selects the flag rule.
  // `resolve` looks up the guest_memfd fd: EBADF if not open, EINVAL if not a guest_memfd.
  using GmemResolver = std::function<Result<GmemFile*>(uint32_t fd)>;
  Status set_memory_region(const kvm_userspace_memory_region2& r, bool v2,
                           const GmemResolver& resolve);
  const MemslotSet& memslots(uint16_t as_id = 0) const { return slots_[as_id]; }
  static constexpr uint16_t kAddressSpaces = 2;  // x86 with SMM

  // ---- MMU invalidation protocol (§5) ----
  void mmu_invalidate_begin() override;
  void mmu_invalidate_range_add(GfnRange r);
  void mmu_invalidate_end() override;
  uint64_t mmu_invalidate_seq() const { return inv_seq_; }
  // mmu_invalidate_retry_gfn: true if a fault that snapshotted `seq` must retry.
  bool mmu_invalidate_retry_gfn(uint64_t seq, Gfn gfn) const;

  // ---- KVM MMU ----
  // Zaps the stage-2 leaves of r selected by `filter`; returns "TLB flush needed".
  bool unmap_gfn_range(GfnRange r, AttrFilter filter);
  void flush_remote_tlbs() override;
  // The fault path in two phases so that an invalidation can be placed between them (the
  // race the mmu_seq protocol closes, §5): faultin resolves the frame after snapshotting the
  // sequence; install re-checks it under mmu_lock and maps.
  struct FaultContext {
    PageFault fault;
    uint64_t mmu_seq = 0;
    Memslot* slot = nullptr;
    Pfn pfn;
    PageSize level = PageSize::k4K;
    bool writable = true;
    bool resolved = false;
  };
  std::optional<FaultOutcome> faultin(FaultContext& ctx);  // nullopt: go on to install
  FaultOutcome install(FaultContext& ctx);
  FaultOutcome page_fault(const PageFault& f);  // both phases
  // Largest mapping level allowed at gfn (kvm_mmu_max_mapping_level).
  PageSize max_mapping_level(const Memslot& slot, Gfn gfn, bool is_private) const;

  // ---- vCPUs ----
  Result<Vcpu*> create_vcpu(uint32_t id);
  Vcpu* vcpu(uint32_t id) const;
  size_t num_vcpus() const { return vcpus_.size(); }
  uint64_t exit_hypercall_mask = 0;  // KVM_CAP_EXIT_HYPERCALL
  bool pre_fault_allowed = true;     // kvm->arch.pre_fault_allowed (§9)

  // ---- GmemVm (guest_memfd's view of its VM) ----
  void kvm_get() override { ++users_; }
  void kvm_put() override;
  bool mmu_unmap_gfn_range(SlotId slot, GfnRange gfns, AttrFilter filter) override;
  void gmem_slot_unbound(SlotId slot) override;
  Status arch_gmem_prepare(Gfn gfn, Pfn pfn, int order) override;
  void arch_gmem_invalidate(Pfn start, Pfn end) override;
  Principal gmem_principal() const override { return principal(); }

  // ---- MmuNotifier (the VMM's address space, §5 "host mm notifier events") ----
  void invalidate_range_start(Hva start, Hva end) override;
  void invalidate_range_end(Hva start, Hva end) override;

  void describe_stats(StatVisitor& v) const;

  // ---- For invariant checkers ----
  // GFN ranges whose mappings or attributes changed since the last take_dirty() (a checker
  // re-reads only those). `all` is set when too many ranges piled up, or for memslot changes.
  struct Dirty {
    std::vector<GfnRange> ranges;
    bool all = false;
  };
  Dirty take_dirty() {
    Dirty d;
    take_dirty(d);
    return d;
  }
  // The same, into a caller's buffer (swapping storage: no allocation in steady state).
  void take_dirty(Dirty& out) {
    out.ranges.clear();
    std::swap(out.ranges, dirty_.ranges);
    out.all = dirty_.all;
    dirty_.all = false;
  }
  bool is_dirty() const { return dirty_.all || !dirty_.ranges.empty(); }
  // Something outside KVM changed this VM's stage-2 table (a hostile host kernel in an attack
  // scenario): recorded like KVM's own changes, so incremental checks re-read the range.
  void note_changed(GfnRange r) {
    cov_forget();
    mark_dirty(r);
  }
  template <class F>
  void for_each_vcpu(F&& f) const {
    for (const auto& v : vcpus_) f(static_cast<const Vcpu&>(*v));
  }
  const Stage2Table& stage2() const { return *stage2_; }

 private:
  void mark_dirty(GfnRange r) {
    if (dirty_.all) return;
    // The same change is often recorded twice (an attribute update, then the zap of its
    // range): grow the last range when r overlaps or touches it, so the checker reads each
    // changed leaf once. The union of the ranges is unchanged.
    if (!dirty_.ranges.empty()) {
      GfnRange& last = dirty_.ranges.back();
      if (r.start <= last.end && last.start <= r.end) {
        last.start = std::min(last.start, r.start);
        last.end = std::max(last.end, r.end);
        return;
      }
    }
    if (dirty_.ranges.size() >= 256) {
      dirty_.all = true;
      dirty_.ranges.clear();
      return;
    }
    dirty_.ranges.push_back(r);
  }
  friend class Kvm;
  Status check_memory_region_flags(uint32_t flags) const;
  Status create_slot(const kvm_userspace_memory_region2& r, SlotId id, const GmemResolver& resolve);
  Status delete_slot(Memslot& s);
  void charge(Cycles c);
  void pre_set_memory_attributes(GfnRange r, uint64_t attrs, bool& flush);
  void post_set_memory_attributes(GfnRange r, uint64_t attrs);
  Result<Pfn> resolve_shared(FaultContext& ctx, FaultOutcome& exit);
  Status map_leaf(Gfn gfn, Pfn pfn, PageSize& level, bool is_private, bool writable);
  FaultOutcome memory_fault_exit(const PageFault& f, Errno err, std::string why) const;
  FaultOutcome page_fault_untraced(const PageFault& f);

  // Transition coverage of the GFN machine (kvm_machines.h): the state of one gfn, and a sample
  // of a range's gfns taken before an operation and recorded after it.
  uint8_t gfn_cov_state(Gfn gfn) const {
    if (cov_memo_.gen == cov_gen_ && cov_memo_.gfn == gfn) return cov_memo_.state;
    return gfn_cov_state_walk(gfn);
  }
  uint8_t gfn_cov_state_walk(Gfn gfn) const;
  // A range operation records up to kMax gfns spread evenly over the range (docs/coverage.md: a
  // sample keeps the cost of a 1 GiB conversion bounded).
  struct CovSample {
    static constexpr unsigned kMax = 16;
    std::array<Gfn, kMax> gfn;  // the first n are set (no zeroing: this is on the fault path)
    std::array<uint8_t, kMax> from;
    unsigned n = 0;
  };
  void cov_begin(CovSample& s, GfnRange r) const;
  void cov_end(const CovSample& s, uint8_t op, uint8_t outcome) const;
  // The last state computed, for backends with one stage-2 table: KVM's own changes to it (a
  // leaf mapped or zapped, an attribute stored) update it as they happen, anything else (a
  // memslot or binding change, a change from outside KVM) forgets it (cov_gen_). The next
  // operation on the same gfn (the punch-hole after the attribute change, the fault after the
  // punch-hole) then needs no stage-2 walk. Backends with a private root always walk.
  uint64_t cov_gen_ = 0;
  // The run's counts of gfn_machine(has_private_root()) (Kvm::coverage()), looked up once.
  mutable sm::Counts* cov_counts_ = nullptr;
  sm::Counts& cov_counts() const;
  mutable struct {
    Gfn gfn;
    uint64_t gen = ~uint64_t{0};
    uint8_t state = 0;
  } cov_memo_;
  void cov_forget() { ++cov_gen_; }
  bool cov_memo_covers(GfnRange r) const {
    return cov_memo_.gen == cov_gen_ && r.start <= cov_memo_.gfn && cov_memo_.gfn < r.end;
  }
  void cov_note(GfnRange r, uint8_t bit, bool set) {
    if (!cov_memo_covers(r)) return;
    cov_memo_.state = set ? static_cast<uint8_t>(cov_memo_.state | bit)
                          : static_cast<uint8_t>(cov_memo_.state & ~bit);
  }

  Kvm& kvm_;
  std::unique_ptr<KvmBackend> backend_;
  Env env_;
  KvmConfig cfg_;
  std::string name_;
  uint64_t users_ = 1;  // the VM fd
  bool dead_ = false;
  bool destroyed_ = false;
  std::weak_ptr<const void> mm_alive_;  // the creating process's address space still exists
  Dirty dirty_;
  std::unique_ptr<MemAttributeStore> attrs_;
  std::string trace_name_;
  std::array<MemslotSet, kAddressSpaces> slots_;
  uint64_t nr_memslot_pages_ = 0;
  std::unique_ptr<Stage2Table> stage2_;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;

  // kvm->mmu_invalidate_*
  uint64_t inv_in_progress_ = 0;
  uint64_t inv_seq_ = 0;
  Gfn inv_start_{~uint64_t{0}}, inv_end_{0};
  bool inv_range_valid_ = false;

  struct Stats {
    uint64_t faults = 0, faults_fixed = 0, faults_retried = 0, memory_fault_exits = 0,
             mmio_exits = 0;
    uint64_t private_faults = 0, shared_faults = 0, maps_4k = 0, maps_2m = 0, maps_1g = 0,
             huge_fallbacks = 0;
    uint64_t zapped_leaves = 0, tlb_flushes = 0, tlb_flushes_skipped = 0, invalidations = 0,
             notifier_invalidations = 0;
    uint64_t attr_sets = 0, attr_sets_noop = 0, attr_pages_changed = 0;
    uint64_t slots_created = 0, slots_deleted = 0, slots_moved = 0;
    uint64_t gmem_prepares = 0, gmem_invalidates = 0, bytes_zeroed = 0;
  } stats_;
};

}  // namespace cvmsim::kvm
