#include "models/kvm/guest_memfd.h"

#include "models/host/host_mm.h"

#include <algorithm>
#include <cassert>
#include <limits>

namespace cvmsim::kvm {

namespace {

// s_maxbytes of the guest_memfd pseudo fs (pseudo_fs_fill_super: MAX_LFS_FILESIZE).
constexpr int64_t kMaxLfsFilesize = std::numeric_limits<int64_t>::max();
constexpr uint64_t kPgoffMax = std::numeric_limits<uint64_t>::max();  // release zaps [0, ~0)

bool page_aligned(int64_t v) {
  return (static_cast<uint64_t>(v) & (kPageBytes - 1)) == 0;
}
bool page_aligned(uint64_t v) {
  return (v & (kPageBytes - 1)) == 0;
}

// Advice values Linux accepts (madvise_behavior_valid, with THP and memory-failure support
// configured). The model implements NORMAL/RANDOM/SEQUENTIAL/DONTNEED/HUGEPAGE/NOHUGEPAGE/
// COLLAPSE; the other valid ones answer ENOSYS ("not modelled").
constexpr int kValidAdvice[] = {0,  1,  2,  3,  4,  8,  9,  10, 11, 12,  13,  14,  15, 16,
                                17, 18, 19, 20, 21, 22, 23, 24, 25, 100, 101, 102, 103};
bool madvise_behavior_valid(int advice) {
  return std::find(std::begin(kValidAdvice), std::end(kValidAdvice), advice) !=
         std::end(kValidAdvice);
}

}  // namespace

// ============================================================================================
// GmemStats

void GmemStats::describe_stats(StatVisitor& v) const {
  v.counter("folios_allocated", folios_allocated, "folios",
            "frames taken from the host allocator into a guest_memfd page cache");
  v.counter("folios_freed", folios_freed, "folios",
            "folios removed from a page cache by punch-hole or inode eviction (.free_folio)");
  v.counter("frames_quarantined", frames_quarantined, "frames",
            "freed hwpoison folios whose frame is not returned to the allocator");
  v.counter("huge_folios_allocated", huge_folios_allocated, "blocks",
            "2 MiB blocks allocated whole for a guest_memfd (platform.kvm.gmem_huge_folios)");
  v.counter("folios_zeroed", folios_zeroed, "folios",
            "folios zeroed on first hand-out to the guest or to a user mapping");
  v.counter("bytes_zeroed", bytes_zeroed, "bytes",
            "bytes cleared by clear_highpage before hand-out");
  v.counter("fallocate_calls", fallocate_calls, "calls", "fallocate calls, including refused ones");
  v.counter("punch_holes", punch_holes, "calls", "successful FALLOC_FL_PUNCH_HOLE calls");
  v.counter("punched_folios", punched_folios, "folios", "folios freed by punch-hole");
  v.counter(
      "mmu_invalidations", mmu_invalidations, "calls",
      "kvm_mmu_invalidate_begin calls (one per VM per invalidation with an overlapping binding)");
  v.counter("gfn_ranges_unmapped", gfn_ranges_unmapped, "ranges",
            "kvm_mmu_unmap_gfn_range calls, one per overlapping binding");
  v.counter("tlb_flushes", tlb_flushes, "calls",
            "kvm_flush_remote_tlbs calls after an invalidation");
  v.counter("arch_invalidate_calls", arch_invalidate_calls, "calls",
            "kvm_arch_gmem_invalidate calls (one per freed folio)");
  v.counter("binds", binds, "calls", "successful kvm_gmem_bind calls");
  v.counter("unbinds", unbinds, "calls", "kvm_gmem_unbind calls that removed a binding");
  v.counter("get_pfn_calls", get_pfn_calls, "calls", "kvm_gmem_get_pfn calls");
  v.counter("get_pfn_errors", get_pfn_errors, "calls",
            "kvm_gmem_get_pfn calls that returned an error");
  v.counter("prepare_calls", prepare_calls, "calls",
            "kvm_arch_gmem_prepare calls (every successful folio lookup in get_pfn)");
  v.counter("prepare_errors", prepare_errors, "calls", "kvm_arch_gmem_prepare calls that failed");
  v.counter("populate_get_pfn_calls", populate_get_pfn_calls, "calls",
            "folio lookups for kvm_gmem_populate (no zeroing, no prepare)");
  v.counter("mmaps", mmaps, "calls", "successful mmap calls");
  v.counter("munmaps", munmaps, "calls", "mappings removed by munmap");
  v.counter("user_faults", user_faults, "faults",
            "host userspace page faults on a guest_memfd mapping");
  v.counter("sigbus", sigbus, "signals",
            "user faults answered with SIGBUS (beyond EOF, private memory, hwpoison)");
  v.counter("sigsegv", sigsegv, "signals",
            "user accesses outside a mapping or against its protection");
  v.counter("dontneed_pages", dontneed_pages, "pages", "user PTEs dropped by MADV_DONTNEED");
  v.counter("memory_failures", memory_failures, "calls",
            "folios marked hwpoison by memory_failure");
  v.counter("releases", releases, "calls", "files released (last reference dropped)");
  v.counter("rebinds", rebinds, "calls",
            "bindings to a VM other than the file's owner (platform.kvm.gmem_rebind allows them)");
  v.counter("scrubs", scrubs, "calls",
            "whole-file scrubs by the rebinding policy (zero_on_unbind, zero_on_bind)");
}

// ============================================================================================
// GmemInode

GmemInode::GmemInode(GmemEnv env, GmemVm& creator, int64_t size, uint64_t flags, uint64_t ino)
    : env_(env), creator_(creator), size_(size), flags_(flags), ino_(ino) {}

void GmemInode::count(uint64_t GmemStats::*field, uint64_t n) {
  stats_.*field += n;
  if (env_.totals) env_.totals->*field += n;
}

const GmemFolio* GmemInode::folio(GmemPgoff index) const {
  auto it = page_cache_.find(index.value());
  return it == page_cache_.end() ? nullptr : &it->second;
}

// kvm_gmem_get_folio: the folio at `index`, allocated if absent. An allocation is not zeroed
// and not prepared (§3 "Memory is not zeroed at allocation time", §6.1 allocate).
Result<GmemFolio*> GmemInode::get_folio(GmemPgoff index) {
  auto it = page_cache_.find(index.value());
  if (it != page_cache_.end()) return &it->second;
  if (env_.huge_folios) {
    // A whole aligned 2 MiB block of the file, none of it allocated: one 2 MiB frame.
    const uint64_t head = index.value() & ~uint64_t{kEntriesPerTable - 1};
    auto lo = page_cache_.lower_bound(head);
    const bool block_free = lo == page_cache_.end() || lo->first >= head + kEntriesPerTable;
    if (block_free && (head + kEntriesPerTable) * kPageBytes <= static_cast<uint64_t>(size_)) {
      if (Result<Pfn> big = env_.frames.alloc(PageSize::k2M); big.ok()) {
        count(&GmemStats::huge_folios_allocated);
        count(&GmemStats::folios_allocated, kEntriesPerTable);
        for (uint64_t i = 0; i < kEntriesPerTable; ++i) {
          page_cache_.emplace(head + i, GmemFolio{*big + i, false, false});
          frames_.insert((*big + i).value());
        }
        return &page_cache_.find(index.value())->second;
      }
    }
  }
  Result<Pfn> frame = env_.frames.alloc(PageSize::k4K);  // order-0 (§13.9)
  if (!frame) return Errno::kENOMEM;                     // §6.1/§6.3: allocation failure
  count(&GmemStats::folios_allocated);
  auto [pos, inserted] = page_cache_.emplace(index.value(), GmemFolio{*frame, false, false});
  if (inserted) frames_.insert(frame->value());
  assert(inserted);
  return &pos->second;
}

// clear_highpage + folio_mark_uptodate (§6.3 "guest never sees stale host data", §6.1 user
// fault). The host kernel clears through its direct map: the frame then holds zeros written
// under the host key, i.e. nobody's secret. So besides the bytes, the frame's key goes back to 0
// and its secret label to kNobody; otherwise a stale label of the frame's previous owner would
// survive the scrub and the leak checker would blame the next reader.
uint64_t GmemInode::zero_folio(GmemFolio& f) {
  PhysMem& mem = env_.mem;
  mem.note(f.pfn, FrameEventKind::kScrub, kNobody);  // provenance: before the label goes
  // The folio is the host's until the backend's gmem_prepare assigns it, so the host's checks
  // let the kernel clear it.
  (void)Initiator::host_kernel(mem).fill_plain(pfn_to_hpa(f.pfn), kPageBytes, 0);
  // An untouched frame already reads as zeros under key 0, labelled nobody.
  if (mem.meta(f.pfn).flags & kFrameTouched) {
    mem.set_key(f.pfn, 0);
    mem.set_label(f.pfn, kNobody);
  }
  f.uptodate = true;
  count(&GmemStats::folios_zeroed);
  count(&GmemStats::bytes_zeroed, kPageBytes);
  return kPageBytes;
}

// kvm_gmem_invalidate_begin/end (§6.1 punch): every file of the inode, with the inode's filter.
void GmemInode::invalidate_begin(GmemPgoff start, GmemPgoff end) {
  for (GmemFile* f : files_) f->invalidate_begin(start, end, invalidate_filter());
}

void GmemInode::invalidate_end(GmemPgoff start, GmemPgoff end) {
  for (GmemFile* f : files_) f->invalidate_end(start, end);
}

// truncate_inode_pages_range over [start, end): each folio is unmapped from every user mapping,
// leaves the page cache, and goes through .free_folio (§6.1 punch, §6.4).
void GmemInode::truncate_range(GmemPgoff start, GmemPgoff end) {
  for (GmemFile* f : files_) f->zap_user_ptes(start, end);
  auto it = page_cache_.lower_bound(start.value());
  while (it != page_cache_.end() && it->first < end.value()) {
    free_folio(it->second);
    it = page_cache_.erase(it);
  }
}

// .free_folio = kvm_gmem_free_folio -> kvm_arch_gmem_invalidate(pfn, pfn + (1 << order)) (§6.4),
// then the page goes back to the allocator. A hwpoison page never returns to the free lists
// (the page allocator refuses PageHWPoison pages), so the model keeps its frame out of use.
void GmemInode::free_folio(const GmemFolio& f) {
  frames_.erase(f.pfn.value());
  count(&GmemStats::arch_invalidate_calls);
  creator_.arch_gmem_invalidate(f.pfn, f.pfn + 1);
  count(&GmemStats::folios_freed);
  if (f.hwpoison) {
    count(&GmemStats::frames_quarantined);
    return;
  }
  env_.frames.free(f.pfn, PageSize::k4K);
}

// Inode eviction after the last file is gone (§6.2: "the last fput evicts the inode and frees
// the folios, which calls kvm_arch_gmem_invalidate for each"). No invalidate_begin: no file,
// hence no binding, is left.
void GmemInode::evict() {
  assert(files_.empty());
  for (const auto& [index, f] : page_cache_) free_folio(f);
  page_cache_.clear();
  evicted_ = true;
}

// ============================================================================================
// GmemFile: creation, state

GmemFile::GmemFile(GmemVm& vm, std::shared_ptr<GmemInode> inode)
    : vm_(&vm), inode_(std::move(inode)) {}

Result<std::shared_ptr<GmemFile>> GmemFile::create(GmemVm& vm, const kvm_create_guest_memfd& args,
                                                   uint64_t supported_flags, GmemEnv env) {
  // §3 rule 3: flags & ~kvm_gmem_get_supported_flags(kvm) -> EINVAL.
  if (args.flags & ~supported_flags) return Errno::kEINVAL;
  // §3 rule 4: size is a signed loff_t, so values >= 2^63 are <= 0; it must be PAGE-aligned.
  const auto size = static_cast<int64_t>(args.size);
  if (size <= 0 || !page_aligned(size)) return Errno::kEINVAL;
  // §3 rule 5 (fd, memory, LSM, fops_get failures) is not modelled; reserved[] is not checked.
  auto inode = std::make_shared<GmemInode>(env, vm, size, args.flags, env.inode_numbers.next());
  std::shared_ptr<GmemFile> file(new GmemFile(vm, inode));
  inode->files_.push_back(file.get());
  vm.kvm_get();  // §3/§6.2: creating the file takes a VM reference
  return file;
}

std::vector<GmemBinding> GmemFile::bindings() const {
  std::vector<GmemBinding> out;
  out.reserve(bindings_.size());
  for (const auto& [start, b] : bindings_) out.push_back(b);
  return out;
}

std::optional<GmemBinding> GmemFile::binding_at(GmemPgoff index) const {
  auto it = bindings_.upper_bound(index.value());
  if (it == bindings_.begin()) return std::nullopt;
  --it;
  if (index < it->second.end()) return it->second;
  return std::nullopt;
}

// ============================================================================================
// File operations (§6.1)

// vfs_fallocate's generic checks (fs/open.c, 2025+ form), then kvm_gmem_fallocate.
Status GmemFile::fallocate(int mode, int64_t offset, int64_t len) {
  inode_->count(&GmemStats::fallocate_calls);
  if (!fd_open_) return Errno::kEBADF;  // ksys_fallocate: fdget fails on a closed fd
  // vfs_fallocate (§6.1 "vfs_fallocate's generic checks apply first"):
  if (offset < 0 || len <= 0) return Errno::kEINVAL;
  if (mode & ~(FALLOC_FL_MODE_MASK | FALLOC_FL_KEEP_SIZE)) return Errno::kEOPNOTSUPP;
  switch (mode & FALLOC_FL_MODE_MASK) {  // the modes are exclusive
    case FALLOC_FL_ALLOCATE_RANGE:
    case FALLOC_FL_UNSHARE_RANGE:
    case FALLOC_FL_ZERO_RANGE:
      break;
    case FALLOC_FL_PUNCH_HOLE:
      if (!(mode & FALLOC_FL_KEEP_SIZE)) return Errno::kEOPNOTSUPP;
      break;
    case FALLOC_FL_COLLAPSE_RANGE:
    case FALLOC_FL_INSERT_RANGE:
    case FALLOC_FL_WRITE_ZEROES:
      if (mode & FALLOC_FL_KEEP_SIZE) return Errno::kEOPNOTSUPP;
      break;
    default:
      return Errno::kEOPNOTSUPP;
  }
  // FMODE_WRITE, append-only, immutable, swapfile, LSM, file type: the file is an O_RDWR regular
  // file on a private fs (§3), so those checks pass. Then the wrap-around check: the pseudo fs's
  // s_maxbytes is MAX_LFS_FILESIZE (LLONG_MAX), so only an overflow of offset + len fails -> EFBIG.
  int64_t sum = 0;
  if (__builtin_add_overflow(offset, len, &sum) || sum > kMaxLfsFilesize) return Errno::kEFBIG;

  // kvm_gmem_fallocate (§6.1):
  if (!(mode & FALLOC_FL_KEEP_SIZE)) return Errno::kEOPNOTSUPP;
  if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) return Errno::kEOPNOTSUPP;
  if (!page_aligned(offset) || !page_aligned(len)) return Errno::kEINVAL;
  if (mode & FALLOC_FL_PUNCH_HOLE) return punch_hole(offset, len);
  return allocate(offset, len);
}

