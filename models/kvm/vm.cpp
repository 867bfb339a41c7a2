#include "models/kvm/vm.h"

#include "models/kvm/kvm_machines.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "models/kvm/kvm.h"
#include "models/kvm/vcpu.h"

namespace cvmsim::kvm {

namespace {

constexpr uint64_t kPageMask = kPageBytes - 1;
constexpr uint32_t kMaxVcpuIds = 4096;  // KVM_MAX_VCPU_IDS on x86

uint64_t level_span(unsigned level) {
  return kPageBytes << (9 * level);
}

Cycles cycles_for_bytes(uint64_t bytes, double per_cycle) {
  return Cycles(per_cycle > 0 ? static_cast<uint64_t>(static_cast<double>(bytes) / per_cycle) : 0);
}

}  // namespace

Vm::Vm(Kvm& kvm, std::unique_ptr<KvmBackend> backend, const Env& env, const KvmConfig& cfg,
       std::string name)
    : kvm_(kvm),
      backend_(std::move(backend)),
      env_(env),
      cfg_(cfg),
      name_(std::move(name)),
      attrs_(make_attr_store(cfg.attr_store, cfg.attr_store_max_bytes)),
      trace_name_("platform." + name_ + ".kvm") {
  pre_fault_allowed = backend_->pre_fault_allowed_at_create();
}

Vm::~Vm() {
  destroy();
}

void Vm::destroy() {
  if (destroyed_) return;
  destroyed_ = true;
  dead_ = true;
  if (!mm_alive_.expired()) env_.mm.unregister_notifier(this);
  // Slots: unbind from their files (the files may outlive the VM only while they pin it, so
  // by now every file is released; unbind is then a no-op, §4).
  for (auto& set : slots_) {
    std::vector<uint16_t> ids;
    set.for_each([&](Memslot& s) { ids.push_back(s.id.id); });
    for (uint16_t id : ids) {
      auto s = set.remove(id);
      if (s->gmem.file) s->gmem.file->unbind(s->id);
    }
  }
  vcpus_.clear();
  stage2_.reset();
}

Status Vm::init() {
  auto s2 = Stage2Table::create(env_.mem, env_.frames, env_.format);
  if (!s2.ok()) return s2.error();
  stage2_ = std::move(*s2);
  env_.mm.register_notifier(this);
  mm_alive_ = env_.mm.lifetime();
  return backend_->vm_init(*this);
}

void Vm::charge(Cycles c) {
  kvm_.charge(c);
}

void Vm::kvm_put() {
  if (users_ == 0) return;
  if (--users_ == 0) kvm_.destroy_vm(*this);  // `this` is gone after this line
}

// ---------------------------------------------------------------------------------------------
// Memory attributes (kvm-guest-memfd.md §5)

uint64_t Vm::supported_attributes() const {
  // kvm_supported_mem_attributes: PRIVATE iff kvm_arch_has_private_mem (§2).
  return backend_->has_private_mem() ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
}

bool Vm::range_has_memory_attributes(GfnRange r, uint64_t mask, uint64_t attrs) const {
  // "mask is first ANDed with the supported attributes; if attrs has bits outside the mask, it
  // returns false" (§5).
  mask &= supported_attributes();
  if (attrs & ~mask) return false;
  return attrs_->range_has(r, mask, attrs);
}

Status Vm::set_memory_attributes(const kvm_memory_attributes& a) {
  // §5 validation, in order (rule 1, copy_from_user, is the facade's).
  if (a.flags != 0) return Errno::kEINVAL;                                     // 2
  if (a.attributes & ~supported_attributes()) return Errno::kEINVAL;           // 3
  if (a.size == 0 || a.address + a.size < a.address) return Errno::kEINVAL;    // 4
  if ((a.address & kPageMask) || (a.size & kPageMask)) return Errno::kEINVAL;  // 5
  const GfnRange r{gpa_to_gfn(Gpa(a.address)), gpa_to_gfn(Gpa(a.address + a.size))};
  ++stats_.attr_sets;
  CovSample cov;
  cov_begin(cov, r);
  const uint8_t cov_op =
      static_cast<uint8_t>((a.attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE) ? GfnOp::kSetAttrPrivate
                                                                         : GfnOp::kSetAttrShared);

  const AttrStoreWork w0 = attrs_->work();
  auto charge_store_work = [&] {
    const AttrStoreWork& w = attrs_->work();
    const uint64_t entries = (w.entries_written - w0.entries_written) +
                             (w.entries_visited - w0.entries_visited) + (w.lookups - w0.lookups);
    charge(cfg_.costs.attr_per_entry * entries +
           cfg_.costs.attr_per_range * (w.ranges_written - w0.ranges_written));
  };

  // 1. Early exit when nothing changes: no invalidation at all.
  if (range_has_memory_attributes(r, ~uint64_t{0}, a.attributes)) {
    ++stats_.attr_sets_noop;
    charge_store_work();
    cov_end(cov, cov_op, static_cast<uint8_t>(GfnOutcome::kNoop));
    return {};
  }
  // 2. Reserve every index; ENOMEM leaves the attributes unchanged.
  if (Status st = attrs_->reserve(r); !st.ok()) {
    charge_store_work();
    return st;
  }
  // 3. Pre phase over every address space and memslot intersecting the range.
  bool locked = false, flush = false;
  for (auto& set : slots_) {
    set.for_each_in(r, [&](Memslot& s) {
      const GfnRange clip{std::max(r.start, s.base_gfn), std::min(r.end, s.end_gfn())};
      if (!locked) {
        mmu_invalidate_begin();
        locked = true;
      }
      mmu_invalidate_range_add(clip);
      // x86 kvm_arch_pre_set_memory_attributes: huge pages straddling the range that are not
      // mixed join the invalidation, so that a racing fault cannot map them huge (§5).
      if (backend_->has_private_mem() && s.lpage)
        for (const GfnRange& h : s.lpage->straddling_unmixed(clip)) mmu_invalidate_range_add(h);
      pre_set_memory_attributes(clip, a.attributes, flush);
    });
  }
  if (flush) flush_remote_tlbs();
  // 4. Store.
  attrs_->store(r, a.attributes);
  mark_dirty(r);
  cov_note(r, kGfnPrivate, (a.attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE) != 0);
  stats_.attr_pages_changed += r.pages();
  if (kvm_.tracing()) {
    char d[160];
    std::snprintf(d, sizeof d, "gfn [0x%" PRIx64 ", 0x%" PRIx64 ") attributes 0x%" PRIx64,
                  r.start.value(), r.end.value(), a.attributes);
    kvm_.trace(trace_name_, "set_memory_attributes", d);
  }
  // 5. Post phase: recompute the mixed huge pages, then end the invalidation.
  for (auto& set : slots_) {
    set.for_each_in(r, [&](Memslot& s) {
      const GfnRange clip{std::max(r.start, s.base_gfn), std::min(r.end, s.end_gfn())};
      post_set_memory_attributes(clip, a.attributes);
    });
  }
  if (locked) mmu_invalidate_end();
  charge_store_work();
  cov_end(cov, cov_op, static_cast<uint8_t>(GfnOutcome::kOk));
  return {};
}

void Vm::pre_set_memory_attributes(GfnRange r, uint64_t attrs, bool& flush) {
  // Generic x86 part: converting to PRIVATE zaps the shared mappings, to shared the private
  // ones (attr_filter); zapping happens even for slots without guest_memfd (§5).
  const AttrFilter filter =
      (attrs & KVM_MEMORY_ATTRIBUTE_PRIVATE) ? AttrFilter::kShared : AttrFilter::kPrivate;
  flush |= unmap_gfn_range(r, filter);
  flush |= backend_->pre_set_memory_attributes(*this, r, attrs);
}

void Vm::post_set_memory_attributes(GfnRange r, uint64_t attrs) {
  for (auto& set : slots_)
    set.for_each_in(r, [&](Memslot& s) {
      if (s.lpage) s.lpage->post_set(*attrs_, r, attrs);
    });
  backend_->post_set_memory_attributes(*this, r, attrs);
}

// ---------------------------------------------------------------------------------------------
// Memslots (§4)

Status Vm::check_memory_region_flags(uint32_t flags) const {
  const uint32_t valid = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY | KVM_MEM_GUEST_MEMFD;
  if (flags & ~valid) return Errno::kEINVAL;
  if ((flags & KVM_MEM_GUEST_MEMFD) && (flags & KVM_MEM_LOG_DIRTY_PAGES)) return Errno::kEINVAL;
  if ((flags & KVM_MEM_GUEST_MEMFD) && (flags & KVM_MEM_READONLY)) return Errno::kEINVAL;
  if ((flags & KVM_MEM_READONLY) && !backend_->has_readonly_mem()) return Errno::kEINVAL;
  return {};
}

Status Vm::set_memory_region(const kvm_userspace_memory_region2& r, bool v2,
                             const GmemResolver& resolve) {
  // The v1 ioctl knows only LOG_DIRTY_PAGES and READONLY: GUEST_MEMFD is v2-only (§4).
  if (!v2 && (r.flags & ~(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY))) return Errno::kEINVAL;
  const uint16_t as_id = static_cast<uint16_t>(r.slot >> 16),
                 id = static_cast<uint16_t>(r.slot & 0xffff);
  if (id >= KVM_USER_MEM_SLOTS) return Errno::kEINVAL;
  if (Status st = check_memory_region_flags(r.flags); !st.ok()) return st;

  // kvm_set_memory_region general checks, in order (all EINVAL).
  if (r.memory_size & kPageMask) return Errno::kEINVAL;       // 1
  if (r.guest_phys_addr & kPageMask) return Errno::kEINVAL;   // 2
  if ((r.userspace_addr & kPageMask) ||                       // 3: aligned, untagged,
      r.userspace_addr + r.memory_size < r.userspace_addr ||  //    access_ok()
      r.userspace_addr + r.memory_size > kTaskSize)
    return Errno::kEINVAL;
  if ((r.flags & KVM_MEM_GUEST_MEMFD) &&  // 4
      ((r.guest_memfd_offset & kPageMask) ||
       r.guest_memfd_offset + r.memory_size < r.guest_memfd_offset))
    return Errno::kEINVAL;
  if (as_id >= kAddressSpaces || id >= KVM_MEM_SLOTS_NUM) return Errno::kEINVAL;     // 5
  if (r.guest_phys_addr + r.memory_size < r.guest_phys_addr) return Errno::kEINVAL;  // 6
  const uint64_t npages = r.memory_size >> kPageShift;
  if (npages > KVM_MEM_MAX_NR_PAGES) return Errno::kEINVAL;  // 7

  MemslotSet& set = slots_[as_id];
  Memslot* old = set.find_id(id);
  if (r.memory_size == 0) {
    // Delete: the slot must exist. guest_memfd/offset are ignored.
    if (!old) return Errno::kEINVAL;
    return delete_slot(*old);
  }
  const Gfn base = gpa_to_gfn(Gpa(r.guest_phys_addr));
  const GfnRange gfns{base, base + npages};
  if (!old) {
    if (nr_memslot_pages_ + npages < nr_memslot_pages_) return Errno::kEINVAL;
    if (set.find_overlap(gfns)) return Errno::kEEXIST;
    return create_slot(r, SlotId{as_id, id}, resolve);
  }
  // Modify. "Private memslots are immutable, they can only be deleted" (§4): the simulator
  // refuses every modification of a gmem slot, the documented intent.
  if ((r.flags & KVM_MEM_GUEST_MEMFD) || old->has_gmem()) return Errno::kEINVAL;
  if (r.userspace_addr != old->userspace_addr.value() || npages != old->npages ||
      ((r.flags ^ old->flags) & KVM_MEM_READONLY))
    return Errno::kEINVAL;
  if (base == old->base_gfn && r.flags == old->flags) return {};  // identical: no-op
  charge(cfg_.costs.memslot_update);
  if (base != old->base_gfn) {
    // KVM_MR_MOVE: the new range must not overlap another slot; old mappings are zapped.
    if (set.find_overlap(gfns, old)) return Errno::kEEXIST;
    mmu_invalidate_begin();
    mmu_invalidate_range_add(old->gfns());
    if (unmap_gfn_range(old->gfns(), AttrFilter::kBoth)) flush_remote_tlbs();
    set.move(*old, base);
    dirty_.all = true;
    cov_forget();
    if (old->lpage) {
      old->lpage = std::make_unique<LpageTracker>(old->base_gfn, old->npages);
      old->lpage->init(*attrs_);
    }
    mmu_invalidate_end();
    ++stats_.slots_moved;
  }
  old->flags = r.flags;  // KVM_MR_FLAGS_ONLY (dirty logging is not modelled beyond the flag)
  return {};
}

Status Vm::create_slot(const kvm_userspace_memory_region2& r, SlotId id,
                       const GmemResolver& resolve) {
  auto s = std::make_unique<Memslot>();
  s->id = id;
  s->base_gfn = gpa_to_gfn(Gpa(r.guest_phys_addr));
  s->npages = r.memory_size >> kPageShift;
  s->flags = r.flags;
  s->userspace_addr = Hva(r.userspace_addr);
  if (r.flags & KVM_MEM_GUEST_MEMFD) {
    // kvm_gmem_bind (§4): fd lookup (EBADF), not a guest_memfd (EINVAL), then the file's rules.
    auto f = resolve(r.guest_memfd);
    if (!f.ok()) return f.error();
    GmemFile* file = *f;
    auto b =
        file->bind(*this, id, s->base_gfn, s->npages, static_cast<int64_t>(r.guest_memfd_offset));
    if (!b.ok()) return b.error();
    s->gmem.file = file;
    s->gmem.pgoff = b->pgoff;
    s->gmem.bound = true;
    s->gmem_only = b->gmem_only;  // KVM_MEMSLOT_GMEM_ONLY when the file has GUEST_MEMFD_FLAG_MMAP
  }
  if (backend_->has_private_mem()) {
    // kvm_mmu_init_memslot_memory_attributes (§5).
    s->lpage = std::make_unique<LpageTracker>(s->base_gfn, s->npages);
    s->lpage->init(*attrs_);
  }
  nr_memslot_pages_ += s->npages;
  dirty_.all = true;
  cov_forget();
  if (kvm_.tracing()) {
    char d[200];
    std::snprintf(d, sizeof d, "slot %u.%u gfn [0x%" PRIx64 ", 0x%" PRIx64 ") hva 0x%" PRIx64 "%s",
                  id.as_id, id.id, s->base_gfn.value(), s->end_gfn().value(),
                  s->userspace_addr.value(), s->gmem.bound ? " guest_memfd" : "");
    kvm_.trace(trace_name_, "memslot_create", d);
  }
  slots_[id.as_id].insert(std::move(s));
  charge(cfg_.costs.memslot_update);
  ++stats_.slots_created;
  return {};
}

Status Vm::delete_slot(Memslot& s) {
  // kvm_set_memslot(DELETE): the slot is invalidated and every mapping through it zapped
  // (kvm_arch_flush_shadow_memslot), then it is removed and unbound from its guest_memfd.
  charge(cfg_.costs.memslot_update);
  CovSample cov;
  cov_begin(cov, s.gfns());
  mmu_invalidate_begin();
  mmu_invalidate_range_add(s.gfns());
  if (unmap_gfn_range(s.gfns(), AttrFilter::kBoth)) flush_remote_tlbs();
  mmu_invalidate_end();
  const SlotId id = s.id;
  dirty_.all = true;
  cov_forget();
  if (kvm_.tracing())
    kvm_.trace(trace_name_, "memslot_delete",
               "slot " + std::to_string(id.as_id) + "." + std::to_string(id.id));
  nr_memslot_pages_ -= s.npages;
  auto owned = slots_[id.as_id].remove(id.id);
  if (owned->gmem.file) owned->gmem.file->unbind(id);  // a no-op once the file is released
  ++stats_.slots_deleted;
  cov_end(cov, static_cast<uint8_t>(GfnOp::kMemslotDelete), static_cast<uint8_t>(GfnOutcome::kOk));
  return {};
}

// ---------------------------------------------------------------------------------------------
// MMU invalidation (§5)

void Vm::mmu_invalidate_begin() {
  // On 0 -> 1 the range is reset to INVALID.
  if (inv_in_progress_++ == 0) inv_range_valid_ = false;
  ++stats_.invalidations;
}

void Vm::mmu_invalidate_range_add(GfnRange r) {
  if (r.empty()) return;
  if (!inv_range_valid_) {
    inv_start_ = r.start;
    inv_end_ = r.end;
    inv_range_valid_ = true;
  } else {
    inv_start_ = std::min(inv_start_, r.start);
    inv_end_ = std::max(inv_end_, r.end);
  }
}

void Vm::mmu_invalidate_end() {
  ++inv_seq_;
  if (inv_in_progress_) --inv_in_progress_;
}

bool Vm::mmu_invalidate_retry_gfn(uint64_t seq, Gfn gfn) const {
  if (inv_in_progress_) {
    if (!inv_range_valid_) return true;  // WARN in Linux: be safe and retry
    if (inv_start_ <= gfn && gfn < inv_end_) return true;
  }
  return seq != inv_seq_;
}

// ---------------------------------------------------------------------------------------------
// Zapping and TLB flushes

bool Vm::unmap_gfn_range(GfnRange r, AttrFilter filter) {
  if (backend_->has_private_root()) cov_forget();
  bool flush = false;
  // A backend with a separate private root (TDX's S-EPT) zaps it itself; otherwise private and
  // shared mappings share one table and the filter has no effect (§5).
  if (backend_->has_private_root()) {
    if (static_cast<uint8_t>(filter) & static_cast<uint8_t>(AttrFilter::kPrivate))
      flush |= backend_->zap_private_range(*this, r);
    if (!(static_cast<uint8_t>(filter) & static_cast<uint8_t>(AttrFilter::kShared))) return flush;
  }
  // The shared table is indexed by gfn | direct bits (TDX's shared bit).
  const uint64_t direct = gfn_to_gpa(Gfn(backend_->gfn_direct_bits(*this))).value();
  const uint64_t limit = uint64_t{1} << input_bits_of(env_.format);
  uint64_t a = gfn_to_gpa(r.start).value() | direct;
  const uint64_t end = std::min(gfn_to_gpa(r.end).value() | direct, limit);
  while (a < end) {
    const Stage2Lookup lk = stage2_->lookup(Gpa(a));
    const uint64_t span = level_span(lk.level);
    if (lk.kind == EntryKind::kLeaf) {
      // The whole leaf goes, even if it sticks out of the range (a huge page is zapped whole).
      const Pfn first = lk.pte.pfn;
      (void)stage2_->unmap(lk.base, lk.size());
      const Gfn g = gpa_to_gfn(Gpa(lk.base.value() & ~direct));
      mark_dirty(GfnRange{g, g + frames_of(lk.size())});
      cov_note(GfnRange{g, g + frames_of(lk.size())}, kGfnMapped, false);
      for (uint64_t i = 0; i < frames_of(lk.size()); ++i) env_.mem.revoke_dmi(first + i);
      ++stats_.zapped_leaves;
      charge(cfg_.costs.zap_per_leaf);
      flush = true;
    }
    a = lk.base.value() + span;
  }
  return flush;
}

void Vm::flush_remote_tlbs() {
  // The unsafe policy skips the flush after a zap: stale translations survive (ISO-5 catches it).
  if (!cfg_.flush_tlb_after_zap) {
    ++stats_.tlb_flushes_skipped;
    return;
  }
  for (auto& v : vcpus_) v->flush_tlb();
  ++stats_.tlb_flushes;
  charge(cfg_.costs.tlb_flush);
}

// ---------------------------------------------------------------------------------------------
// The fault path (§7)

FaultOutcome Vm::memory_fault_exit(const PageFault& f, Errno err, std::string why) const {
  // §8: gpa page aligned (shared bit stripped), size 4 KiB, PRIVATE flag = the access.
  FaultOutcome o;
  o.kind = FaultOutcome::kMemoryFaultExit;
  o.err = err;
  o.mf_flags = f.is_private ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0;
  o.mf_gpa = gfn_to_gpa(f.gfn).value();
  o.mf_size = kPageBytes;
  o.why = std::move(why);
  return o;
}

PageSize Vm::max_mapping_level(const Memslot& slot, Gfn gfn, bool is_private) const {
  // Host side: private or gmem-backed memory is capped by the backend's gmem_max_mapping_level
  // here and by the folio's order in faultin (mainline guest_memfd is order-0, §5: "private or
  // gmem-backed mappings are 4 KiB"; platform.kvm.gmem_huge_folios gives 2 MiB folios); the
  // shared side follows the host page size (host_pfn_mapping_level).
  PageSize host = PageSize::k4K;
  if (is_private || slot.gmem_only) {
    host = backend_->gmem_max_mapping_level(*this, gfn);  // capped below by the folio's order
  } else if (auto ps = env_.mm.mapping_page_size(slot.hva_of(gfn))) {
    host = *ps;
  }
  for (PageSize l : {PageSize::k1G, PageSize::k2M}) {
    if (l > host) continue;
    const uint64_t n = frames_of(l);
    const Gfn head = gfn.align_down(l);
    if (head < slot.base_gfn || slot.end_gfn() < head + n) continue;  // not inside the slot
    // lpage_info: the slot's gfn and hva must be congruent modulo the huge page.
    if (((slot.base_gfn.value() ^ (slot.userspace_addr.value() >> kPageShift)) & (n - 1)) &&
        !slot.gmem_only && !is_private)
      continue;
    if (slot.lpage && slot.lpage->is_mixed(l, gfn)) continue;
    return l;
  }
  return PageSize::k4K;
}

std::optional<FaultOutcome> Vm::faultin(FaultContext& ctx) {
  const PageFault& f = ctx.fault;
  charge(cfg_.costs.fault_base);
  // 1. Snapshot the invalidation sequence before resolving the pfn.
  ctx.mmu_seq = inv_seq_;
  // 2. Mismatch between the access and the attribute.
  if (f.is_private != mem_is_private(f.gfn))
    return memory_fault_exit(
        f, Errno::kEFAULT,
        f.is_private ? "private access to a shared gfn" : "shared access to a private gfn");
  // 3. No memslot: private accesses can never become emulated MMIO.
  Memslot* slot = slots_[0].find_gfn(f.gfn);
  if (!slot) {
    if (f.is_private)
      return memory_fault_exit(f, Errno::kEFAULT, "private access outside every memslot");
    FaultOutcome o;
    o.kind = FaultOutcome::kEmulate;
    o.why = "no memslot";
    return o;
  }
  ctx.slot = slot;
  // 5. An invalidation already covering the gfn: retry.
  if (inv_in_progress_ && (!inv_range_valid_ || (inv_start_ <= f.gfn && f.gfn < inv_end_))) {
    FaultOutcome o;
    o.kind = FaultOutcome::kRetry;
    o.why = "invalidation in progress";
    return o;
  }
  // 6. Resolve the frame.
  ctx.writable = !(slot->flags & KVM_MEM_READONLY);
  ctx.level = max_mapping_level(*slot, f.gfn, f.is_private);
  if (ctx.level > f.max_level) ctx.level = f.max_level;
  if (f.is_private || slot->gmem_only) {
    if (!slot->has_gmem())
      return memory_fault_exit(f, Errno::kEFAULT, "private access to a slot without guest_memfd");
    if (!slot->gmem.file)
      return memory_fault_exit(f, Errno::kEFAULT, "guest_memfd closed (dead slot)");
    charge(cfg_.costs.gup_per_page);
    auto r = slot->gmem.file->get_pfn(slot->id, f.gfn, slot->base_gfn, slot->gmem.pgoff);
    if (!r.ok()) {
      const Errno e = r.error().is_errno() ? r.error().errno_value() : Errno::kEFAULT;
      return memory_fault_exit(f, e, std::string("guest_memfd: ") + std::string(errno_name(e)));
    }
    if (r->bytes_zeroed) {
      stats_.bytes_zeroed += r->bytes_zeroed;
      charge(cycles_for_bytes(r->bytes_zeroed, cfg_.costs.zero_bytes_per_cycle));
    }
    // The folio's order caps the level (kvm_max_level_for_order; mainline: order 0, 4K).
    const PageSize order_level = r->max_order >= 9 ? PageSize::k2M : PageSize::k4K;
    if (ctx.level > order_level) ctx.level = order_level;
    ctx.pfn = ctx.level == PageSize::k4K ? r->pfn : r->pfn - (f.gfn - f.gfn.align_down(ctx.level));
  } else {
    // A write to a READONLY slot: the HVA lookup fails (KVM_PFN_ERR_RO_FAULT) and the access is
    // emulated, i.e. exits as MMIO. §4: "read-only slots give emulated-MMIO semantics". Only the
    // shared side can get here: READONLY is refused together with GUEST_MEMFD (§4 flags).
    if (f.write && (slot->flags & KVM_MEM_READONLY)) {
      FaultOutcome o;
      o.kind = FaultOutcome::kEmulate;
      o.why = "write to a read-only memslot";
      return o;
    }
    charge(cfg_.costs.gup_per_page);
    const Hva hva = slot->hva_of(f.gfn);
    const uint64_t before = env_.mm.resident_bytes();
    auto page = env_.mm.get_user_page(hva);
    if (!page.ok())
      return memory_fault_exit(f, Errno::kEFAULT,
                               "no host mapping at the slot's userspace address");
    if (env_.mm.resident_bytes() > before) {
      stats_.bytes_zeroed += env_.mm.resident_bytes() - before;
      charge(cycles_for_bytes(env_.mm.resident_bytes() - before, cfg_.costs.zero_bytes_per_cycle));
    }
    if (ctx.level > page->size) ctx.level = page->size;
    const Hva head = Hva(hva.value() & ~(bytes_of(ctx.level) - 1));
    ctx.pfn = page->pfn_for(head);
  }
  ctx.resolved = true;
  return std::nullopt;
}

Status Vm::map_leaf(Gfn gfn, Pfn pfn, PageSize& level, bool is_private, bool writable) {
  const Perms perms = writable ? kPermsRWX : kPermsRX;
  if (is_private && backend_->has_private_root()) {
    auto r = backend_->set_external_spte(*this, gfn.align_down(level), pfn, level, perms);
    while (!r.ok() && r.error() == Errno::kEEXIST && level != PageSize::k4K) {
      // Smaller private leaves are there already: fall back one level (as for shared below).
      ++stats_.huge_fallbacks;
      const PageSize smaller = static_cast<PageSize>(static_cast<unsigned>(level) - 1);
      pfn = pfn + (gfn.align_down(smaller) - gfn.align_down(level));
      level = smaller;
      r = backend_->set_external_spte(*this, gfn.align_down(level), pfn, level, perms);
    }
    if (!r.ok()) return r.error();
    mark_dirty(GfnRange{gfn.align_down(level), gfn.align_down(level) + frames_of(level)});
    cov_forget();
    charge(*r);
    return {};
  }
  const uint64_t direct = gfn_to_gpa(Gfn(backend_->gfn_direct_bits(*this))).value();
  for (;;) {
    const Gpa gpa = gfn_to_gpa(gfn.align_down(level));
    const Gpa mapped_at = Gpa(gpa.value() | direct);  // kvm_gfn_direct_bits (§7)
    const uint64_t tables_freed = stage2_->stats().table_frames_freed;
    Status st = stage2_->map(mapped_at, pfn, level, perms);
    if (st.ok() && stage2_->stats().table_frames_freed != tables_freed) {
      // A huge leaf replaced an (empty) table: page-walk caches may still name the freed table
      // frame, so every vCPU must flush before the new leaf is used (as KVM flushes when it
      // installs a huge SPTE over a zapped child table).
      flush_remote_tlbs();
    }
    if (st.ok()) {
      mark_dirty(GfnRange{gpa_to_gfn(gpa), gpa_to_gfn(gpa) + frames_of(level)});
      cov_note(GfnRange{gpa_to_gfn(gpa), gpa_to_gfn(gpa) + frames_of(level)}, kGfnMapped, true);
      charge(cfg_.costs.map_per_leaf);
      return {};
    }
    if (!(st.error() == Errno::kEEXIST)) return st;
    // Something is there already: a spurious fault (another vCPU mapped it), or smaller
    // leaves under a huge slot that may now be mapped huge; fall back one level.
    const Stage2Lookup lk = stage2_->lookup(Gpa(gfn_to_gpa(gfn).value() | direct));
    if (lk.mapped()) {
      // Already mapped: report the leaf that really maps gfn, not the level attempted, so that
      // KVM_PRE_FAULT_MEMORY counts only bytes that are mapped (§9: "the bytes mapped: up to the
      // end of the huge page that covers gpa").
      level = lk.size();
      return {};
    }
    if (level == PageSize::k4K) return st;
    ++stats_.huge_fallbacks;
    const PageSize smaller = static_cast<PageSize>(static_cast<unsigned>(level) - 1);
    pfn = pfn + ((gfn.align_down(smaller) - gfn.align_down(level)));
    level = smaller;
  }
}

FaultOutcome Vm::install(FaultContext& ctx) {
  const PageFault& f = ctx.fault;
  // 7. Under mmu_lock: a stale fault retries instead of installing a stale mapping.
  if (mmu_invalidate_retry_gfn(ctx.mmu_seq, f.gfn)) {
    ++stats_.faults_retried;
    FaultOutcome o;
    o.kind = FaultOutcome::kRetry;
    o.why = "mmu_invalidate_seq changed";
    return o;
  }
  PageSize level = ctx.level;
  Pfn pfn = ctx.pfn;
  if (Status st = map_leaf(f.gfn, pfn, level, f.is_private, ctx.writable); !st.ok()) {
    return memory_fault_exit(f, Errno::kEFAULT, "stage-2 map failed: " + st.error().to_string());
  }
  // Provenance (hw/memory/frame_history.h): only frames already holding a VM's data are logged.
  // The faulting frame only (a huge leaf's other frames are logged when they fault or leak).
  env_.mem.note(pfn + (f.gfn - f.gfn.align_down(ctx.level)), FrameEventKind::kMap, principal(),
                kNobody, f.gfn.value());
  switch (level) {
    case PageSize::k4K:
      ++stats_.maps_4k;
      break;
    case PageSize::k2M:
      ++stats_.maps_2m;
      break;
    case PageSize::k1G:
      ++stats_.maps_1g;
      break;
  }
  ++stats_.faults_fixed;
  FaultOutcome o;
  o.kind = FaultOutcome::kFixed;
  o.level = level;
  return o;
}

FaultOutcome Vm::page_fault(const PageFault& f) {
  ++stats_.faults;
  if (kvm_.tracing()) {
    FaultOutcome o = page_fault_untraced(f);
    static const char* kKinds[] = {"fixed", "retry", "memory_fault_exit", "emulate"};
    char d[200];
    std::snprintf(d, sizeof d, "gfn 0x%" PRIx64 " %s %s -> %s%s%s", f.gfn.value(),
                  f.is_private ? "private" : "shared", f.write ? "write" : "read", kKinds[o.kind],
                  o.why.empty() ? "" : ": ", o.why.c_str());
    kvm_.trace(trace_name_, "fault", d);
    return o;
  }
  return page_fault_untraced(f);
}

FaultOutcome Vm::page_fault_untraced(const PageFault& f) {
  if (f.is_private)
    ++stats_.private_faults;
  else
    ++stats_.shared_faults;
  FaultContext ctx;
  ctx.fault = f;
  const uint8_t from = gfn_cov_state(f.gfn);
  auto record = [&](const FaultOutcome& o) {
    static_assert(FaultOutcome::kFixed == 0 && FaultOutcome::kRetry == 1 &&
                  FaultOutcome::kMemoryFaultExit == 2 &&
                  FaultOutcome::kEmulate ==
                      3);  // = GfnOutcome kOk, kRetry, kMemoryFaultExit, kEmulate
    cov_counts().record(
        from, static_cast<uint8_t>(f.is_private ? GfnOp::kFaultPrivate : GfnOp::kFaultShared),
        o.kind, gfn_cov_state(f.gfn));
  };
  if (auto early = faultin(ctx)) {
    if (early->kind == FaultOutcome::kMemoryFaultExit) ++stats_.memory_fault_exits;
    if (early->kind == FaultOutcome::kEmulate) ++stats_.mmio_exits;
    if (early->kind == FaultOutcome::kRetry) ++stats_.faults_retried;
    record(*early);
    return *early;
  }
  FaultOutcome o = install(ctx);
  if (o.kind == FaultOutcome::kMemoryFaultExit) ++stats_.memory_fault_exits;
  record(o);
  return o;
}

// ---------------------------------------------------------------------------------------------
// Transition coverage (kvm_machines.h, docs/coverage.md)

uint8_t Vm::gfn_cov_state_walk(Gfn gfn) const {
  uint8_t s = mem_is_private(gfn) ? kGfnPrivate : 0;
  if (const Memslot* slot = slots_[0].find_gfn(gfn); slot && slot->has_gmem() && slot->gmem.file)
    s |= kGfnBound;
  const uint64_t direct = gfn_to_gpa(Gfn(backend_->gfn_direct_bits(*this))).value();
  if (backend_->has_private_root()) {
    // Two roots: MAPPED is the mapping on the side the attribute names (the private leaf for a
    // private GFN, the shared EPT at gfn|direct bits for a shared one). KVM never leaves the
    // other side mapped (§5: the attribute change zaps it); a mapping there is one KVM does not
    // know (a hostile_map, ISO-3) and not a state of KVM's machine.
    const bool mapped = (s & kGfnPrivate)
                            ? backend_->has_private_leaf(*this, gfn)
                            : stage2_->lookup(Gpa(gfn_to_gpa(gfn).value() | direct)).mapped();
    if (mapped) s |= kGfnMapped;
    return s;  // the private root changes outside KVM's view: not memoised
  }
  if (stage2_->lookup(Gpa(gfn_to_gpa(gfn).value() | direct)).mapped()) s |= kGfnMapped;
  cov_memo_.gfn = gfn;
  cov_memo_.gen = cov_gen_;
  cov_memo_.state = s;
  return s;
}

void Vm::cov_begin(CovSample& s, GfnRange r) const {
  s.n = 0;
  const uint64_t pages = r.pages();
  if (pages == 0) return;
  if (pages == 1) {  // the common case (a 4 KiB conversion, a one-page punch-hole)
    s.gfn[0] = r.start;
    s.from[0] = gfn_cov_state(r.start);
    s.n = 1;
    return;
  }
  const uint64_t step =
      pages <= CovSample::kMax ? 1 : (pages + CovSample::kMax - 1) / CovSample::kMax;
  for (uint64_t i = 0; i < pages && s.n < CovSample::kMax; i += step) {
    s.gfn[s.n] = r.start + i;
    s.from[s.n] = gfn_cov_state(s.gfn[s.n]);
    ++s.n;
  }
}

sm::Counts& Vm::cov_counts() const {
  if (!cov_counts_) cov_counts_ = &kvm_.coverage().of(gfn_machine(backend_->has_private_root()));
  return *cov_counts_;
}

void Vm::cov_end(const CovSample& s, uint8_t op, uint8_t outcome) const {
  sm::Counts& m = cov_counts();
  if (s.n == 1) {
    m.record(s.from[0], op, outcome, gfn_cov_state(s.gfn[0]));
    return;
  }
  for (unsigned i = 0; i < s.n; ++i) m.record(s.from[i], op, outcome, gfn_cov_state(s.gfn[i]));
}

// ---------------------------------------------------------------------------------------------
// vCPUs

Result<Vcpu*> Vm::create_vcpu(uint32_t id) {
  if (id >= kMaxVcpuIds) return Errno::kEINVAL;
  for (auto& v : vcpus_)
    if (v->id() == id) return Errno::kEEXIST;
  auto v = std::make_unique<Vcpu>(*this, id);
  if (Status st = backend_->vcpu_create(*this, *v); !st.ok()) return st.error();
  vcpus_.push_back(std::move(v));
  ++users_;  // the vCPU fd pins the VM
  return vcpus_.back().get();
}

Vcpu* Vm::vcpu(uint32_t id) const {
  for (auto& v : vcpus_)
    if (v->id() == id) return v.get();
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// GmemVm

bool Vm::mmu_unmap_gfn_range(SlotId, GfnRange gfns, AttrFilter filter) {
  mmu_invalidate_range_add(gfns);
  CovSample cov;
  cov_begin(cov, gfns);
  const bool flush = unmap_gfn_range(gfns, filter);
  cov_end(cov, static_cast<uint8_t>(GfnOp::kGmemInvalidate), static_cast<uint8_t>(GfnOutcome::kOk));
  return flush;
}

void Vm::gmem_slot_unbound(SlotId id) {
  if (Memslot* s = slots_[id.as_id].find_id(id.id)) s->gmem.file = nullptr;
  cov_forget();
}

Status Vm::arch_gmem_prepare(Gfn gfn, Pfn pfn, int order) {
  ++stats_.gmem_prepares;
  return backend_->gmem_prepare(*this, gfn, pfn, order);
}

void Vm::arch_gmem_invalidate(Pfn start, Pfn end) {
  ++stats_.gmem_invalidates;
  backend_->gmem_invalidate(*this, start, end);
}

// ---------------------------------------------------------------------------------------------
// MMU notifier: the VMM's shared backing is changing (munmap, MADV_DONTNEED).

void Vm::invalidate_range_start(Hva start, Hva end) {
  bool begun = false, flush = false;
  for (auto& set : slots_) {
    set.for_each([&](Memslot& s) {
      const Hva ss = s.userspace_addr, se = s.userspace_addr + (s.npages << kPageShift);
      if (!(ss < end && start < se)) return;
      const Hva a = std::max(start, ss), b = std::min(end, se);
      const GfnRange g{s.base_gfn + ((a - ss) >> kPageShift),
                       s.base_gfn + ((b - ss + kPageBytes - 1) >> kPageShift)};
      if (!begun) {
        mmu_invalidate_begin();
        begun = true;
        ++stats_.notifier_invalidations;
      }
      mmu_invalidate_range_add(g);
      CovSample cov;
      cov_begin(cov, g);
      flush |= unmap_gfn_range(g, AttrFilter::kShared);
      cov_end(cov, static_cast<uint8_t>(GfnOp::kMmuNotifierZap),
              static_cast<uint8_t>(GfnOutcome::kOk));
    });
  }
  if (flush) flush_remote_tlbs();
}

void Vm::invalidate_range_end(Hva start, Hva end) {
  bool any = false;
  for (auto& set : slots_)
    set.for_each([&](Memslot& s) {
      const Hva ss = s.userspace_addr, se = s.userspace_addr + (s.npages << kPageShift);
      if (ss < end && start < se) any = true;
    });
  if (any) mmu_invalidate_end();
}

void Vm::describe_stats(StatVisitor& v) const {
  v.counter("faults", stats_.faults, "faults", "stage-2 faults handled by the KVM MMU");
  v.counter("faults_private", stats_.private_faults, "faults", "faults of private accesses");
  v.counter("faults_shared", stats_.shared_faults, "faults", "faults of shared accesses");
  v.counter("faults_fixed", stats_.faults_fixed, "faults",
            "faults that installed a mapping (RET_PF_FIXED)");
  v.counter("faults_retried", stats_.faults_retried, "faults",
            "faults that retried because an invalidation raced with them (RET_PF_RETRY)");
  v.counter("memory_fault_exits", stats_.memory_fault_exits, "exits",
            "faults that exited with KVM_EXIT_MEMORY_FAULT");
  v.counter("mmio_exits", stats_.mmio_exits, "exits",
            "shared faults outside every memslot (emulated MMIO)");
  v.counter("maps_4k", stats_.maps_4k, "mappings", "4 KiB stage-2 leaves installed by faults");
  v.counter("maps_2m", stats_.maps_2m, "mappings", "2 MiB stage-2 leaves installed by faults");
  v.counter("maps_1g", stats_.maps_1g, "mappings", "1 GiB stage-2 leaves installed by faults");
  v.counter("huge_fallbacks", stats_.huge_fallbacks, "count",
            "huge mappings that fell back one level because smaller leaves were present");
  v.counter("zapped_leaves", stats_.zapped_leaves, "leaves",
            "stage-2 leaves removed by invalidations");
  v.counter("tlb_flushes", stats_.tlb_flushes, "flushes", "kvm_flush_remote_tlbs calls");
  v.counter("tlb_flushes_skipped", stats_.tlb_flushes_skipped, "flushes",
            "TLB flushes skipped by the unsafe platform.kvm.flush_tlb_after_zap = false policy");
  v.counter("invalidations", stats_.invalidations, "count", "mmu_invalidate_begin calls");
  v.counter("notifier_invalidations", stats_.notifier_invalidations, "count",
            "host MMU-notifier invalidations that hit a memslot");
  v.counter("mmu_invalidate_seq", inv_seq_, "count", "final value of mmu_invalidate_seq");
  v.counter("attr_sets", stats_.attr_sets, "calls", "valid KVM_SET_MEMORY_ATTRIBUTES calls");
  v.counter("attr_sets_noop", stats_.attr_sets_noop, "calls",
            "of which changed nothing (early exit, no invalidation)");
  v.counter("attr_pages_changed", stats_.attr_pages_changed, "pages",
            "pages covered by attribute updates that did change something");
  v.counter("slots_created", stats_.slots_created, "slots", "memslots created");
  v.counter("slots_deleted", stats_.slots_deleted, "slots", "memslots deleted");
  v.counter("slots_moved", stats_.slots_moved, "slots", "memslots moved to another gfn");
  v.counter("gmem_prepares", stats_.gmem_prepares, "calls", "kvm_arch_gmem_prepare calls");
  v.counter("gmem_invalidates", stats_.gmem_invalidates, "calls", "kvm_arch_gmem_invalidate calls");
  v.counter("bytes_zeroed", stats_.bytes_zeroed, "bytes",
            "bytes zeroed to hand fresh frames to the guest");
  PrefixedStats attrs(v, "attributes");
  attrs_->describe_stats(attrs);
  PrefixedStats s2(v, "stage2");
  stage2_->describe_stats(s2);
}

}  // namespace cvmsim::kvm
