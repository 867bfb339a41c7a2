// guest_memfd: KVM's guest-private memory file (kvm-guest-memfd.md §3, §4 bind/unbind, §6).
//
// The model keeps mainline's split (§3 "Object model"):
//   GmemInode  the memory: size, flags, inode number, page cache (pgoff -> order-0 folio), and
//              the list of files that view it;
//   GmemFile   one VM's view: the VM it pins, the memslot bindings, its reference count (the fd
//              plus one per mmap) and its user mappings.
// Today one create makes exactly one file per inode (§3) and so does the model, but every
// invalidation walks the inode's file list as kvm_gmem_invalidate_begin does.
//
// Every uAPI-visible check returns a Linux errno, in the order the kernel makes it; each one
// cites the spec section. The C++ objects' lifetime (shared_ptr) is separate from the modelled
// file lifetime (the reference count): a released file stays inspectable and answers as Linux
// would (get_pfn -> EFAULT, §6.2).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <unordered_set>
#include <vector>

#include "hw/base/addr.h"
#include "hw/base/principal.h"
#include "hw/base/result.h"
#include "hw/base/stat_visitor.h"
#include "hw/memory/frame_allocator.h"
#include "hw/memory/initiator.h"
#include "hw/memory/phys_mem.h"
#include "models/kvm/kvm_types.h"
#include "models/kvm/uapi.h"

namespace cvmsim::kvm {

// What guest_memfd needs from the VM that created it; models/kvm's Vm implements it (tests use a
// fake that records calls). The object must outlive every guest_memfd created for it: as in
// Linux, the inode's folios are freed (arch_gmem_invalidate) after release has put the VM (§6.2).
class GmemVm {
 public:
  virtual ~GmemVm() = default;
  // kvm_get_kvm / kvm_put_kvm: the file pins its VM from create to release (§6.2).
  virtual void kvm_get() = 0;
  virtual void kvm_put() = 0;
  // kvm_mmu_invalidate_begin: once per VM per invalidation, only if a binding overlaps (§6.1).
  virtual void mmu_invalidate_begin() = 0;
  // kvm_mmu_unmap_gfn_range (with invalidate_range_add) for one binding's gfn range; returns
  // "flush needed".
  virtual bool mmu_unmap_gfn_range(SlotId slot, GfnRange gfns, AttrFilter filter) = 0;
  virtual void flush_remote_tlbs() = 0;
  virtual void mmu_invalidate_end() = 0;
  // Release: slot->gmem.file = NULL; the memslot stays, dead (§6.2).
  virtual void gmem_slot_unbound(SlotId slot) = 0;
  // kvm_arch_gmem_prepare: on every get_pfn, so the arch side must be idempotent (§6.3).
  virtual Status arch_gmem_prepare(Gfn gfn, Pfn pfn, int order) = 0;
  // .free_folio -> kvm_arch_gmem_invalidate(start, end) (§6.4). Linux's hook is arch-wide (no
  // kvm argument); the model reaches it through the creating VM, possibly after that VM's last
  // kvm_put.
  virtual void arch_gmem_invalidate(Pfn start, Pfn end) = 0;
  // The VM's principal, for the frames' provenance log (hw/memory/frame_history.h); a fake
  // without one is nobody.
  virtual Principal gmem_principal() const { return kNobody; }
};

// Source of distinct, deterministic inode numbers (§3: each guest_memfd has a distinct st_ino).
// One per simulated host, owned by whoever owns the GmemEnv.
class GmemInodeNumbers {
 public:
  uint64_t next() { return next_++; }

 private:
  uint64_t next_ = 2;  // 1 is the pseudo-fs root inode (pseudo_fs_fill_super)
};

struct GmemStats {
  uint64_t folios_allocated = 0;    // frames taken from the FrameAllocator into the page cache
  uint64_t folios_freed = 0;        // folios that left the page cache (punch or eviction)
  uint64_t frames_quarantined = 0;  // freed hwpoison folios whose frame is never reused
  uint64_t folios_zeroed = 0;
  uint64_t huge_folios_allocated = 0;  // 2 MiB blocks allocated whole (huge_folios)
  uint64_t bytes_zeroed = 0;
  uint64_t fallocate_calls = 0;
  uint64_t punch_holes = 0;
  uint64_t punched_folios = 0;
  uint64_t mmu_invalidations = 0;  // mmu_invalidate_begin calls (one per VM per invalidation)
  uint64_t gfn_ranges_unmapped = 0;
  uint64_t tlb_flushes = 0;
  uint64_t arch_invalidate_calls = 0;
  uint64_t binds = 0;
  uint64_t unbinds = 0;
  uint64_t get_pfn_calls = 0;
  uint64_t get_pfn_errors = 0;
  uint64_t prepare_calls = 0;
  uint64_t prepare_errors = 0;
  uint64_t populate_get_pfn_calls = 0;
  uint64_t mmaps = 0;
  uint64_t munmaps = 0;
  uint64_t user_faults = 0;
  uint64_t sigbus = 0;
  uint64_t sigsegv = 0;
  uint64_t dontneed_pages = 0;
  uint64_t memory_failures = 0;
  uint64_t releases = 0;
  uint64_t rebinds = 0;  // bindings to a VM other than the file's (rebinding policies)
  uint64_t scrubs = 0;   // whole-file scrubs done by a rebinding policy