// kvm_gmem_allocate (§6.1 "Allocate"): folios for every index, no zeroing, no prepare. A failure
// part-way keeps what was allocated. (A pending signal -> EINTR is not modelled: the model has
// no signals.)
Status GmemFile::allocate(int64_t offset, int64_t len) {
  if (offset + len > inode_->size()) return Errno::kEINVAL;  // "immutable size"
  const GmemPgoff start(static_cast<uint64_t>(offset) >> kPageShift);
  const GmemPgoff end(static_cast<uint64_t>(offset + len) >> kPageShift);
  for (GmemPgoff index = start; index < end; ++index) {
    Result<GmemFolio*> f = inode_->get_folio(index);
    if (!f) return f.error();
  }
  return {};
}

// kvm_gmem_punch_hole (§6.1 "PUNCH_HOLE"): invalidate_begin over every binding of every file,
// truncate (user mappings lose the pages, .free_folio), invalidate_end. Punching at or beyond
// i_size finds no binding and no folio: it succeeds as a no-op.
Status GmemFile::punch_hole(int64_t offset, int64_t len) {
  const GmemPgoff start(static_cast<uint64_t>(offset) >> kPageShift);
  const GmemPgoff end(static_cast<uint64_t>(offset + len) >> kPageShift);
  const uint64_t before = inode_->page_cache_.size();
  for (auto it = inode_->page_cache_.lower_bound(start.value());
       it != inode_->page_cache_.end() && it->first < end.value(); ++it)
    inode_->env().mem.note(it->second.pfn, FrameEventKind::kPunch, kNobody, kNobody, it->first);
  inode_->invalidate_begin(start, end);
  inode_->truncate_range(start, end);
  inode_->invalidate_end(start, end);
  inode_->count(&GmemStats::punch_holes);
  inode_->count(&GmemStats::punched_folios, before - inode_->page_cache_.size());
  return {};
}

