// The stage-2 hardware page walker: reads entries from a Stage2Table's frames in PhysMem, root
// to leaf, starting below the root when the page-walk cache holds an upper entry. It reports
// what it found and how many entries it read from memory (mem_refs), which is what a timing
// model charges for; it neither fills the TLB nor checks isolation beyond the entry's own
// permissions (those are the CPU's and the backends' jobs).
//
// A walk picks the codec for the table's format once (EptCodec, NptCodec, ArmS2Codec) and runs
// a loop specialised for it: no virtual call, switch or allocation per level.
#pragma once

#include <cstdint>
#include <string_view>

#include "hw/base/addr.h"
#include "hw/base/page_size.h"
#include "hw/base/stat_visitor.h"
#include "hw/mmu/perms.h"
#include "hw/mmu/pte_format.h"
#include "hw/mmu/pwc.h"
#include "hw/mmu/stage2_table.h"

namespace cvmsim {

enum class WalkFault : uint8_t {
  kNone,
  // No usable entry: an empty or annotated slot, a leaf hardware treats as not present (EPT
  // RWX=000, NPT P=0), a table entry hardware would not follow (S-EPT NL_BLOCKED), or an
  // input address beyond the format's width. EPT violation / NPF / stage-2 translation fault.
  kNotPresent,
  // A usable leaf that does not grant every permission asked for.
  kPermission,
};

std::string_view name_of(WalkFault f);

struct WalkResult {
  bool present = false;  // found a leaf hardware would use (true also on kPermission)
  WalkFault fault = WalkFault::kNotPresent;
  EntryKind kind = EntryKind::kEmpty;  // software kind of the last entry read
  uint8_t level = 0;                   // level of the last entry read (the leaf's, if any)
  PageSize size = PageSize::k4K;       // leaf only
  Pfn pfn;                             // leaf only: base frame of the page/block
  Perms perms;                         // leaf only
  uint16_t sw = 0;                     // leaf only
  uint64_t raw = 0;                    // the last entry read: the leaf, or where the walk stopped
  unsigned mem_refs = 0;               // entries read from memory by this walk
  bool pwc_hit = false;                // started below the root from a page-walk-cache entry

  // The 4 KiB frame that gpa lands in (leaf only).
  Pfn pfn_for(Gpa gpa) const { return pfn + (gpa.page_offset(size) >> kPageShift); }
  Gfn gfn_base(Gpa gpa) const { return gpa_to_gfn(gpa.align_down(size)); }
};

// Where a walk starts: the memory holding the tables, the root table frame and the entry format
// (which fixes the number of levels). A Stage2Table provides one; so can any owner of a tree of
// 512-entry table frames in PhysMem (the TDX module's Secure EPT).
struct WalkRoot {
  const PhysMem* mem = nullptr;
  Pfn root;
  Stage2Format format = Stage2Format::kEpt4;
};

class Walker {
 public:
  struct Stats {
    uint64_t walks = 0;
    uint64_t mem_refs = 0;
    uint64_t pwc_hits = 0;    // walks that started below the root thanks to the PWC
    uint64_t pwc_misses = 0;  // walks that started at the root
    uint64_t faults_not_present = 0;
    uint64_t faults_permission = 0;
  };

  // The page-walk cache is per-core hardware state owned by the caller (the vCPU, next to its
  // TLB); the walker fills and consults it. It must outlive the walker.
  explicit Walker(Pwc& pwc) : pwc_(&pwc) {}

  // Translates gpa through `table`, as address space `asid` (the PWC tag), checking `need`
  // against the leaf's permissions (kPermsNone: translate only).
  WalkResult walk(const Stage2Table& table, Gpa gpa, uint16_t asid, Perms need = kPermsNone);
  // The same walk over a tree that no Stage2Table manages: the TDX module's Secure EPT, whose
  // pages the module writes itself (hw/mmu/sept.h). The walker reads only what hardware reads
  // (RWX, PS, address), so S-EPT state bits are invisible to it and every entry with RWX=000
  // ends the walk with kNotPresent.
  WalkResult walk(const WalkRoot& root, Gpa gpa, uint16_t asid, Perms need = kPermsNone);

  Pwc& pwc() { return *pwc_; }
  const Pwc& pwc() const { return *pwc_; }
  const Stats& stats() const { return stats_; }
  // The walker's own counters (the PWC describes itself).
  void describe_stats(StatVisitor& v) const;

 private:
  template <class Codec>
  WalkResult walk_with(const WalkRoot& root, Gpa gpa, uint16_t asid, Perms need);

  Pwc* pwc_;
  Stats stats_;
};

}  // namespace cvmsim