  void describe_stats(StatVisitor& v) const;
};

// What a guest_memfd works with on its host.
// Binding a guest_memfd to a VM other than the one it was created for (the attack the
// guest_memfd design set out to stop: delete the victim's memslots, bind its file to an attacker
// VM). Mainline forbids it; the alternatives are for studying the policy space, and
// kUnsafeNoScrub exists to show that the checker catches what it breaks (ISO-6).
enum class GmemRebindPolicy : uint8_t {
  kForbid,         // mainline: EINVAL (kvm-guest-memfd.md §4, kvm_gmem_bind)
  kZeroOnUnbind,   // allowed; the file's pages are zeroed when its last binding goes away
  kZeroOnBind,     // allowed once unbound; the pages are zeroed when a different VM binds it
  kUnsafeNoScrub,  // allowed once unbound, pages handed over as they are (unsafe)
};

struct GmemEnv {
  PhysMem& mem;
  FrameAllocator& frames;
  GmemInodeNumbers& inode_numbers;
  GmemStats* totals = nullptr;  // optional host-wide totals; every inode also keeps its own
  GmemRebindPolicy rebind = GmemRebindPolicy::kForbid;
  // Zero a folio before its first hand-out to the guest (§6.3, §13.6). false is unsafe: freed
  // frames reach the next owner with their old contents (the checker's ISO-6 catches it).
  bool zero_on_handout = true;
  // Hand out 2 MiB folios where a whole aligned 2 MiB block of the file is unallocated
  // (hugetlb-backed guest_memfd, PROPOSED upstream: kvm-guest-memfd.md §13 table; mainline is
  // order-0, false). A block is allocated as one 2 MiB frame and kept as 512 page-cache entries;
  // kvm_gmem_get_pfn reports max_order 9 while all 512 are present, contiguous and not poisoned,
  // and a punch of any of them frees that 4 KiB only (the rest then maps at 4 KiB).
  bool huge_folios = false;
};

// One page-cache entry. Mainline guest_memfd has order-0 folios only (§13.9).
struct GmemFolio {
  Pfn pfn{};
  bool uptodate = false;  // zeroed for hand-out, or written by populate (§3, §6.6)
  bool hwpoison = false;  // memory_failure (§6.1)
};

// One memslot's binding, as stored in gmem_file.bindings (§4 kvm_gmem_bind).
struct GmemBinding {
  SlotId slot{};
  Gfn base_gfn{};
  GmemPgoff pgoff{};
  uint64_t npages = 0;
  GmemPgoff end() const { return pgoff + npages; }
};

// What kvm_gmem_bind writes into the new memslot (§4): slot->gmem.pgoff and KVM_MEMSLOT_GMEM_ONLY.
struct GmemSlotBinding {
  GmemPgoff pgoff{};
  bool gmem_only = false;
};

// kvm_gmem_get_pfn's answer (§6.3), plus the cost the model reports.
struct GmemPfn {
  Pfn pfn{};
  int max_order = 0;          // always 0 in mainline (§6.3)
  uint64_t bytes_zeroed = 0;  // 4096 when this call zeroed the folio, for cost accounting
};

// fstat (§3).
struct GmemStatBuf {
  int64_t st_size = 0;
  uint32_t st_blksize = 0;
  uint64_t st_ino = 0;
};

// The signal a host userspace access ends with. SIGBUS is guest_memfd's answer (§6.1, §6.5);
// SIGSEGV is the generic mm's for an access outside a mapping or against its protection.
enum class Signal : uint8_t { kNone, kSigbus, kSigsegv };

// A host userspace mapping of the file (one VMA), named by an id unique within its file.
struct GmemMapping {
  uint64_t id = 0;
  bool operator==(const GmemMapping&) const = default;
};

struct UserFault {
  Signal signal = Signal::kNone;
  Pfn pfn{};                  // valid when signal == kNone
  uint64_t bytes_zeroed = 0;  // 4096 when this fault zeroed the folio
};

struct HostAccess {
  Signal signal = Signal::kNone;
  uint64_t bytes = 0;   // bytes transferred before the access completed or signalled
  uint64_t faults = 0;  // user faults taken (pages that had no PTE)
};

class GmemFile;

// The memory (struct gmem_inode + its address_space). Mutated only through its files.
class GmemInode {
 public:
  GmemInode(GmemEnv env, GmemVm& creator, int64_t size, uint64_t flags, uint64_t ino);
  GmemInode(const GmemInode&) = delete;
  GmemInode& operator=(const GmemInode&) = delete;