// §6.1: guest_memfd has no read/write file operations, so the VFS refuses: vfs_read/vfs_write
// return EINVAL without FMODE_CAN_READ/WRITE. The selftest only asserts failure.
Status GmemFile::read(uint64_t /*count*/) {
  if (!fd_open_) return Errno::kEBADF;
  return Errno::kEINVAL;
}

Status GmemFile::write(uint64_t /*count*/) {
  if (!fd_open_) return Errno::kEBADF;
  return Errno::kEINVAL;
}

// ksys_pread64/ksys_pwrite64: pos < 0 -> EINVAL, then EBADF, then ESPIPE unless the file has
// FMODE_PREAD/FMODE_PWRITE. alloc_file_pseudo (which creates the guest_memfd file) never sets
// them (only do_dentry_open does), so the answer is ESPIPE, not the EINVAL that §6.1 lumps in
// with read/write; the selftest asserts only "< 0".
Status GmemFile::pread(uint64_t /*count*/, int64_t pos) {
  if (pos < 0) return Errno::kEINVAL;
  if (!fd_open_) return Errno::kEBADF;
  return Errno::kESPIPE;
}

Status GmemFile::pwrite(uint64_t /*count*/, int64_t pos) {
  if (pos < 0) return Errno::kEINVAL;
  if (!fd_open_) return Errno::kEBADF;
  return Errno::kESPIPE;
}

