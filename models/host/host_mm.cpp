#include "models/host/host_mm.h"

#include <algorithm>

namespace cvmsim {

HostMm::HostMm(PhysMem& mem, FrameAllocator& frames, Principal owner, Hva mmap_base)
    : mem_(mem),
      frames_(frames),
      owner_(owner),
      user_(Initiator::host_user(mem, owner)),
      kernel_(Initiator::host_kernel(mem)),
      next_(mmap_base) {}

HostMm::~HostMm() {
  for (auto& [s, v] : vmas_)
    for (auto& [idx, pfn] : v.pages) frames_.free(pfn, v.page);
}

Result<Hva> HostMm::mmap_anon(uint64_t len, PageSize page) {
  const uint64_t ps = bytes_of(page);
  if (len == 0 || len % kPageBytes || len % ps) return Errno::kEINVAL;
  // Placed top-down below the previous mapping, as Linux's mmap does, with a guard page between.
  if (len + kPageBytes > next_.value()) return Errno::kENOMEM;
  const Hva start = Hva((next_.value() - len) & ~(ps - 1));
  if (start.value() < kPageBytes * 16) return Errno::kENOMEM;  // keep clear of NULL
  Vma v;
  v.start = start;
  v.len = len;
  v.page = page;
  vmas_.emplace(start.value(), std::move(v));
  next_ = start - kPageBytes;
  ++stats_.mmaps;
  return start;
}

HostMm::Vma* HostMm::find_vma(Hva a) {
  auto it = vmas_.upper_bound(a.value());
  if (it == vmas_.begin()) return nullptr;
  --it;
  return a < it->second.end() ? &it->second : nullptr;
}

const HostMm::Vma* HostMm::find_vma(Hva a) const {
  return const_cast<HostMm*>(this)->find_vma(a);
}

void HostMm::notify_start(Hva s, Hva e) {
  for (MmuNotifier* n : notifiers_) {
    n->invalidate_range_start(s, e);
    ++stats_.notifier_calls;
  }
}

void HostMm::notify_end(Hva s, Hva e) {
  for (MmuNotifier* n : notifiers_) n->invalidate_range_end(s, e);
}

void HostMm::drop_pages(Vma& v, Hva s, Hva e) {
  const uint64_t ps = bytes_of(v.page);
  const uint64_t first = (s - v.start) / ps, last = (e - v.start) / ps;
  for (auto it = v.pages.lower_bound(first); it != v.pages.end() && it->first < last;) {
    frames_.free(it->second, v.page);
    owned_.erase(it->second.value());
    resident_bytes_ -= ps;
    ++stats_.pages_freed;
    it = v.pages.erase(it);
  }
}

Status HostMm::munmap(Hva start, uint64_t len) {
  if (!start.is_aligned(PageSize::k4K) || len == 0) return Errno::kEINVAL;
  len = (len + kPageBytes - 1) & ~(kPageBytes - 1);
  const Hva end = start + len;
  // Huge mappings are unmapped in whole pages.
  for (auto& [b, v] : vmas_) {
    if (!(v.start < end && start < v.end())) continue;
    const uint64_t ps = bytes_of(v.page);
    const Hva s = std::max(start, v.start), e = std::min(end, v.end());
    if ((s - v.start) % ps || (e - v.start) % ps) return Errno::kEINVAL;
  }
  notify_start(start, end);
  for (auto it = vmas_.begin(); it != vmas_.end();) {
    Vma& v = it->second;
    if (!(v.start < end && start < v.end())) {
      ++it;
      continue;
    }
    const Hva s = std::max(start, v.start), e = std::min(end, v.end());
    drop_pages(v, s, e);
    // Split the VMA around the hole.
    Vma head = v, tail = v;
    head.len = s - v.start;
    tail.start = e;
    tail.len = v.end() - e;
    const uint64_t ps = bytes_of(v.page);
    head.pages.clear();
    tail.pages.clear();
    for (auto& [idx, pfn] : v.pages) {
      if (v.start + idx * ps < s)
        head.pages.emplace(idx, pfn);
      else
        tail.pages.emplace((v.start + idx * ps - e) / ps, pfn);
    }
    it = vmas_.erase(it);
    if (head.len) vmas_.emplace(head.start.value(), std::move(head));
    if (tail.len) it = vmas_.emplace(tail.start.value(), std::move(tail)).first, ++it;
  }
  notify_end(start, end);
  ++stats_.munmaps;
  return {};
}

Status HostMm::madvise_dontneed(Hva start, uint64_t len) {
  if (!start.is_aligned(PageSize::k4K)) return Errno::kEINVAL;
  if (len == 0) return {};
  len = (len + kPageBytes - 1) & ~(kPageBytes - 1);
  const Hva end = start + len;
  // Every byte must be mapped (Linux returns ENOMEM for holes), hugetlb in whole pages.
  for (Hva a = start; a < end;) {
    Vma* v = find_vma(a);
    if (!v) return Errno::kENOMEM;
    const uint64_t ps = bytes_of(v->page);
    const Hva e = std::min(end, v->end());
    if ((a - v->start) % ps || (e - v->start) % ps) return Errno::kEINVAL;
    a = e;
  }
  notify_start(start, end);
  for (Hva a = start; a < end;) {
    Vma* v = find_vma(a);
    const Hva e = std::min(end, v->end());
    drop_pages(*v, a, e);
    a = e;
  }
  notify_end(start, end);
  ++stats_.madvise_dontneed;
  return {};
}

Result<HostMm::Page> HostMm::get_user_page(Hva a) {
  Vma* v = find_vma(a);
  if (!v) {
    ++stats_.efaults;
    return Errno::kEFAULT;
  }
  const uint64_t ps = bytes_of(v->page);
  const uint64_t idx = (a - v->start) / ps;
  auto it = v->pages.find(idx);
  if (it == v->pages.end()) {
    auto f = frames_.alloc(v->page);
    if (!f.ok()) return f.error();
    // A fresh anonymous page is zeroed by the kernel before userspace sees it. A page the
    // host's checks refuse to the kernel is not the host's to hand out.
    if (!kernel_.fill_plain(pfn_to_hpa(*f), ps, 0).ok()) {
      frames_.free(*f, v->page);
      ++stats_.efaults;
      return Errno::kEFAULT;
    }
    for (uint64_t i = 0; i < frames_of(v->page); ++i) mem_.set_label(*f + i, kNobody);
    stats_.bytes_zeroed += ps;
    resident_bytes_ += ps;
    ++stats_.page_faults;
    it = v->pages.emplace(idx, *f).first;
    owned_.insert(f->value());
  }
  return Page{it->second, v->page, v->start + idx * ps};
}

std::optional<HostMm::Page> HostMm::lookup(Hva a) const {
  const Vma* v = find_vma(a);
  if (!v) return std::nullopt;
  const uint64_t ps = bytes_of(v->page);
  const uint64_t idx = (a - v->start) / ps;
  auto it = v->pages.find(idx);
  if (it == v->pages.end()) return std::nullopt;
  return Page{it->second, v->page, v->start + idx * ps};
}

std::optional<PageSize> HostMm::mapping_page_size(Hva a) const {
  const Vma* v = find_vma(a);
  if (!v) return std::nullopt;
  return v->page;
}

Status HostMm::read(Hva a, std::span<uint8_t> out) {
  uint64_t done = 0;
  while (done < out.size()) {
    const Hva at = a + done;
    auto p = get_user_page(at);
    if (!p.ok()) return p.error();
    const uint64_t n = std::min<uint64_t>(out.size() - done, kPageBytes - at.page_offset());
    if (!user_.read_plain(pfn_to_hpa(p->pfn_for(at)) + at.page_offset(), out.subspan(done, n))
             .ok()) {
      ++stats_.efaults;
      return Errno::kEFAULT;
    }
    done += n;
  }
  return {};
}

Status HostMm::write(Hva a, std::span<const uint8_t> in) {
  uint64_t done = 0;
  while (done < in.size()) {
    const Hva at = a + done;
    auto p = get_user_page(at);
    if (!p.ok()) return p.error();
    const uint64_t n = std::min<uint64_t>(in.size() - done, kPageBytes - at.page_offset());
    const Pfn f = p->pfn_for(at);
    if (!user_.write_plain(pfn_to_hpa(f) + at.page_offset(), in.subspan(done, n)).ok()) {
      ++stats_.efaults;
      return Errno::kEFAULT;
    }
    mem_.set_label(f, owner_);
    done += n;
  }
  return {};
}

void HostMm::register_notifier(MmuNotifier* n) {
  notifiers_.push_back(n);
}

void HostMm::unregister_notifier(MmuNotifier* n) {
  std::erase(notifiers_, n);
}

void HostMm::describe_stats(StatVisitor& v) const {
  v.counter("mmaps", stats_.mmaps, "calls", "anonymous mappings created");
  v.counter("munmaps", stats_.munmaps, "calls", "munmap calls");
  v.counter("madvise_dontneed", stats_.madvise_dontneed, "calls", "madvise(MADV_DONTNEED) calls");
  v.counter("page_faults", stats_.page_faults, "faults",
            "pages allocated and zeroed on first touch");
  v.counter("pages_freed", stats_.pages_freed, "pages", "pages freed by munmap or MADV_DONTNEED");
  v.counter("bytes_zeroed", stats_.bytes_zeroed, "bytes", "bytes zeroed for fresh anonymous pages");
  v.counter("notifier_calls", stats_.notifier_calls, "calls",
            "MMU-notifier invalidate_range_start calls delivered");
  v.counter("efaults", stats_.efaults, "count",
            "accesses or get_user_pages calls on unmapped addresses");
  v.value("resident_bytes", double(resident_bytes_), "bytes",
          "memory currently backing the address space");
}

}  // namespace cvmsim
