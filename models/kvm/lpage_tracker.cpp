#include "models/kvm/lpage_tracker.h"

#include <algorithm>
#include <cassert>

namespace cvmsim::kvm {

namespace {
constexpr PageSize kHugeLevels[] = {PageSize::k2M, PageSize::k1G};
constexpr uint64_t kSetNodeBytes = 40;  // red-black node (32 B) + key
constexpr unsigned hp_shift(PageSize level) {
  return kBitsPerLevel * level_of(level);
}
}  // namespace

LpageTracker::LpageTracker(Gfn base_gfn, uint64_t npages) : base_(base_gfn), npages_(npages) {}

void LpageTracker::init(const MemAttributeStore& attrs) {
  for (auto& s : mixed_) s.clear();
  // A huge page is mixed iff a run of equal attributes starts strictly inside it.
  uint64_t last_marked[2] = {~uint64_t{0}, ~uint64_t{0}};
  attrs.for_each_run(slot(), [&](GfnRange run, uint64_t) {
    const uint64_t b = run.start.value();
    if (b == base_.value()) return;
    for (PageSize level : kHugeLevels) {
      const uint64_t n = frames_of(level);
      if ((b & (n - 1)) == 0) continue;  // the boundary is a huge-page edge
      const uint64_t hp = b >> hp_shift(level);
      auto& last = last_marked[idx_of(level)];
      if (hp == last || !contained_at(b & ~(n - 1), n)) continue;
      mixed_[idx_of(level)].insert(mixed_[idx_of(level)].end(), hp);
      last = hp;
    }
  });
}

// hugepage_has_attrs(): 2M asks the attribute store; 1G asks whether every 2M sub-page is not
// mixed and starts with the wanted attributes (kvm-guest-memfd.md §5). Linux passes mask ~0 and
// ANDs it with the supported attributes; every stored attribute is supported, so ~0 is the same.
bool LpageTracker::hugepage_has_attrs(const MemAttributeStore& attrs, uint64_t gfn, PageSize level,
                                      uint64_t want) const {
  const uint64_t n = frames_of(level);
  if (level == PageSize::k2M) {
    return attrs.range_has(GfnRange{Gfn(gfn), Gfn(gfn + n)}, ~uint64_t{0}, want);
  }
  const uint64_t sub = frames_of(PageSize::k2M);
  for (uint64_t g = gfn; g < gfn + n; g += sub) {
    if (is_mixed(PageSize::k2M, Gfn(g)) || attrs.get(Gfn(g)) != want) return false;
  }
  return true;
}

void LpageTracker::set_mixed(PageSize level, uint64_t gfn, bool mixed) {
  auto& s = mixed_[idx_of(level)];
  const uint64_t hp = gfn >> hp_shift(level);
  if (mixed) {
    s.insert(hp);
  } else {
    s.erase(hp);
  }
}

void LpageTracker::post_set(const MemAttributeStore& attrs, GfnRange r, uint64_t new_attrs) {
  const uint64_t slot_end = base_.value() + npages_;
  const uint64_t start = std::max(r.start.value(), base_.value());
  const uint64_t end = std::min(r.end.value(), slot_end);
  if (start >= end) return;
  // Levels ascending: the 1G head/tail recomputation reads the 2M results.
  for (PageSize level : kHugeLevels) {
    const uint64_t n = frames_of(level);
    uint64_t gfn = start & ~(n - 1);
    // Head huge page, if r straddles it.
    if (gfn != start || gfn + n > end) {
      if (contained_at(gfn, n)) {
        set_mixed(level, gfn, !hugepage_has_attrs(attrs, gfn, level, new_attrs));
      }
      gfn += n;
    }
    // Huge pages entirely inside r hold only new_attrs: not mixed. One range erase, not a loop.
    if (gfn + n <= end) {
      const uint64_t inside_end = end & ~(n - 1);
      auto& s = mixed_[idx_of(level)];
      s.erase(s.lower_bound(gfn >> hp_shift(level)), s.lower_bound(inside_end >> hp_shift(level)));
      gfn = inside_end;
    }
    // Tail huge page, if r straddles it and it is inside the slot.
    if (gfn < end && gfn + n <= slot_end) {
      set_mixed(level, gfn, !hugepage_has_attrs(attrs, gfn, level, new_attrs));
    }
  }
}

bool LpageTracker::is_mixed(PageSize level, Gfn gfn) const {
  if (level == PageSize::k4K) return false;
  return mixed_[idx_of(level)].count(gfn.value() >> hp_shift(level)) != 0;
}

bool LpageTracker::contained(PageSize level, Gfn gfn) const {
  const uint64_t n = frames_of(level);
  return contained_at(gfn.value() & ~(n - 1), n);
}

PageSize LpageTracker::max_level(Gfn gfn, PageSize cap) const {
  for (unsigned l = std::min(level_of(cap), level_of(PageSize::k1G)); l > 0; --l) {
    const auto level = static_cast<PageSize>(l);
    if (contained(level, gfn) && !is_mixed(level, gfn)) return level;
  }
  return PageSize::k4K;
}

std::vector<GfnRange> LpageTracker::straddling_unmixed(GfnRange r) const {
  std::vector<GfnRange> out;
  const uint64_t start = std::max(r.start.value(), base_.value());
  const uint64_t end = std::min(r.end.value(), base_.value() + npages_);
  if (start >= end) return out;
  for (PageSize level : kHugeLevels) {
    const uint64_t n = frames_of(level);
    const uint64_t head = start & ~(n - 1);
    const uint64_t tail = (end - 1) & ~(n - 1);
    auto consider = [&](uint64_t hp) {
      if (contained_at(hp, n) && !is_mixed(level, Gfn(hp))) out.push_back({Gfn(hp), Gfn(hp + n)});
    };
    if (head != start || head + n > end) consider(head);
    if (tail != head && tail + n > end) consider(tail);
  }
  return out;
}

uint64_t LpageTracker::mixed_count(PageSize level) const {
  return level == PageSize::k4K ? 0 : mixed_[idx_of(level)].size();
}

uint64_t LpageTracker::host_bytes() const {
  return sizeof(*this) + (mixed_[0].size() + mixed_[1].size()) * kSetNodeBytes;
}

}  // namespace cvmsim::kvm