// §6.1/§3: truncate/ftruncate/setattr -> EINVAL; the size is immutable (kvm_gmem_setattr).
// do_sys_ftruncate checks length < 0 (EINVAL) before looking up the fd; its other checks (regular
// file opened for writing) pass.
Status GmemFile::ftruncate(int64_t length) {
  if (length < 0) return Errno::kEINVAL;
  if (!fd_open_) return Errno::kEBADF;
  return Errno::kEINVAL;
}

// §3: st_size == size, st_blksize == PAGE_SIZE (the pseudo fs's s_blocksize), distinct st_ino.
Result<GmemStatBuf> GmemFile::fstat() const {
  if (!fd_open_) return Errno::kEBADF;
  return GmemStatBuf{inode_->size(), static_cast<uint32_t>(kPageBytes), inode_->ino()};
}

Status GmemFile::close() {
  if (!fd_open_) return Errno::kEBADF;
  fd_open_ = false;
  fput();
  return {};
}

void GmemFile::fput() {
  assert(refs_ > 0);
  if (--refs_ == 0) release();
}

// kvm_gmem_release (§6.2), then the inode's last reference (one file per inode).
void GmemFile::release() {
  assert(!released_);
  inode_->count(&GmemStats::releases);
  // slot->gmem.file = NULL for every bound slot: the memslots stay, dead.
  for (const auto& [start, b] : bindings_) vm_->gmem_slot_unbound(b.slot);
  // Zap every SPTE of this file: invalidate begin/end over [0, ~0) with the inode's filter. The
  // memory itself belongs to the inode and is not freed here.
  invalidate_begin(GmemPgoff(0), GmemPgoff(kPgoffMax), inode_->invalidate_filter());
  invalidate_end(GmemPgoff(0), GmemPgoff(kPgoffMax));
  auto& files = inode_->files_;
  files.erase(std::remove(files.begin(), files.end(), this), files.end());
  bindings_.clear();
  released_ = true;
  vm_->kvm_put();
  // __fput continues after .release: dput -> iput; with the last file gone the inode is evicted
  // and its folios freed through .free_folio (§6.2, §6.4).
  if (files.empty()) inode_->evict();
}

// ============================================================================================
// Memslot side (§4)

