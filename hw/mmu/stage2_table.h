// A stage-2 page table (EPT, NPT or Arm stage 2) whose table pages are real frames: each comes
// from a FrameAllocator, is marked as a table in PhysMem (so it stays byte-backed even in
// metadata-only mode) and holds 512 little-endian 8-byte entries written with write_u64. A walk
// therefore reads exactly what a hardware walker would read, and a stray write into a table
// frame corrupts translation the way it would on real hardware. The table's owner is the host
// kernel (KVM's MMU): every entry it reads or writes and every table frame it clears goes through
// a host-kernel Initiator, so the platform's host checks see them (SNP's RMP check refuses host
// writes, page-table writes included, to pages that are not hypervisor-owned: tdx-snp.md B3).
//
// Inputs are Gpa (an IPA on Arm), outputs Pfn. Levels are numbered as in pte_format.h
// (0 = the 4 KiB table, root = levels()-1).
//
// This is the data structure only: it does not invalidate TLBs or page-walk caches. The owner
// (KVM's MMU, the TDX module, pKVM) must do what the architecture requires after a change, as
// with INVEPT / INVLPGA / TLBI: in particular after merge(), unmap_range() or an annotate() over
// an empty table, a freed table frame may still be named by a page-walk cache entry.
// Break-before-make is not modelled: a split or merge swaps the entry in one write.
//
// The table must be destroyed before the PhysMem and the FrameAllocator it uses.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "hw/base/addr.h"
#include "hw/base/page_size.h"
#include "hw/base/result.h"
#include "hw/base/stat_visitor.h"
#include "hw/memory/frame_allocator.h"
#include "hw/memory/initiator.h"
#include "hw/memory/phys_mem.h"
#include "hw/mmu/perms.h"
#include "hw/mmu/pte_format.h"

namespace cvmsim {

// One leaf, as for_each_leaf reports it.
struct Stage2Leaf {
  Gpa gpa;  // base of the page/block
  Pfn pfn;  // base frame
  PageSize size = PageSize::k4K;
  Perms perms;
  uint16_t sw = 0;
  bool valid = false;  // hardware would use it (EPT RWX=000 and NPT P=0 leaves are not)
  bool suppress_ve = false;
  uint64_t raw = 0;
};

// Where a software lookup of one address stopped. Never kTable: the lookup follows tables
// whether or not hardware would (an S-EPT NL_BLOCKED entry is still followed).
struct Stage2Lookup {
  EntryKind kind = EntryKind::kEmpty;  // kLeaf, kAnnotation, or kEmpty (not mapped)
  unsigned level = 0;                  // level of the entry the lookup stopped at
  Gpa base;                            // input address where that entry's span starts
  uint64_t raw = 0;
  Pte pte;  // decoded
  bool mapped() const { return kind == EntryKind::kLeaf; }
  PageSize size() const { return static_cast<PageSize>(level); }  // leaf/annotation only
  // The 4 KiB frame gpa lands in, for a leaf.
  Pfn pfn_for(Gpa gpa) const { return pte.pfn + ((gpa - base) >> kPageShift); }
};

struct Stage2TableOptions {
  // Value of an empty entry, written into fresh table frames and cleared slots. 0 by default;
  // an EPT table may use EptCodec::kSuppressVe, as the TDX module initialises S-EPT entries to
  // FREE|SVE (tdx-snp.md A2.1). Must decode as kEmpty at every level.
  uint64_t empty_entry = 0;
};

class Stage2Table {
 public:
  struct Stats {
    uint64_t table_frames_allocated = 0;
    uint64_t table_frames_freed = 0;
    uint64_t maps = 0;
    uint64_t unmaps = 0;  // leaves removed, by unmap() or unmap_range()
    uint64_t protects = 0;
    uint64_t splits = 0;
    uint64_t merges = 0;
    uint64_t annotations = 0;  // annotations written
  };

  // Allocates the root table. EINVAL for a bad option, ENOMEM if the allocator is empty.
  static Result<std::unique_ptr<Stage2Table>> create(PhysMem& mem, FrameAllocator& frames,
                                                     Stage2Format format,
                                                     Stage2TableOptions options = {});
  ~Stage2Table();
  Stage2Table(const Stage2Table&) = delete;
  Stage2Table& operator=(const Stage2Table&) = delete;

