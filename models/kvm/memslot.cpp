#include "models/kvm/memslot.h"

namespace cvmsim::kvm {

Memslot* MemslotSet::find_id(uint16_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second.get();
}

Memslot* MemslotSet::find_gfn(Gfn gfn) const {
  auto it = by_gfn_.upper_bound(gfn.value());
  if (it == by_gfn_.begin()) return nullptr;
  --it;
  return gfn < it->second->end_gfn() ? it->second : nullptr;
}

Memslot* MemslotSet::find_overlap(GfnRange r, const Memslot* except) const {
  Memslot* found = nullptr;
  for_each_in(r, [&](Memslot& s) {
    if (!found && &s != except) found = &s;
  });
  return found;
}

Memslot& MemslotSet::insert(std::unique_ptr<Memslot> s) {
  Memslot& ref = *s;
  by_gfn_[s->base_gfn.value()] = s.get();
  by_id_[s->id.id] = std::move(s);
  return ref;
}

std::unique_ptr<Memslot> MemslotSet::remove(uint16_t id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return nullptr;
  std::unique_ptr<Memslot> s = std::move(it->second);
  by_id_.erase(it);
  by_gfn_.erase(s->base_gfn.value());
  return s;
}

void MemslotSet::move(Memslot& s, Gfn new_base) {
  by_gfn_.erase(s.base_gfn.value());
  s.base_gfn = new_base;
  by_gfn_[new_base.value()] = &s;
}

}  // namespace cvmsim::kvm