// kvm_gmem_bind after fget and the "is a guest_memfd" check (the facade's job), in order.
Result<GmemSlotBinding> GmemFile::bind(GmemVm& vm, SlotId slot, Gfn base_gfn, uint64_t npages,
                                       int64_t offset) {
  if (!fd_open_) return Errno::kEBADF;  // §4: fget(fd) fails
  if (&vm != vm_) {
    // §4: a guest_memfd created by a different VM -> EINVAL, unless a rebinding policy allows it
    // (then only once every binding to its VM is gone: one file never serves two VMs at once).
    const GmemRebindPolicy p = inode_->env().rebind;
    if (p == GmemRebindPolicy::kForbid || !bindings_.empty()) return Errno::kEINVAL;
    if (p == GmemRebindPolicy::kZeroOnBind)
      scrub_all();
    else
      inode_->for_each_folio_mut([&](GmemFolio& f) {
        inode_->env().mem.note(f.pfn, FrameEventKind::kRebind, vm.gmem_principal(),
                               vm_->gmem_principal());
      });
    vm.kvm_get();
    GmemVm* old = vm_;
    vm_ = &vm;
    inode_->count(&GmemStats::rebinds);
    old->kvm_put();  // may destroy the old VM (it stays as a shell for late callbacks)
  }
  // §4: offset < 0, unaligned, or offset + size > i_size. The memslot checks (§4 rule 4) already
  // refuse an overflowing offset + size; the model refuses it here too, as does a zero-page slot
  // (a size-0 region is a delete and never binds).
  if (offset < 0 || !page_aligned(offset)) return Errno::kEINVAL;
  if (npages == 0 || npages > (static_cast<uint64_t>(kMaxLfsFilesize) >> kPageShift))
    return Errno::kEINVAL;
  int64_t end_bytes = 0;
  if (__builtin_add_overflow(offset, static_cast<int64_t>(npages << kPageShift), &end_bytes) ||
      end_bytes > inode_->size())
    return Errno::kEINVAL;
  // §4: the file range [offset/PAGE, +npages) overlaps any existing binding of this file.
  const GmemPgoff start(static_cast<uint64_t>(offset) >> kPageShift);
  const GmemPgoff end = start + npages;
  auto next = bindings_.lower_bound(start.value());
  if (next != bindings_.end() && next->second.pgoff < end) return Errno::kEINVAL;
  if (next != bindings_.begin() && start < std::prev(next)->second.end()) return Errno::kEINVAL;
  bindings_.emplace(start.value(), GmemBinding{slot, base_gfn, start, npages});
  inode_->count(&GmemStats::binds);
  // The fget reference is dropped on success too: the memslot does not pin the file (§4, §6.2).
  return GmemSlotBinding{start, inode_->supports_mmap()};
}

uint64_t GmemFile::scrub_all() {
  uint64_t bytes = 0;
  inode_->for_each_folio_mut([&](GmemFolio& f) {
    if (f.hwpoison) return;
    bytes += inode_->zero_folio(f);
  });
  inode_->count(&GmemStats::scrubs);
  return bytes;
}

// kvm_gmem_unbind (§4): clears the slot's range; a no-op once the file was released.
void GmemFile::unbind(SlotId slot) {
  if (released_) return;
  for (auto it = bindings_.begin(); it != bindings_.end(); ++it) {
    if (it->second.slot == slot) {
      bindings_.erase(it);
      inode_->count(&GmemStats::unbinds);
      if (bindings_.empty() && inode_->env().rebind == GmemRebindPolicy::kZeroOnUnbind) scrub_all();
      return;
    }
  }
}

// ============================================================================================
// KVM MMU side (§6.3, §6.6)

// __kvm_gmem_get_pfn's checks: file gone -> EFAULT; bindings[index] != slot -> EIO; folio
// allocation -> ENOMEM; hwpoison -> EHWPOISON. (The "file != slot->gmem.file" EFAULT needs the
// memslot's pointer; the caller holds it and only ever calls the file it points to.)
Result<GmemFolio*> GmemFile::lookup_for_kvm(SlotId slot, GmemPgoff index) {
  if (released_) return Errno::kEFAULT;  // §6.2/§6.3: get_file_active fails, dead slot
  auto b = binding_at(index);
  if (!b || !(b->slot == slot)) return Errno::kEIO;  // §6.3 (a KVM bug: WARN)
  Result<GmemFolio*> f = inode_->get_folio(index);
  if (!f) return f.error();
  if ((*f)->hwpoison) return Errno::kEHWPOISON;  // §6.1 memory failure, §6.3
  return f;
}

Result<GmemPfn> GmemFile::get_pfn(SlotId slot, Gfn gfn, Gfn slot_base_gfn, GmemPgoff slot_pgoff) {
  inode_->count(&GmemStats::get_pfn_calls);
  const GmemPgoff index = slot_pgoff + (gfn - slot_base_gfn);  // §6.3: gfn - base_gfn + pgoff
  Result<GmemFolio*> f = lookup_for_kvm(slot, index);
  if (!f) {
    inode_->count(&GmemStats::get_pfn_errors);
    return f.error();
  }
  GmemFolio& folio = **f;
  GmemPfn out{folio.pfn, 0, 0};
  if (inode_->env().huge_folios) {
    // max_order 9 when the 2 MiB block around index is whole (huge_folios): every entry present,
    // contiguous from a 2 MiB-aligned frame, none poisoned, and gfn and index equally aligned.
    const uint64_t head = index.value() & ~uint64_t{kEntriesPerTable - 1};
    const Pfn first = folio.pfn - (index.value() - head);
    bool whole = (first.value() & (kEntriesPerTable - 1)) == 0 &&
                 (gfn.value() & (kEntriesPerTable - 1)) == (index.value() & (kEntriesPerTable - 1));
    for (uint64_t i = 0; whole && i < kEntriesPerTable; ++i) {
      const GmemFolio* g = inode_->folio(GmemPgoff(head + i));
      whole = g && g->pfn == first + i && !g->hwpoison;
    }
    if (whole) {
      out.max_order = 9;
      // The guest gets all of it: zero every page not yet uptodate (as it would a huge folio).
      for (uint64_t i = 0; i < kEntriesPerTable; ++i) {
        GmemFolio* g = &inode_->page_cache_.find(head + i)->second;
        if (g != &folio && !g->uptodate) {
          if (inode_->env().zero_on_handout)
            out.bytes_zeroed += inode_->zero_folio(*g);
          else
            g->uptodate = true;
        }
      }
    }
  }
  // §6.3/§13.6: zero on first hand-out unless already uptodate (zeroed before, or populated).
  // The unsafe policy skips it: the frame reaches the guest with whatever it held.
  if (!folio.uptodate) {
    const bool zero = inode_->env().zero_on_handout;
    if (zero)
      out.bytes_zeroed += inode_->zero_folio(folio);
    else
      folio.uptodate = true;
    inode_->env().mem.note(folio.pfn,
                           zero ? FrameEventKind::kHandout : FrameEventKind::kHandoutStale,
                           vm_->gmem_principal(), kNobody, index.value());
  }
  // §6.3: kvm_arch_gmem_prepare on every call (mainline baseline: no "prepared" tracking), for the
  // folio's first gfn; order 0, so that is `gfn` itself. An error is returned as is; the folio
  // stays zeroed and uptodate.
  inode_->count(&GmemStats::prepare_calls);
  const Gfn prepare_gfn = slot_base_gfn + (index - slot_pgoff);
  Status st = vm_->arch_gmem_prepare(prepare_gfn, folio.pfn, 0);
  if (!st) {
    inode_->count(&GmemStats::prepare_errors);
    inode_->count(&GmemStats::get_pfn_errors);
    return st.error();
  }
  return out;
}

