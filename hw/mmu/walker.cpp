#include "hw/mmu/walker.h"

namespace cvmsim {

std::string_view name_of(WalkFault f) {
  switch (f) {
    case WalkFault::kNone:
      return "none";
    case WalkFault::kNotPresent:
      return "not_present";
    case WalkFault::kPermission:
      return "permission";
  }
  return "?";
}

template <class Codec>
WalkResult Walker::walk_with(const WalkRoot& root, Gpa gpa, uint16_t asid, Perms need) {
  WalkResult r;
  const unsigned top = levels_of(root.format) - 1;
  const PhysMem& mem = *root.mem;
  ++stats_.walks;
  r.level = static_cast<uint8_t>(top);
  if ((gpa.value() >> input_bits_of(root.format)) != 0) {
    ++stats_.faults_not_present;
    return r;
  }

  // Start from the deepest cached non-leaf entry (SDM Vol. 3A §4.10.3.2: the walk uses the
  // paging-structure cache entry that skips the most levels).
  unsigned level = top;
  Pfn t = root.root;
  bool pwc_hit = false;
  for (unsigned l = Pwc::kMinLevel; l <= top; ++l) {
    Pfn next;
    if (pwc_->lookup(asid, l, gpa, &next)) {
      t = next;
      level = l - 1;
      pwc_hit = true;
      break;
    }
  }
  ++(pwc_hit ? stats_.pwc_hits : stats_.pwc_misses);
  r.pwc_hit = pwc_hit;

  for (;;) {
    const uint64_t raw = mem.read_u64(Stage2Table::entry_hpa(t, gpa, level));
    ++r.mem_refs;
    const EntryKind k = Codec::kind(raw, level);
    if (k == EntryKind::kTable && Codec::valid(raw, level)) {
      t = Codec::pfn(raw);
      pwc_->insert(asid, level, gpa, t);
      --level;
      continue;
    }
    r.kind = k;
    r.level = static_cast<uint8_t>(level);
    r.raw = raw;
    // No format has leaves above 1 GiB (Arm: a block at architectural level 0 is invalid with
    // a 4 KiB granule).
    if (k == EntryKind::kLeaf && level <= level_of(PageSize::k1G)) {
      r.size = static_cast<PageSize>(level);
      r.pfn = Pfn(Codec::pfn(raw).value() & ~(frames_of(r.size) - 1));
      r.perms = Codec::perms(raw);
      r.sw = Codec::sw(raw);
      if (Codec::valid(raw, level)) {
        mem.prefetch(r.pfn_for(gpa));  // host-side hint only: the access comes next
        r.present = true;
        r.fault = r.perms.allows(need) ? WalkFault::kNone : WalkFault::kPermission;
      }
    }
    break;
  }
  stats_.mem_refs += r.mem_refs;
  if (r.fault == WalkFault::kNotPresent) ++stats_.faults_not_present;
  if (r.fault == WalkFault::kPermission) ++stats_.faults_permission;
  return r;
}

WalkResult Walker::walk(const Stage2Table& table, Gpa gpa, uint16_t asid, Perms need) {
  if (table.destroyed()) {
    WalkResult r;
    ++stats_.walks;
    ++stats_.faults_not_present;
    return r;
  }
  return walk(WalkRoot{&table.mem(), table.root(), table.format()}, gpa, asid, need);
}

WalkResult Walker::walk(const WalkRoot& root, Gpa gpa, uint16_t asid, Perms need) {
  switch (family_of(root.format)) {
    case PteFamily::kEpt:
      return walk_with<EptCodec>(root, gpa, asid, need);
    case PteFamily::kNpt:
      return walk_with<NptCodec>(root, gpa, asid, need);
    case PteFamily::kArm:
      break;
  }
  return walk_with<ArmS2Codec>(root, gpa, asid, need);
}

void Walker::describe_stats(StatVisitor& v) const {
  v.counter("walks", stats_.walks, "count", "stage-2 page walks");
  v.counter("mem_refs", stats_.mem_refs, "references", "page-table entries read from memory");
  v.counter("pwc_hits", stats_.pwc_hits, "count",
            "walks that started below the root from a page-walk-cache entry");
  v.counter("pwc_misses", stats_.pwc_misses, "count", "walks that started at the root");
  v.counter("faults_not_present", stats_.faults_not_present, "count",
            "walks ending without a usable leaf (EPT violation / NPF / translation fault)");
  v.counter("faults_permission", stats_.faults_permission, "count",
            "walks ending at a leaf that denies the access");
}

}  // namespace cvmsim