  // ---- Mapping ----
  // Installs one leaf, allocating missing tables.
  //   EINVAL  size unsupported, gpa/pfn not aligned to size, gpa range beyond the input width,
  //           pfn range beyond the output width, sw > sw_max(), perms not encodable (NPT: write
  //           or exec without read; EPT: write without read), or the table was destroyed
  //   EEXIST  anything already in [gpa, gpa+size): a leaf or annotation at that size, a larger
  //           leaf/annotation covering it, or a table below holding any leaf or annotation
  //           (a table holding nothing is freed and replaced)
  //   ENOMEM  no frame for a table (tables allocated so far stay, empty)
  Status map(Gpa gpa, Pfn pfn, PageSize size, Perms perms, uint16_t sw = 0,
             bool suppress_ve = false);
  // Removes the leaf of exactly `size` at gpa. Tables are kept (reclaimed by unmap_range).
  //   ENOENT  no leaf of that size there (nothing, an annotation, or smaller leaves)
  //   EINVAL  misaligned, or a larger leaf covers gpa: split it first
  Status unmap(Gpa gpa, PageSize size);
  // Rewrites perms and software bits of the leaf of exactly `size` at gpa (frame and
  // suppress-#VE kept). Errors as unmap(), plus EINVAL for unencodable perms/sw.
  Status protect(Gpa gpa, PageSize size, Perms perms, uint16_t sw);
  // EPT only (EOPNOTSUPP elsewhere): sets or clears bit 63 of the leaf. Errors as unmap().
  Status set_suppress_ve(Gpa gpa, PageSize size, bool suppress_ve);
  // Replaces the 2M/1G leaf at gpa by a table of 512 leaves one size down, with the same perms,
  // sw bits and suppress-#VE, and contiguous frames (like TDH.MEM.PAGE.DEMOTE, tdx-snp.md A2.3).
  //   EINVAL  huge is 4K or gpa misaligned, or a larger leaf covers gpa
  //   ENOENT  no leaf of that size at gpa;  ENOMEM  no frame for the new table
  Status split(Gpa gpa, PageSize huge);
  // Collapses the table under the 2M/1G slot at gpa into one leaf and frees the table frame
  // (like TDH.MEM.PAGE.PROMOTE). The 512 entries must be leaves with equal perms, sw bits and
  // suppress-#VE, and contiguous frames starting at a huge-aligned frame.
  //   ENOENT  nothing at that slot;  EINVAL  anything else (not uniform, a leaf already, ...)
  Status merge(Gpa gpa, PageSize huge);
  // Removes every leaf and annotation inside [start, start+bytes) and frees every table that is
  // then empty (tables holding nothing outside the range included). All or nothing: EINVAL,
  // before changing anything, if start/bytes are not 4 KiB aligned, bytes is 0, the range
  // passes the input width, or a leaf or annotation lies only partly inside (split first).
  Status unmap_range(Gpa start, uint64_t bytes);

  // ---- pKVM annotations (Arm only; EOPNOTSUPP elsewhere) ----
  // Writes an invalid descriptor carrying `value` (1 .. codec().max_annotation(), else EINVAL)
  // at the slot of `size`, replacing an empty slot or an earlier annotation. EEXIST if a leaf
  // is there or covers it, or a table below holds anything. pKVM annotates at 4 KiB
  // granularity (pkvm-iommu-cca.md §1.3, host_stage2_force_pte_cb).
  Status annotate(Gpa gpa, PageSize size, uint64_t value);
  // ENOENT unless an annotation of exactly `size` is at gpa.
  Status clear_annotation(Gpa gpa, PageSize size);

  // ---- Inspection (no statistics) ----
  Stage2Lookup lookup(Gpa gpa) const;
  // The raw entry at `level` on gpa's path; ENOENT if the path ends above that level.
  Result<uint64_t> raw_entry(Gpa gpa, unsigned level) const;
  // f(const Stage2Leaf&) for every leaf, in increasing gpa order.
  template <class F>
  void for_each_leaf(F&& f) const;
  // f(Gpa base, PageSize size, uint64_t value) for every annotation, in increasing gpa order.
  template <class F>
  void for_each_annotation(F&& f) const;
  // f(Pfn table, unsigned level) for every table frame, root first, in tree order.
  template <class F>
  void for_each_table_frame(F&& f) const;

  // Frees every table frame, root included. The table is unusable afterwards (EINVAL).
  void destroy();
  bool destroyed() const { return destroyed_; }

  Pfn root() const { return root_; }
  Stage2Format format() const { return codec_.format(); }
  const PteCodec& codec() const { return codec_; }
  unsigned levels() const { return codec_.levels(); }
  unsigned top_level() const { return codec_.levels() - 1; }
  uint64_t empty_entry() const { return empty_entry_; }
  const PhysMem& mem() const { return mem_; }
  // The last page-table access the platform's host checks refused (the access did not happen).
  // On hardware that is a #PF in the kernel, an oops (tdx-snp.md B3); the model records it for
  // the owner and the checkers instead. No check refuses one yet.
  const std::optional<AccessFault>& host_fault() const { return host_fault_; }
  uint64_t table_frames_in_use() const {
    return stats_.table_frames_allocated - stats_.table_frames_freed;
  }
  const Stats& stats() const { return stats_; }
  void describe_stats(StatVisitor& v) const;