Result<GmemPfn> GmemFile::populate_get_pfn(SlotId slot, Gfn gfn, Gfn slot_base_gfn,
                                           GmemPgoff slot_pgoff) {
  inode_->count(&GmemStats::populate_get_pfn_calls);
  const GmemPgoff index = slot_pgoff + (gfn - slot_base_gfn);
  Result<GmemFolio*> f = lookup_for_kvm(slot, index);  // §6.6: errors as in §6.3
  if (!f) return f.error();
  return GmemPfn{(*f)->pfn, 0, 0};  // §6.6: no zeroing, no prepare
}

// §6.6: after post_populate succeeds the folio is marked uptodate, so the guest's first fault
// does not zero the measured contents.
bool GmemFile::mark_uptodate(GmemPgoff index) {
  auto it = inode_->page_cache_.find(index.value());
  if (it == inode_->page_cache_.end()) return false;
  it->second.uptodate = true;
  return true;
}

// __kvm_gmem_invalidate_begin for this file (§6.1): for every binding overlapping [start, end),
// the gfn range slot->base_gfn + max(pgoff, start) - pgoff ... min(pgoff + npages, end) - pgoff;
// kvm_mmu_invalidate_begin once before the first, one flush after the last if any unmap asked
// for it. (Linux visits a binding once per xarray multi-index chunk with the same range; the
// model visits it once: kvm_mmu_unmap_gfn_range of an already-zapped range changes nothing.)
void GmemFile::invalidate_begin(GmemPgoff start, GmemPgoff end, AttrFilter filter) {
  bool found = false, flush = false;
  for (const auto& [first, b] : bindings_) {
    if (!(b.pgoff < end) || !(start < b.end())) continue;
    const GmemPgoff lo = std::max(b.pgoff, start);
    const GmemPgoff hi = std::min(b.end(), end);
    const GfnRange gfns{b.base_gfn + (lo - b.pgoff), b.base_gfn + (hi - b.pgoff)};
    if (!found) {
      found = true;
      inode_->count(&GmemStats::mmu_invalidations);
      vm_->mmu_invalidate_begin();
    }
    inode_->count(&GmemStats::gfn_ranges_unmapped);
    flush |= vm_->mmu_unmap_gfn_range(b.slot, gfns, filter);
  }
  if (flush) {
    inode_->count(&GmemStats::tlb_flushes);
    vm_->flush_remote_tlbs();
  }
}

// __kvm_gmem_invalidate_end: kvm_mmu_invalidate_end iff a binding overlaps (bindings are stable
// across begin/end under the invalidate lock, so begin and end balance).
void GmemFile::invalidate_end(GmemPgoff start, GmemPgoff end) {
  for (const auto& [first, b] : bindings_) {
    if (b.pgoff < end && start < b.end()) {
      vm_->mmu_invalidate_end();
      return;
    }
  }
}

// ============================================================================================
// Host userspace side

GmemFile::UserMapping* GmemFile::mapping(GmemMapping m) {
  auto it = mappings_.find(m.id);
  return it == mappings_.end() ? nullptr : &it->second;
}

const GmemFile::UserMapping* GmemFile::mapping(GmemMapping m) const {
  auto it = mappings_.find(m.id);
  return it == mappings_.end() ? nullptr : &it->second;
}

