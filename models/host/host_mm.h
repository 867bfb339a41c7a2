// A host process address space (Linux's mm_struct), enough for a VMM: anonymous mappings whose
// pages are allocated and zeroed on first touch, optionally backed by huge pages (hugetlbfs);
// munmap and madvise(MADV_DONTNEED) that free pages; and MMU notifiers, through which KVM
// hears that a host virtual range it may have mapped into a guest is going away
// (kvm-guest-memfd.md §5, "the same mechanism covers host mm notifier events").
//
// This is the "shared backing" a memslot's userspace_addr points at. Host userspace reads and
// writes go through read()/write(), which fault pages in as the kernel would and label what
// they write as the host user's data (the secret labels of hw/memory). They are the VMM's
// accesses as an initiator (hw/memory/initiator.h) and pass the platform's host checks; so does
// the kernel's clearing of a fresh page.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <unordered_set>
#include <vector>

#include "hw/base/addr.h"
#include "hw/base/page_size.h"
#include "hw/base/principal.h"
#include "hw/base/result.h"
#include "hw/base/stat_visitor.h"
#include "hw/memory/frame_allocator.h"
#include "hw/memory/initiator.h"
#include "hw/memory/phys_mem.h"

namespace cvmsim {

// TASK_SIZE_MAX on x86-64 with 4-level paging: user addresses lie below it (access_ok()).
inline constexpr uint64_t kTaskSize = (1ull << 47) - 4096;

// Implemented by whoever caches translations of this address space (KVM's memslots).
class MmuNotifier {
 public:
  virtual ~MmuNotifier() = default;
  virtual void invalidate_range_start(Hva start, Hva end) = 0;
  virtual void invalidate_range_end(Hva start, Hva end) = 0;
};

class HostMm {
 public:
  struct Page {
    Pfn pfn;  // first frame of the (possibly huge) page
    PageSize size = PageSize::k4K;
    Hva base;  // where the page starts
    Pfn pfn_for(Hva a) const { return pfn + ((a - base) >> kPageShift); }
  };

  // Anonymous mappings are placed top-down below `mmap_base`, each aligned to its page size.
  HostMm(PhysMem& mem, FrameAllocator& frames, Principal owner = kHostUser,
         Hva mmap_base = Hva(0x7f0000000000));
  ~HostMm();
  HostMm(const HostMm&) = delete;
  HostMm& operator=(const HostMm&) = delete;

  // mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_ANONYMOUS [|MAP_HUGETLB]).
  //   EINVAL  len 0, or not a multiple of the page size for a huge mapping
  //   ENOMEM  no address space left below the user limit
  Result<Hva> mmap_anon(uint64_t len, PageSize page = PageSize::k4K);
  // munmap: frees the pages (notifiers first). EINVAL if unaligned; a range with no mapping is
  // not an error (as Linux). Huge mappings must be unmapped in whole pages (EINVAL otherwise).
  Status munmap(Hva start, uint64_t len);
  // madvise(MADV_DONTNEED): frees the pages but keeps the mapping; the next touch gets a fresh
  // zeroed page. EINVAL if unaligned or (hugetlb) not whole pages; ENOMEM if part of the range
  // is unmapped (as Linux).
  Status madvise_dontneed(Hva start, uint64_t len);

  // get_user_pages: the page backing `a`, faulting it in (allocate + zero) if needed.
  //   EFAULT  no mapping there;  ENOMEM  no frame left
  Result<Page> get_user_page(Hva a);
  // The page if present, without faulting.
  std::optional<Page> lookup(Hva a) const;
  // Page size of the mapping at `a` (host_pfn_mapping_level), or nullopt if unmapped.
  std::optional<PageSize> mapping_page_size(Hva a) const;

  // Host userspace accesses (memcpy in the VMM). EFAULT if any byte is unmapped, or if the
  // platform's host checks refuse a page (a real VMM gets SIGBUS: tdx-snp.md B3); the pages
  // before it were accessed.
  Status read(Hva a, std::span<uint8_t> out);
  Status write(Hva a, std::span<const uint8_t> in);

  // A token that lives as long as this address space: holders of a weak reference (a VM that
  // may outlive the VMM process, pinned by a guest_memfd) can tell whether it is gone (Linux
  // keeps the mm_struct alive with mmgrab; the model lets the VM see that it died).
  std::weak_ptr<const void> lifetime() const { return alive_; }
  void register_notifier(MmuNotifier* n);
  void unregister_notifier(MmuNotifier* n);

  uint64_t resident_bytes() const { return resident_bytes_; }
  // True if frame f is the first frame of a page of this address space (checkers).
  bool owns_frame(Pfn f) const { return owned_.count(f.value()) != 0; }
  // One mapping as inspectors see it: its range, page size and present pages (page index
  // within the mapping -> first frame of that page).
  struct VmaView {
    Hva start;
    uint64_t len = 0;
    PageSize page = PageSize::k4K;
    const std::map<uint64_t, Pfn>& pages;
  };
  // f(const VmaView&) for every mapping, by address (ownership graph, checkers).
  template <class F>
  void for_each_vma(F&& f) const {
    for (const auto& [s, v] : vmas_) f(VmaView{v.start, v.len, v.page, v.pages});
  }
  Principal owner() const { return owner_; }
  void describe_stats(StatVisitor& v) const;

 private:
  struct Vma {
    Hva start;
    uint64_t len = 0;
    PageSize page = PageSize::k4K;
    std::map<uint64_t, Pfn> pages;  // page index within the VMA -> first frame
    Hva end() const { return start + len; }
  };
  Vma* find_vma(Hva a);
  const Vma* find_vma(Hva a) const;
  void notify_start(Hva s, Hva e);
  void notify_end(Hva s, Hva e);
  // Frees the present pages of [s, e) inside v (which must cover whole pages).
  void drop_pages(Vma& v, Hva s, Hva e);

  PhysMem& mem_;
  FrameAllocator& frames_;
  Principal owner_;
  Initiator user_;    // the owner's userspace accesses
  Initiator kernel_;  // the kernel clearing fresh pages
  Hva next_;
  std::map<uint64_t, Vma> vmas_;  // by start
  std::vector<MmuNotifier*> notifiers_;
  uint64_t resident_bytes_ = 0;
  std::unordered_set<uint64_t> owned_;  // first frames of present pages
  std::shared_ptr<const void> alive_ = std::make_shared<int>(0);
  struct Stats {
    uint64_t mmaps = 0, munmaps = 0, madvise_dontneed = 0, page_faults = 0, pages_freed = 0;
    uint64_t bytes_zeroed = 0, notifier_calls = 0, efaults = 0;
  } stats_;
};

}  // namespace cvmsim