  static constexpr Hpa entry_hpa(Pfn table, Gpa gpa, unsigned level) {
    return pfn_to_hpa(table) +
           8 * ((gpa.value() >> (kPageShift + kBitsPerLevel * level)) & (kEntriesPerTable - 1));
  }
  static constexpr uint64_t span_of(unsigned level) {
    return uint64_t{1} << (kPageShift + kBitsPerLevel * level);
  }

 private:
  struct Slot {
    Pfn table;
    unsigned level = 0;
    Hpa hpa;
    uint64_t raw = 0;
  };
  enum class Find : uint8_t { kOk, kMissing, kCovered };

  Stage2Table(PhysMem& mem, FrameAllocator& frames, Stage2Format format, uint64_t empty_entry);

  Result<Pfn> alloc_table();
  void free_table(Pfn table);
  void free_subtree(Pfn table, unsigned level);
  bool subtree_has_content(Pfn table, unsigned level) const;
  // Descends to the slot of `level` on gpa's path without allocating. kMissing: the path ends
  // in an empty entry or an annotation above `level`; kCovered: a leaf above `level` covers gpa.
  Find find_slot(Gpa gpa, unsigned level, Slot* out) const;
  // Descends to the slot of `level`, allocating tables, and empties it if it holds only an
  // empty subtree (or an annotation, when replace_annotation).
  Result<Slot> prepare_slot(Gpa gpa, unsigned level, bool replace_annotation);
  // Finds the leaf of exactly `size` at gpa (errors as unmap()).
  Result<Slot> find_leaf(Gpa gpa, PageSize size) const;
  Status check_range(Pfn table, unsigned level, uint64_t base, uint64_t start, uint64_t end) const;
  // Returns true if the table is empty afterwards.
  bool zap_range(Pfn table, unsigned level, uint64_t base, uint64_t start, uint64_t end);
  Status check_leaf_args(Gpa gpa, PageSize size) const;

  uint64_t read(Hpa a) const { return host_.read_u64(a, &host_fault_); }
  void write(Hpa a, uint64_t v) { note(host_.write_u64(a, v)); }
  void note(const AccessResult& r) {
    if (!r.ok()) [[unlikely]]
      host_fault_ = r.fault;
  }

  template <class F>
  void visit(Pfn table, unsigned level, uint64_t base, F& f) const;

  PhysMem& mem_;
  Initiator host_;  // the host kernel, writing its page tables
  mutable std::optional<AccessFault> host_fault_;
  FrameAllocator& frames_;
  PteCodec codec_;
  uint64_t empty_entry_;
  Pfn root_;
  bool destroyed_ = false;
  Stats stats_;
  double table_frames_in_use_gauge_ = 0;
  double table_frames_peak_ = 0;
};

// ---- Template members ----

// f(kind, level, base, raw) for every non-empty entry, depth first in increasing gpa order;
// tables are reported before their contents.
template <class F>
void Stage2Table::visit(Pfn table, unsigned level, uint64_t base, F& f) const {
  const Hpa t = pfn_to_hpa(table);
  for (unsigned i = 0; i < kEntriesPerTable; ++i) {
    const uint64_t raw = read(t + 8 * i);
    const EntryKind k = codec_.kind(raw, level);
    if (k == EntryKind::kEmpty) continue;
    const uint64_t b = base + i * span_of(level);
    f(k, level, b, raw);
    if (k == EntryKind::kTable) visit(codec_.pfn(raw), level - 1, b, f);
  }
}

template <class F>
void Stage2Table::for_each_leaf(F&& f) const {
  if (destroyed_) return;
  auto cb = [&](EntryKind k, unsigned level, uint64_t base, uint64_t raw) {
    if (k != EntryKind::kLeaf) return;
    const Pte p = codec_.decode(raw, level);
    Stage2Leaf leaf;
    leaf.gpa = Gpa(base);
    leaf.pfn = p.pfn;
    leaf.size = static_cast<PageSize>(level);
    leaf.perms = p.perms;
    leaf.sw = p.sw;
    leaf.valid = p.valid;
    leaf.suppress_ve = p.suppress_ve;
    leaf.raw = raw;
    f(static_cast<const Stage2Leaf&>(leaf));
  };
  visit(root_, top_level(), 0, cb);
}

template <class F>
void Stage2Table::for_each_annotation(F&& f) const {
  if (destroyed_) return;
  auto cb = [&](EntryKind k, unsigned level, uint64_t base, uint64_t raw) {
    if (k == EntryKind::kAnnotation) {
      f(Gpa(base), static_cast<PageSize>(level), codec_.annotation(raw));
    }
  };
  visit(root_, top_level(), 0, cb);
}

template <class F>
void Stage2Table::for_each_table_frame(F&& f) const {
  if (destroyed_) return;
  f(root_, top_level());
  auto cb = [&](EntryKind k, unsigned level, uint64_t, uint64_t raw) {
    if (k == EntryKind::kTable) f(codec_.pfn(raw), level - 1);
  };
  visit(root_, top_level(), 0, cb);
}

}  // namespace cvmsim