// The mmap syscall (x86 sys_mmap, ksys_mmap_pgoff, do_mmap), then kvm_gmem_mmap (§6.1).
Result<GmemMapping> GmemFile::mmap(uint64_t length, int prot, bool shared, uint64_t offset) {
  if (!page_aligned(offset)) return Errno::kEINVAL;  // sys_mmap: off & ~PAGE_MASK, before fdget
  if (!fd_open_) return Errno::kEBADF;
  if (length == 0) return Errno::kEINVAL;                               // do_mmap: !len
  if (length > ~uint64_t{0} - (kPageBytes - 1)) return Errno::kENOMEM;  // PAGE_ALIGN(len) == 0
  const uint64_t npages = (length + kPageBytes - 1) >> kPageShift;
  const uint64_t pgoff = offset >> kPageShift;
  if (pgoff + npages < pgoff) return Errno::kEOVERFLOW;  // do_mmap: pgoff + len wraps
  if ((npages << kPageShift) > kTaskSize)
    return Errno::kENOMEM;  // get_unmapped_area: len > TASK_SIZE
  // file_mmap_ok: a regular file maps at most MAX_LFS_FILESIZE bytes -> EOVERFLOW.
  const uint64_t max_bytes = static_cast<uint64_t>(kMaxLfsFilesize) - (npages << kPageShift);
  if (pgoff > (max_bytes >> kPageShift)) return Errno::kEOVERFLOW;
  // do_mmap: the mount is noexec (SB_I_NOEXEC, MNT_NOEXEC; §3), so VM_EXEC -> EPERM. This comes
  // before the file's ->mmap, for MAP_SHARED and MAP_PRIVATE alike (the switch falls through).
  if (prot & PROT_EXEC) return Errno::kEPERM;
  // kvm_gmem_mmap (§6.1): no GUEST_MEMFD_FLAG_MMAP -> ENODEV; not VM_SHARED|VM_MAYSHARE -> EINVAL.
  if (!inode_->supports_mmap()) return Errno::kENODEV;
  if (!shared) return Errno::kEINVAL;
  // The mmap itself succeeds even if the memory is private (§6.1); faults decide. The VMA holds
  // a file reference (vma->vm_file) until munmap.
  const uint64_t id = next_mapping_id_++;
  mappings_.emplace(id, UserMapping{GmemPgoff(pgoff), npages, prot, {}});
  ++refs_;
  inode_->count(&GmemStats::mmaps);
  return GmemMapping{id};
}

Status GmemFile::munmap(GmemMapping m) {
  auto it = mappings_.find(m.id);
  if (it == mappings_.end()) return {};  // munmap of an unmapped range succeeds
  mappings_.erase(it);
  inode_->count(&GmemStats::munmaps);
  fput();  // the VMA's file reference
  return {};
}

// madvise (mm/madvise.c) on one VMA. §6.1: MADV_HUGEPAGE accepted; MADV_COLLAPSE -> EINVAL
// (guest_memfd is not a THP-eligible file); MADV_DONTNEED zaps the user PTEs, the folios stay
// in the page cache, so a refault finds the same (order-0) folio.
Status GmemFile::madvise(GmemMapping m, uint64_t offset, uint64_t len, int advice) {
  if (!madvise_behavior_valid(advice)) return Errno::kEINVAL;
  if (!page_aligned(offset)) return Errno::kEINVAL;
  const uint64_t aligned_len = (len + kPageBytes - 1) & ~(kPageBytes - 1);
  if (len != 0 && aligned_len == 0) return Errno::kEINVAL;
  if (offset + aligned_len < offset) return Errno::kEINVAL;
  if (aligned_len == 0) return {};
  UserMapping* vma = mapping(m);
  if (!vma) return Errno::kENOMEM;  // the whole range is unmapped
  const uint64_t vma_bytes = vma->npages << kPageShift;
  const bool hole = offset + aligned_len > vma_bytes;  // part of the range is unmapped
  if (offset >= vma_bytes) return Errno::kENOMEM;
  const uint64_t first = offset >> kPageShift;
  const uint64_t last = std::min(offset + aligned_len, vma_bytes) >> kPageShift;  // exclusive
  switch (advice) {
    case MADV_NORMAL:
    case MADV_RANDOM:
    case MADV_SEQUENTIAL:
    case MADV_HUGEPAGE:  // sets VM_HUGEPAGE; guest_memfd still allocates order-0 folios (§13.9)
    case MADV_NOHUGEPAGE:
      break;
    case MADV_COLLAPSE:
      return Errno::kEINVAL;
    case MADV_DONTNEED: {
      const GmemPgoff lo = vma->pgoff + first, hi = vma->pgoff + last;
      auto it = vma->ptes.lower_bound(lo.value());
      while (it != vma->ptes.end() && it->first < hi.value()) {
        it = vma->ptes.erase(it);
        inode_->count(&GmemStats::dontneed_pages);
      }
      break;
    }
    default:
      return Errno::kENOSYS;  // a valid Linux advice the model does not implement
  }
  return hole ? Status(Errno::kENOMEM) : Status();
}