  int64_t size() const { return size_; }
  uint64_t flags() const { return flags_; }
  uint64_t ino() const { return ino_; }
  bool supports_mmap() const { return (flags_ & GUEST_MEMFD_FLAG_MMAP) != 0; }
  bool init_shared() const { return (flags_ & GUEST_MEMFD_FLAG_INIT_SHARED) != 0; }
  // §6.1: KVM_FILTER_PRIVATE, or KVM_FILTER_SHARED if the inode is INIT_SHARED.
  AttrFilter invalidate_filter() const {
    return init_shared() ? AttrFilter::kShared : AttrFilter::kPrivate;
  }
  const GmemFolio* folio(GmemPgoff index) const;
  uint64_t nr_folios() const { return page_cache_.size(); }
  // True if the frame is a folio of this file's page cache (checkers: whose memory is it?).
  bool owns_frame(Pfn f) const { return frames_.count(f.value()) != 0; }
  // f(GmemPgoff index, const GmemFolio&) for every folio in the page cache, by index.
  template <class F>
  void for_each_folio(F&& f) const {
    for (const auto& [index, folio] : page_cache_) f(GmemPgoff(index), folio);
  }
  bool evicted() const { return evicted_; }
  const GmemStats& stats() const { return stats_; }
  const GmemEnv& env() const { return env_; }

 private:
  friend class GmemFile;

  Result<GmemFolio*> get_folio(GmemPgoff index);
  template <class F>
  void for_each_folio_mut(F&& f) {
    for (auto& [index, folio] : page_cache_) f(folio);
  }
  uint64_t zero_folio(GmemFolio& f);
  void invalidate_begin(GmemPgoff start, GmemPgoff end);
  void invalidate_end(GmemPgoff start, GmemPgoff end);
  void truncate_range(GmemPgoff start, GmemPgoff end);
  void free_folio(const GmemFolio& f);
  void evict();
  void count(uint64_t GmemStats::*field, uint64_t n = 1);

  GmemEnv env_;
  GmemVm& creator_;
  int64_t size_;
  uint64_t flags_;
  uint64_t ino_;
  std::map<uint64_t, GmemFolio> page_cache_;  // pgoff -> folio
  std::unordered_set<uint64_t> frames_;       // the folios' frames
  std::vector<GmemFile*> files_;              // gmem_file_list
  bool evicted_ = false;
  GmemStats stats_;
};

// One VM's view of the memory (struct gmem_file + struct file).
class GmemFile {
 public:
  // KVM_CREATE_GUEST_MEMFD after the ioctl facade's rules 1-2 (§3): rules 3 and 4, then an inode
  // and a file with one reference (the fd), pinning `vm`.
  static Result<std::shared_ptr<GmemFile>> create(GmemVm& vm, const kvm_create_guest_memfd& args,
                                                  uint64_t supported_flags, GmemEnv env);
  GmemFile(const GmemFile&) = delete;
  GmemFile& operator=(const GmemFile&) = delete;

  // ---- State ----
  GmemVm& vm() const { return *vm_; }
  const GmemInode& inode() const { return *inode_; }
  bool fd_open() const { return fd_open_; }
  bool released() const { return released_; }
  uint32_t refcount() const { return refs_; }  // f_count: the fd plus one per mapping
  std::vector<GmemBinding> bindings() const;
  std::optional<GmemBinding> binding_at(GmemPgoff index) const;

  // ---- File operations on the fd (§6.1) ----
  Status fallocate(int mode, int64_t offset, int64_t len);
  Status read(uint64_t count);
  Status write(uint64_t count);
  Status pread(uint64_t count, int64_t pos);
  Status pwrite(uint64_t count, int64_t pos);
  Status ftruncate(int64_t length);
  Result<GmemStatBuf> fstat() const;
  Status close();  // drops the fd's reference; the last reference releases the file (§6.2)

