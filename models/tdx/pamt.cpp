#include "models/tdx/pamt.h"

#include <algorithm>

namespace cvmsim::tdx {

std::string_view name_of(PageType t) {
  switch (t) {
    case PageType::kNda:
      return "PT_NDA";
    case PageType::kRsvd:
      return "PT_RSVD";
    case PageType::kReg:
      return "PT_REG";
    case PageType::kTdr:
      return "PT_TDR";
    case PageType::kTdcx:
      return "PT_TDCX";
    case PageType::kTdvpr:
      return "PT_TDVPR";
    case PageType::kEpt:
      return "PT_EPT";
  }
  return "PT_?";
}

Pamt::Pamt(std::vector<Tdmr> tdmrs) : tdmrs_(std::move(tdmrs)) {
  for (const Tdmr& t : tdmrs_) {
    for (const HpaRange& r : t.reserved) reserved_frames_ += r.size >> kPageShift;
  }
}

bool Pamt::covers(Pfn f) const {
  const Hpa a = pfn_to_hpa(f);
  return std::any_of(tdmrs_.begin(), tdmrs_.end(), [&](const Tdmr& t) {
    return a >= t.base && a.value() - t.base.value() < t.size;
  });
}

bool Pamt::covers_range(Pfn base, PageSize size) const {
  // TDMRs are disjoint; a page must lie inside one.
  const Hpa a = pfn_to_hpa(base);
  const uint64_t n = bytes_of(size);
  return std::any_of(tdmrs_.begin(), tdmrs_.end(), [&](const Tdmr& t) {
    return a >= t.base && n <= t.size && a.value() - t.base.value() <= t.size - n;
  });
}

bool Pamt::is_reserved(Pfn f) const {
  const Hpa a = pfn_to_hpa(f);
  for (const Tdmr& t : tdmrs_) {
    for (const HpaRange& r : t.reserved) {
      if (r.contains(a)) return true;
    }
  }
  return false;
}

PamtEntry Pamt::entry(Pfn base, PageSize level) const {
  auto it = entries_.find(key(base, level));
  if (it != entries_.end()) return it->second;
  PamtEntry e;
  if (level == PageSize::k4K && is_reserved(base)) e.pt = static_cast<uint8_t>(PageType::kRsvd);
  return e;
}

PamtLeaf Pamt::leaf(Pfn f) const {
  for (PageSize s : {PageSize::k1G, PageSize::k2M}) {
    const Pfn b = f.align_down(s);
    auto it = entries_.find(key(b, s));
    if (it != entries_.end() && it->second.type() != PageType::kNda) {
      return PamtLeaf{it->second, s, b};
    }
  }
  return PamtLeaf{entry(f, PageSize::k4K), PageSize::k4K, f};
}

PamtEntry& Pamt::slot(Pfn base, PageSize level) {
  auto [it, inserted] = entries_.try_emplace(key(base, level));
  if (inserted && level == PageSize::k4K && is_reserved(base)) {
    it->second.pt = static_cast<uint8_t>(PageType::kRsvd);
  }
  return it->second;
}

void Pamt::maybe_erase(Pfn base, PageSize level) {
  auto it = entries_.find(key(base, level));
  if (it == entries_.end()) return;
  const PamtEntry& e = it->second;
  const bool default_type =
      e.type() == PageType::kNda || (e.type() == PageType::kRsvd && level == PageSize::k4K);
  if (default_type && e.lock.free()) entries_.erase(it);
}

bool Pamt::lock(Pfn base, PageSize level, LockMode mode, std::vector<LockRef>& held) {
  PamtEntry& e = slot(base, level);
  if (!e.lock.try_acquire(mode)) {
    maybe_erase(base, level);
    return false;
  }
  held.push_back(LockRef{base, level, mode});
  return true;
}

void Pamt::unlock(const LockRef& r) {
  auto it = entries_.find(key(r.base, r.level));
  if (it == entries_.end()) return;
  it->second.lock.release(r.mode);
  maybe_erase(r.base, r.level);
}

bool Pamt::locked(Pfn base, PageSize level) const {
  auto it = entries_.find(key(base, level));
  return it != entries_.end() && !it->second.lock.free();
}

bool Pamt::walk_and_lock(Pfn f, PageSize target, LockMode mode, std::vector<LockRef>& held,
                         PageSize* reached) {
  const size_t mark = held.size();
  auto fail = [&] {
    while (held.size() > mark) {
      unlock(held.back());
      held.pop_back();
    }
    return false;
  };
  for (PageSize s : {PageSize::k1G, PageSize::k2M, PageSize::k4K}) {
    const Pfn b = f.align_down(s);
    const bool assigned = entry(b, s).type() != PageType::kNda && s != PageSize::k4K;
    if (s == target || assigned || s == PageSize::k4K) {
      if (!lock(b, s, mode, held)) return fail();
      if (reached) *reached = s;
      return true;
    }
    if (!lock(b, s, LockMode::kShared, held)) return fail();
  }
  return true;
}

void Pamt::count(PageType t, PageSize level, int64_t sign) {
  pages_[static_cast<uint8_t>(t) & 15] += static_cast<uint64_t>(sign) * frames_of(level);
}

void Pamt::assign(Pfn base, PageSize level, PageType pt, Pfn owner) {
  journal(base, level);
  PamtEntry& e = slot(base, level);
  const PageType old = e.type();
  if (old != PageType::kNda && old != PageType::kRsvd) count(old, level, -1);
  const bool was_free = old == PageType::kNda;
  e.pt = static_cast<uint8_t>(pt);
  e.set_owner(owner);
  e.bepoch = 0;
  count(pt, level, +1);
  if (was_free) {
    if (level == PageSize::k4K) ++assigned_in_2m_[base.value() >> 9];
    if (level != PageSize::k1G) ++assigned_in_1g_[base.value() >> 18];
  }
}

void Pamt::make_nda(Pfn base, PageSize level) {
  journal(base, level);
  auto it = entries_.find(key(base, level));
  if (it == entries_.end()) return;
  PamtEntry& e = it->second;
  const PageType old = e.type();
  if (old == PageType::kNda || old == PageType::kRsvd) return;
  count(old, level, -1);
  e.pt = static_cast<uint8_t>(PageType::kNda);
  e.set_owner(Pfn(0));
  if (level == PageSize::k4K) {
    auto c = assigned_in_2m_.find(base.value() >> 9);
    if (c != assigned_in_2m_.end() && --c->second == 0) assigned_in_2m_.erase(c);
  }
  if (level != PageSize::k1G) {
    auto c = assigned_in_1g_.find(base.value() >> 18);
    if (c != assigned_in_1g_.end() && --c->second == 0) assigned_in_1g_.erase(c);
  }
  maybe_erase(base, level);
}

void Pamt::set_bepoch(Pfn base, PageSize level, uint64_t bepoch) {
  auto it = entries_.find(key(base, level));
  if (it != entries_.end()) it->second.bepoch = bepoch;
}

uint32_t Pamt::assigned_4k_in_2m(Pfn base) const {
  auto it = assigned_in_2m_.find(base.value() >> 9);
  return it == assigned_in_2m_.end() ? 0 : it->second;
}

bool Pamt::range_2m_free(Pfn base) const {
  if (entry(base, PageSize::k2M).type() != PageType::kNda) return false;
  if (entry(base.align_down(PageSize::k1G), PageSize::k1G).type() != PageType::kNda) return false;
  if (assigned_4k_in_2m(base) != 0) return false;
  const Hpa lo = pfn_to_hpa(base);
  const uint64_t n = bytes_of(PageSize::k2M);
  for (const Tdmr& t : tdmrs_) {
    for (const HpaRange& r : t.reserved) {
      if (r.base.value() < lo.value() + n && lo.value() < r.base.value() + r.size) return false;
    }
  }
  return true;
}

uint64_t Pamt::pages(PageType t) const {
  if (t == PageType::kRsvd) return reserved_frames_;
  if (t == PageType::kNda) {
    uint64_t total = 0;
    for (const Tdmr& tm : tdmrs_) total += tm.size >> kPageShift;
    uint64_t used = reserved_frames_;
    for (PageType u : kAllPageTypes) {
      if (u != PageType::kNda && u != PageType::kRsvd) used += pages_[static_cast<uint8_t>(u)];
    }
    return total >= used ? total - used : 0;
  }
  return pages_[static_cast<uint8_t>(t) & 15];
}

uint64_t Pamt::host_bytes() const {
  // Node-based hash maps: key, value, next pointer and bucket slot per element, roughly.
  return entries_.size() * (sizeof(uint64_t) + sizeof(PamtEntry) + 2 * sizeof(void*)) +
         (assigned_in_2m_.size() + assigned_in_1g_.size()) * (16 + 2 * sizeof(void*));
}

uint64_t Pamt::modelled_bytes() const {
  uint64_t b = 0;
  for (const Tdmr& t : tdmrs_) {
    const uint64_t n4k = t.size >> kPageShift;
    b += sizeof(PamtEntry) * (n4k + (n4k + 511) / 512 + (n4k + 512 * 512 - 1) / (512 * 512));
  }
  return b;
}

}  // namespace cvmsim::tdx