// A page fault on a guest_memfd VMA. Generic mm first (no VMA, or an access the VMA's
// protection forbids -> SIGSEGV), then kvm_gmem_fault_user_mapping (§6.1):
//   pgoff << PAGE_SHIFT >= i_size -> SIGBUS; inode without INIT_SHARED -> SIGBUS;
//   get/allocate the folio (ENOMEM -> VM_FAULT_OOM, returned as the error);
//   not uptodate -> clear_highpage + mark uptodate;
// then __do_fault: a hwpoison page -> VM_FAULT_HWPOISON -> SIGBUS.
Result<UserFault> GmemFile::user_fault(GmemMapping m, uint64_t offset, bool write) {
  UserMapping* vma = mapping(m);
  const bool allowed = vma && offset < (vma->npages << kPageShift) &&
                       (write ? (vma->prot & PROT_WRITE) != 0 : vma->prot != PROT_NONE);
  if (!allowed) {
    inode_->count(&GmemStats::sigsegv);
    return UserFault{Signal::kSigsegv, Pfn{}, 0};
  }
  const GmemPgoff pgoff = vma->pgoff + (offset >> kPageShift);
  if (auto pte = vma->ptes.find(pgoff.value()); pte != vma->ptes.end())
    return UserFault{Signal::kNone, pte->second, 0};  // PTE present: no fault

  inode_->count(&GmemStats::user_faults);
  const uint64_t size_pages = static_cast<uint64_t>(inode_->size()) >> kPageShift;
  if (pgoff.value() >= size_pages || !inode_->init_shared()) {  // beyond EOF; private memory (§6.5)
    inode_->count(&GmemStats::sigbus);
    return UserFault{Signal::kSigbus, Pfn{}, 0};
  }
  Result<GmemFolio*> f = inode_->get_folio(pgoff);
  if (!f) return f.error();
  GmemFolio& folio = **f;
  UserFault out{Signal::kNone, folio.pfn, 0};
  if (!folio.uptodate) out.bytes_zeroed = inode_->zero_folio(folio);
  if (folio.hwpoison) {
    inode_->count(&GmemStats::sigbus);
    return UserFault{Signal::kSigbus, Pfn{}, out.bytes_zeroed};
  }
  vma->ptes.emplace(pgoff.value(), folio.pfn);
  return out;
}

Result<HostAccess> GmemFile::host_access(GmemMapping m, uint64_t offset, uint64_t len, bool write,
                                         uint8_t* out, const uint8_t* in, Principal who) {
  HostAccess acc;
  PhysMem& mem = inode_->env_.mem;
  Initiator user = Initiator::host_user(mem, who);
  while (acc.bytes < len) {
    const uint64_t at = offset + acc.bytes;
    UserMapping* vma = mapping(m);
    const bool present = vma && vma->ptes.count((vma->pgoff + (at >> kPageShift)).value()) != 0;
    Result<UserFault> fault = user_fault(m, at, write);
    if (!fault) return fault.error();
    if (!present && fault->signal == Signal::kNone) ++acc.faults;
    if (fault->signal != Signal::kNone) {
      acc.signal = fault->signal;
      return acc;
    }
    const uint64_t in_page = at & (kPageBytes - 1);
    const uint64_t n = std::min(len - acc.bytes, kPageBytes - in_page);
    const Hpa hpa = pfn_to_hpa(fault->pfn) + in_page;
    const AccessResult r = write
                               ? user.write_plain(hpa, std::span<const uint8_t>(in + acc.bytes, n))
                               : user.read_plain(hpa, std::span<uint8_t>(out + acc.bytes, n));
    if (!r.ok()) {
      inode_->count(&GmemStats::sigbus);
      acc.signal = Signal::kSigbus;
      return acc;
    }
    if (write) {
      // As the memory module does for a write: the frame now holds the writer's data under the
      // host key.
      mem.set_key(fault->pfn, 0);
      mem.set_label(fault->pfn, who);
    }
    acc.bytes += n;
  }
  return acc;
}

Result<HostAccess> GmemFile::host_read(GmemMapping m, uint64_t offset, std::span<uint8_t> out) {
  return host_access(m, offset, out.size(), false, out.data(), nullptr, kHostUser);
}

Result<HostAccess> GmemFile::host_write(GmemMapping m, uint64_t offset, std::span<const uint8_t> in,
                                        Principal who) {
  return host_access(m, offset, in.size(), true, nullptr, in.data(), who);
}

std::optional<Pfn> GmemFile::user_pte(GmemMapping m, uint64_t offset) const {
  const UserMapping* vma = mapping(m);
  if (!vma || offset >= (vma->npages << kPageShift)) return std::nullopt;
  auto it = vma->ptes.find((vma->pgoff + (offset >> kPageShift)).value());
  if (it == vma->ptes.end()) return std::nullopt;
  return it->second;
}

// unmap_mapping_range over file pages [start, end) for every mapping of this file.
void GmemFile::zap_user_ptes(GmemPgoff start, GmemPgoff end) {
  for (auto& [id, vma] : mappings_) {
    auto it = vma.ptes.lower_bound(start.value());
    while (it != vma.ptes.end() && it->first < end.value()) it = vma.ptes.erase(it);
  }
}

// ============================================================================================
// Host kernel side

// memory_failure() on a guest_memfd page (mm/memory-failure.c, §6.1): the page is marked
// hwpoison (a second report finds it already poisoned -> EHWPOISON), user mappings lose it
// (hwpoison_user_mappings), then .error_remove_folio = kvm_gmem_error_folio invalidates
// begin/end over the folio in every binding and does not truncate (MF_DELAYED). Later
// kvm_gmem_get_pfn -> EHWPOISON, a user fault -> SIGBUS. PhysMem's poison bit is the hardware
// model's business (it reports the error), so it is not touched here. No folio at `index`:
// nothing of this file is affected (ENOENT, a model answer).
Status GmemFile::memory_failure(GmemPgoff index) {
  auto it = inode_->page_cache_.find(index.value());
  if (it == inode_->page_cache_.end()) return Errno::kENOENT;
  if (it->second.hwpoison) return Errno::kEHWPOISON;
  it->second.hwpoison = true;
  inode_->count(&GmemStats::memory_failures);
  for (GmemFile* f : inode_->files_) f->zap_user_ptes(index, index + 1);
  inode_->invalidate_begin(index, index + 1);
  inode_->invalidate_end(index, index + 1);
  return {};
}

}  // namespace cvmsim::kvm