  // ---- Memslot side (§4) ----
  Result<GmemSlotBinding> bind(GmemVm& vm, SlotId slot, Gfn base_gfn, uint64_t npages,
                               int64_t offset);
  void unbind(SlotId slot);

  // ---- KVM MMU side ----
  // kvm_gmem_get_pfn (§6.3) for `gfn` in a slot whose memslot says (base_gfn, gmem.pgoff).
  Result<GmemPfn> get_pfn(SlotId slot, Gfn gfn, Gfn slot_base_gfn, GmemPgoff slot_pgoff);
  // __kvm_gmem_get_pfn as kvm_gmem_populate uses it (§6.6): the same errors, no zeroing, no
  // prepare. After a successful post-populate step the caller marks the folio uptodate.
  Result<GmemPfn> populate_get_pfn(SlotId slot, Gfn gfn, Gfn slot_base_gfn, GmemPgoff slot_pgoff);
  bool mark_uptodate(GmemPgoff index);  // false if no folio is there

  // ---- Host userspace side (§6.1 mmap, user faults, madvise; §6.5) ----
  // mmap(NULL, length, prot, shared ? MAP_SHARED : MAP_PRIVATE, fd, offset).
  Result<GmemMapping> mmap(uint64_t length, int prot, bool shared, uint64_t offset = 0);
  Status munmap(GmemMapping m);  // an unknown or already unmapped mapping is a no-op, as in Linux
  Status madvise(GmemMapping m, uint64_t offset, uint64_t len, int advice);
  // The page fault taken by an access at `offset` into the mapping when no PTE is present
  // (kvm_gmem_fault_user_mapping plus the generic mm's checks); installs the PTE on success.
  // A present PTE answers without a fault.
  Result<UserFault> user_fault(GmemMapping m, uint64_t offset, bool write);
  // Host accesses through a mapping: fault where needed, then the frame at the PTE's pfn, as
  // host userspace (`who`) through an Initiator (hw/memory/initiator.h): the platform's host
  // checks see them, and a page they refuse ends the access with SIGBUS, as a user-space RMP #PF
  // does (tdx-snp.md B3). Bytes only: a write then keys the frame 0 and labels it `who`.
  Result<HostAccess> host_read(GmemMapping m, uint64_t offset, std::span<uint8_t> out);
  Result<HostAccess> host_write(GmemMapping m, uint64_t offset, std::span<const uint8_t> in,
                                Principal who = kHostUser);
  // What the mapping's PTE at `offset` holds (none before a fault, after a zap).
  std::optional<Pfn> user_pte(GmemMapping m, uint64_t offset) const;

  // ---- Host kernel side ----
  // memory_failure() on the folio at `index` (§6.1 error_remove_folio).
  Status memory_failure(GmemPgoff index);

  // The inode's counters (one file per inode, so the file's too); host-wide totals are in
  // GmemEnv::totals.
  void describe_stats(StatVisitor& v) const { inode_->stats_.describe_stats(v); }

 private:
  struct UserMapping {
    GmemPgoff pgoff{};
    uint64_t npages = 0;
    int prot = 0;
    std::map<uint64_t, Pfn> ptes;  // file pgoff -> pfn
  };
  friend class GmemInode;

  GmemFile(GmemVm& vm, std::shared_ptr<GmemInode> inode);
  Result<GmemFolio*> lookup_for_kvm(SlotId slot, GmemPgoff index);
  Status punch_hole(int64_t offset, int64_t len);
  Status allocate(int64_t offset, int64_t len);
  void invalidate_begin(GmemPgoff start, GmemPgoff end, AttrFilter filter);
  void invalidate_end(GmemPgoff start, GmemPgoff end);
  void zap_user_ptes(GmemPgoff start, GmemPgoff end);
  void fput();
  void release();
  UserMapping* mapping(GmemMapping m);
  const UserMapping* mapping(GmemMapping m) const;
  Result<HostAccess> host_access(GmemMapping m, uint64_t offset, uint64_t len, bool write,
                                 uint8_t* out, const uint8_t* in, Principal who);

  GmemVm* vm_;  // the VM the file belongs to (changes only under a rebinding policy)
  // Zeroes every folio of the file (rebinding policies), returning the bytes cleared.
  uint64_t scrub_all();
  std::shared_ptr<GmemInode> inode_;
  std::map<uint64_t, GmemBinding> bindings_;  // start pgoff -> binding (ranges never overlap)
  std::map<uint64_t, UserMapping> mappings_;  // mapping id -> VMA
  uint64_t next_mapping_id_ = 1;
  uint32_t refs_ = 1;
  bool fd_open_ = true;
  bool released_ = false;
};

}  // namespace cvmsim::kvm
