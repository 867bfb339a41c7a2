// A KVM memslot (struct kvm_memory_slot) and the per-address-space set of them
// (kvm-guest-memfd.md §4). A slot maps [base_gfn, base_gfn + npages) to host memory: its shared
// side at userspace_addr (an Hva in the VMM), its private side (or every side, for a gmem-only
// slot) in a guest_memfd file at pgoff. The slot does not pin the file (§4 bind, §6.2): `gmem.file`
// is cleared by guest_memfd when the file is released, leaving a dead slot.
#pragma once

#include <cstdint>
#include <map>
#include <memory>

#include "hw/base/addr.h"
#include "models/kvm/kvm_types.h"
#include "models/kvm/lpage_tracker.h"

namespace cvmsim::kvm {

class GmemFile;

struct Memslot {
  SlotId id;
  Gfn base_gfn;
  uint64_t npages = 0;
  uint32_t flags = 0;  // KVM_MEM_*
  Hva userspace_addr;
  struct {
    GmemFile* file = nullptr;  // not owned; null once the file is released (dead slot)
    GmemPgoff pgoff;
    bool bound = false;  // the slot was created with a guest_memfd (KVM_MEM_GUEST_MEMFD)
  } gmem;
  bool gmem_only = false;  // KVM_MEMSLOT_GMEM_ONLY: every fault served from guest_memfd (§4)
  std::unique_ptr<LpageTracker> lpage;  // VMs with private memory only (§5)

  GfnRange gfns() const { return {base_gfn, base_gfn + npages}; }
  Gfn end_gfn() const { return base_gfn + npages; }
  bool has_gmem() const { return gmem.bound; }
  // The guest_memfd index of gfn (§6.3).
  GmemPgoff gmem_index(Gfn gfn) const { return gmem.pgoff + (gfn - base_gfn); }
  Hva hva_of(Gfn gfn) const { return userspace_addr + ((gfn - base_gfn) << kPageShift); }
};

// The slots of one address space, indexed by id and by base gfn.
class MemslotSet {
 public:
  Memslot* find_id(uint16_t id) const;
  // The slot containing gfn, or null.
  Memslot* find_gfn(Gfn gfn) const;
  // Any slot (other than `except`) intersecting r, or null.
  Memslot* find_overlap(GfnRange r, const Memslot* except = nullptr) const;
  // f(Memslot&) for every slot intersecting r, ascending.
  template <class F>
  void for_each_in(GfnRange r, F&& f) const {
    auto it = by_gfn_.upper_bound(r.start.value());
    if (it != by_gfn_.begin()) --it;
    for (; it != by_gfn_.end() && Gfn(it->first) < r.end; ++it)
      if (r.start < it->second->end_gfn()) f(*it->second);
  }
  template <class F>
  void for_each(F&& f) const {
    for (auto& [g, s] : by_gfn_) f(*s);
  }

  Memslot& insert(std::unique_ptr<Memslot> s);
  std::unique_ptr<Memslot> remove(uint16_t id);
  // Changes a slot's base gfn (KVM_MR_MOVE).
  void move(Memslot& s, Gfn new_base);
  size_t size() const { return by_id_.size(); }

 private:
  std::map<uint16_t, std::unique_ptr<Memslot>> by_id_;
  std::map<uint64_t, Memslot*> by_gfn_;
};

}  // namespace cvmsim::kvm
