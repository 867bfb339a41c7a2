#include "hw/mmu/stage2_table.h"

#include <algorithm>

namespace cvmsim {

Result<std::unique_ptr<Stage2Table>> Stage2Table::create(PhysMem& mem, FrameAllocator& frames,
                                                         Stage2Format format,
                                                         Stage2TableOptions options) {
  const PteCodec codec(format);
  for (unsigned level = 0; level < codec.levels(); ++level) {
    if (codec.kind(options.empty_entry, level) != EntryKind::kEmpty) return Errno::kEINVAL;
  }
  std::unique_ptr<Stage2Table> t(new Stage2Table(mem, frames, format, options.empty_entry));
  Result<Pfn> root = t->alloc_table();
  if (!root) return root.error();
  t->root_ = *root;
  return t;
}

Stage2Table::Stage2Table(PhysMem& mem, FrameAllocator& frames, Stage2Format format,
                         uint64_t empty_entry)
    : mem_(mem),
      host_(Initiator::host_kernel(mem)),
      frames_(frames),
      codec_(format),
      empty_entry_(empty_entry) {}

Stage2Table::~Stage2Table() {
  destroy();
}

// ---- Table frames ----

Result<Pfn> Stage2Table::alloc_table() {
  Result<Pfn> f = frames_.alloc(PageSize::k4K);
  if (!f) return f.error();
  mem_.mark_table(*f, true);
  const Hpa t = pfn_to_hpa(*f);
  // A recycled frame may hold anything; a table must start with every slot empty.
  note(host_.fill_plain(t, kPageBytes, 0));
  if (empty_entry_ != 0) {
    for (unsigned i = 0; i < kEntriesPerTable; ++i) write(t + 8 * i, empty_entry_);
  }
  ++stats_.table_frames_allocated;
  table_frames_in_use_gauge_ = static_cast<double>(table_frames_in_use());
  table_frames_peak_ = std::max(table_frames_peak_, table_frames_in_use_gauge_);
  return *f;
}

void Stage2Table::free_table(Pfn table) {
  // Scrubbed so that no stale pointer to a freed table (or a guest frame) outlives it.
  note(host_.fill_plain(pfn_to_hpa(table), kPageBytes, 0));
  mem_.mark_table(table, false);
  frames_.free(table, PageSize::k4K);
  ++stats_.table_frames_freed;
  table_frames_in_use_gauge_ = static_cast<double>(table_frames_in_use());
}

void Stage2Table::free_subtree(Pfn table, unsigned level) {
  if (level > 0) {
    const Hpa t = pfn_to_hpa(table);
    for (unsigned i = 0; i < kEntriesPerTable; ++i) {
      const uint64_t raw = read(t + 8 * i);
      if (codec_.kind(raw, level) == EntryKind::kTable) free_subtree(codec_.pfn(raw), level - 1);
    }
  }
  free_table(table);
}

bool Stage2Table::subtree_has_content(Pfn table, unsigned level) const {
  const Hpa t = pfn_to_hpa(table);
  for (unsigned i = 0; i < kEntriesPerTable; ++i) {
    const uint64_t raw = read(t + 8 * i);
    switch (codec_.kind(raw, level)) {
      case EntryKind::kEmpty:
        break;
      case EntryKind::kTable:
        if (subtree_has_content(codec_.pfn(raw), level - 1)) return true;
        break;
      case EntryKind::kLeaf:
      case EntryKind::kAnnotation:
        return true;
    }
  }
  return false;
}

void Stage2Table::destroy() {
  if (destroyed_) return;
  free_subtree(root_, top_level());
  destroyed_ = true;
  root_ = Pfn();
}

// ---- Descending ----

Stage2Table::Find Stage2Table::find_slot(Gpa gpa, unsigned level, Slot* out) const {
  Pfn table = root_;
  for (unsigned l = top_level();; --l) {
    const Hpa h = entry_hpa(table, gpa, l);
    const uint64_t raw = read(h);
    if (l == level) {
      *out = Slot{table, l, h, raw};
      return Find::kOk;
    }
    switch (codec_.kind(raw, l)) {
      case EntryKind::kTable:
        table = codec_.pfn(raw);
        break;
      case EntryKind::kLeaf:
        *out = Slot{table, l, h, raw};
        return Find::kCovered;
      case EntryKind::kEmpty:
      case EntryKind::kAnnotation:
        *out = Slot{table, l, h, raw};
        return Find::kMissing;
    }
  }
}

Result<Stage2Table::Slot> Stage2Table::prepare_slot(Gpa gpa, unsigned level,
                                                    bool replace_annotation) {
  Pfn table = root_;
  for (unsigned l = top_level();; --l) {
    const Hpa h = entry_hpa(table, gpa, l);
    const uint64_t raw = read(h);
    const EntryKind k = codec_.kind(raw, l);
    if (l == level) {
      switch (k) {
        case EntryKind::kEmpty:
          break;
        case EntryKind::kLeaf:
          return Errno::kEEXIST;
        case EntryKind::kAnnotation:
          if (!replace_annotation) return Errno::kEEXIST;
          break;
        case EntryKind::kTable: {
          const Pfn child = codec_.pfn(raw);
          if (subtree_has_content(child, l - 1)) return Errno::kEEXIST;
          write(h, empty_entry_);
          free_subtree(child, l - 1);
          return Slot{table, l, h, empty_entry_};
        }
      }
      return Slot{table, l, h, raw};
    }
    switch (k) {
      case EntryKind::kTable:
        table = codec_.pfn(raw);
        break;
      case EntryKind::kLeaf:
      case EntryKind::kAnnotation:
        return Errno::kEEXIST;
      case EntryKind::kEmpty: {
        Result<Pfn> next = alloc_table();
        if (!next) return next.error();
        write(h, codec_.encode_table(*next));
        table = *next;
        break;
      }
    }
  }
}

Status Stage2Table::check_leaf_args(Gpa gpa, PageSize size) const {
  if (destroyed_ || !supports_leaf(format(), size) || !gpa.is_aligned(size)) {
    return Errno::kEINVAL;
  }
  const unsigned bits = input_bits_of(format());
  if ((gpa.value() >> bits) != 0) return Errno::kEINVAL;
  return {};
}

Result<Stage2Table::Slot> Stage2Table::find_leaf(Gpa gpa, PageSize size) const {
  if (Status s = check_leaf_args(gpa, size); !s) return s.error();
  Slot slot;
  switch (find_slot(gpa, level_of(size), &slot)) {
    case Find::kOk:
      break;
    case Find::kMissing:
      return Errno::kENOENT;
    case Find::kCovered:
      return Errno::kEINVAL;
  }
  if (codec_.kind(slot.raw, slot.level) != EntryKind::kLeaf) return Errno::kENOENT;
  return slot;
}

// ---- Mapping ----

Status Stage2Table::map(Gpa gpa, Pfn pfn, PageSize size, Perms perms, uint16_t sw,
                        bool suppress_ve) {
  if (Status s = check_leaf_args(gpa, size); !s) return s;
  if (!pfn.is_aligned(size) || pfn.value() + (frames_of(size) - 1) > codec_.max_pfn() ||
      sw > codec_.sw_max() || !codec_.can_encode(perms) ||
      (suppress_ve && codec_.family() != PteFamily::kEpt)) {
    return Errno::kEINVAL;
  }
  Result<Slot> slot = prepare_slot(gpa, level_of(size), /*replace_annotation=*/false);
  if (!slot) return slot.error();
  write(slot->hpa, codec_.encode_leaf(pfn, level_of(size), perms, sw, suppress_ve));
  ++stats_.maps;
  return {};
}

Status Stage2Table::unmap(Gpa gpa, PageSize size) {
  Result<Slot> slot = find_leaf(gpa, size);
  if (!slot) return slot.error();
  write(slot->hpa, empty_entry_);
  ++stats_.unmaps;
  return {};
}

Status Stage2Table::protect(Gpa gpa, PageSize size, Perms perms, uint16_t sw) {
  if (sw > codec_.sw_max() || !codec_.can_encode(perms)) return Errno::kEINVAL;
  Result<Slot> slot = find_leaf(gpa, size);
  if (!slot) return slot.error();
  const Pte old = codec_.decode(slot->raw, slot->level);
  write(slot->hpa, codec_.encode_leaf(old.pfn, slot->level, perms, sw, old.suppress_ve));
  ++stats_.protects;
  return {};
}

Status Stage2Table::set_suppress_ve(Gpa gpa, PageSize size, bool suppress_ve) {
  if (codec_.family() != PteFamily::kEpt) return Errno::kEOPNOTSUPP;
  Result<Slot> slot = find_leaf(gpa, size);
  if (!slot) return slot.error();
  write(slot->hpa,
        suppress_ve ? (slot->raw | EptCodec::kSuppressVe) : (slot->raw & ~EptCodec::kSuppressVe));
  return {};
}

Status Stage2Table::split(Gpa gpa, PageSize huge) {
  if (huge == PageSize::k4K) return Errno::kEINVAL;
  Result<Slot> slot = find_leaf(gpa, huge);
  if (!slot) return slot.error();
  const Pte old = codec_.decode(slot->raw, slot->level);
  Result<Pfn> table = alloc_table();
  if (!table) return table.error();
  const unsigned child_level = slot->level - 1;
  const uint64_t step = frames_of(static_cast<PageSize>(child_level));
  const Hpa t = pfn_to_hpa(*table);
  for (unsigned i = 0; i < kEntriesPerTable; ++i) {
    write(t + 8 * i,
          codec_.encode_leaf(old.pfn + i * step, child_level, old.perms, old.sw, old.suppress_ve));
  }
  write(slot->hpa, codec_.encode_table(*table));
  ++stats_.splits;
  return {};
}

Status Stage2Table::merge(Gpa gpa, PageSize huge) {
  if (huge == PageSize::k4K) return Errno::kEINVAL;
  if (Status s = check_leaf_args(gpa, huge); !s) return s;
  Slot slot;
  switch (find_slot(gpa, level_of(huge), &slot)) {
    case Find::kOk:
      break;
    case Find::kMissing:
      return Errno::kENOENT;
    case Find::kCovered:
      return Errno::kEINVAL;
  }
  switch (codec_.kind(slot.raw, slot.level)) {
    case EntryKind::kEmpty:
      return Errno::kENOENT;
    case EntryKind::kTable:
      break;
    case EntryKind::kLeaf:
    case EntryKind::kAnnotation:
      return Errno::kEINVAL;
  }
  const Pfn table = codec_.pfn(slot.raw);
  const unsigned child_level = slot.level - 1;
  const uint64_t step = frames_of(static_cast<PageSize>(child_level));
  const Hpa t = pfn_to_hpa(table);
  const uint64_t first_raw = read(t);
  if (codec_.kind(first_raw, child_level) != EntryKind::kLeaf) return Errno::kEINVAL;
  const Pte first = codec_.decode(first_raw, child_level);
  if (!first.pfn.is_aligned(huge)) return Errno::kEINVAL;
  for (unsigned i = 1; i < kEntriesPerTable; ++i) {
    const uint64_t raw = read(t + 8 * i);
    if (codec_.kind(raw, child_level) != EntryKind::kLeaf) return Errno::kEINVAL;
    const Pte p = codec_.decode(raw, child_level);
    if (p.pfn != first.pfn + i * step || p.perms != first.perms || p.sw != first.sw ||
        p.suppress_ve != first.suppress_ve) {
      return Errno::kEINVAL;
    }
  }
  write(slot.hpa,
        codec_.encode_leaf(first.pfn, slot.level, first.perms, first.sw, first.suppress_ve));
  free_table(table);
  ++stats_.merges;
  return {};
}

// ---- Ranges ----

Status Stage2Table::check_range(Pfn table, unsigned level, uint64_t base, uint64_t start,
                                uint64_t end) const {
  const uint64_t span = span_of(level);
  const unsigned first = static_cast<unsigned>((std::max(start, base) - base) / span);
  const Hpa t = pfn_to_hpa(table);
  for (unsigned i = first; i < kEntriesPerTable; ++i) {
    const uint64_t b = base + i * span;
    if (b >= end) break;
    const uint64_t raw = read(t + 8 * i);
    const bool whole = b >= start && b + span <= end;
    switch (codec_.kind(raw, level)) {
      case EntryKind::kEmpty:
        break;
      case EntryKind::kLeaf:
      case EntryKind::kAnnotation:
        if (!whole) return Errno::kEINVAL;
        break;
      case EntryKind::kTable:
        if (!whole) {
          if (Status s = check_range(codec_.pfn(raw), level - 1, b, start, end); !s) return s;
        }
        break;
    }
  }
  return {};
}

bool Stage2Table::zap_range(Pfn table, unsigned level, uint64_t base, uint64_t start,
                            uint64_t end) {
  const uint64_t span = span_of(level);
  const Hpa t = pfn_to_hpa(table);
  bool empty = true;
  for (unsigned i = 0; i < kEntriesPerTable; ++i) {
    const uint64_t b = base + i * span;
    const Hpa h = t + 8 * i;
    const uint64_t raw = read(h);
    const EntryKind k = codec_.kind(raw, level);
    if (k == EntryKind::kEmpty) continue;
    if (b + span <= start || b >= end) {  // outside the range: only tells us we are not empty
      empty = false;
      continue;
    }
    switch (k) {
      case EntryKind::kEmpty:
        break;
      case EntryKind::kLeaf:
        ++stats_.unmaps;
        write(h, empty_entry_);
        break;
      case EntryKind::kAnnotation:
        write(h, empty_entry_);
        break;
      case EntryKind::kTable: {
        const Pfn child = codec_.pfn(raw);
        if (zap_range(child, level - 1, b, start, end)) {
          write(h, empty_entry_);
          free_table(child);
        } else {
          empty = false;
        }
        break;
      }
    }
  }
  return empty;
}

Status Stage2Table::unmap_range(Gpa start, uint64_t bytes) {
  const uint64_t s = start.value();
  const uint64_t limit = uint64_t{1} << input_bits_of(format());
  if (destroyed_ || bytes == 0 || !start.is_aligned(PageSize::k4K) ||
      (bytes & (kPageBytes - 1)) != 0 || s >= limit || bytes > limit - s) {
    return Errno::kEINVAL;
  }
  if (Status st = check_range(root_, top_level(), 0, s, s + bytes); !st) return st;
  zap_range(root_, top_level(), 0, s, s + bytes);  // the root stays even when empty
  return {};
}

// ---- Annotations ----

Status Stage2Table::annotate(Gpa gpa, PageSize size, uint64_t value) {
  if (!codec_.supports_annotations()) return Errno::kEOPNOTSUPP;
  if (Status s = check_leaf_args(gpa, size); !s) return s;
  if (value == 0 || value > codec_.max_annotation()) return Errno::kEINVAL;
  Result<Slot> slot = prepare_slot(gpa, level_of(size), /*replace_annotation=*/true);
  if (!slot) return slot.error();
  write(slot->hpa, codec_.encode_annotation(value));
  ++stats_.annotations;
  return {};
}

Status Stage2Table::clear_annotation(Gpa gpa, PageSize size) {
  if (!codec_.supports_annotations()) return Errno::kEOPNOTSUPP;
  if (Status s = check_leaf_args(gpa, size); !s) return s;
  Slot slot;
  if (find_slot(gpa, level_of(size), &slot) != Find::kOk ||
      codec_.kind(slot.raw, slot.level) != EntryKind::kAnnotation) {
    return Errno::kENOENT;
  }
  write(slot.hpa, empty_entry_);
  return {};
}

// ---- Inspection ----

Stage2Lookup Stage2Table::lookup(Gpa gpa) const {
  Stage2Lookup r;
  if (destroyed_ || (gpa.value() >> input_bits_of(format())) != 0) return r;
  Pfn table = root_;
  for (unsigned l = top_level();; --l) {
    const uint64_t raw = read(entry_hpa(table, gpa, l));
    const EntryKind k = codec_.kind(raw, l);
    if (k == EntryKind::kTable) {
      table = codec_.pfn(raw);
      continue;
    }
    r.kind = k;
    r.level = l;
    r.base = Gpa(gpa.value() & ~(span_of(l) - 1));
    r.raw = raw;
    r.pte = codec_.decode(raw, l);
    return r;
  }
}

Result<uint64_t> Stage2Table::raw_entry(Gpa gpa, unsigned level) const {
  if (destroyed_ || level > top_level() || (gpa.value() >> input_bits_of(format())) != 0) {
    return Errno::kEINVAL;
  }
  Slot slot;
  if (find_slot(gpa, level, &slot) != Find::kOk) return Errno::kENOENT;
  return slot.raw;
}

void Stage2Table::describe_stats(StatVisitor& v) const {
  v.value("table_frames_in_use", table_frames_in_use_gauge_, "frames",
          "page-table frames currently held (root included)");
  v.value("table_frames_peak", table_frames_peak_, "frames", "most page-table frames held at once");
  v.counter("table_frames_allocated", stats_.table_frames_allocated, "frames",
            "page-table frames taken from the frame allocator");
  v.counter("table_frames_freed", stats_.table_frames_freed, "frames",
            "page-table frames returned to the frame allocator");
  v.counter("maps", stats_.maps, "count", "leaves installed by map()");
  v.counter("unmaps", stats_.unmaps, "count", "leaves removed by unmap() or unmap_range()");
  v.counter("protects", stats_.protects, "count", "leaf permission/software-bit changes");
  v.counter("splits", stats_.splits, "count", "huge leaves split into 512 smaller ones");
  v.counter("merges", stats_.merges, "count", "tables of 512 leaves merged into one leaf");
  v.counter("annotations", stats_.annotations, "count",
            "owner annotations written into invalid entries");
}

}  // namespace cvmsim
