// The Physical Address Metadata Table (tdx-snp.md A7; M src/common/memory_handlers/pamt_manager.h).
//
// The TDX module keeps 16 bytes of metadata for every 4 KiB frame of every TDMR (Trust Domain
// Memory Region), at three levels: one entry per 1 GiB, per 2 MiB and per 4 KiB. A page assigned
// as a 2 MiB page has its metadata in the 2 MiB entry (its 4 KiB entries stay PT_NDA); "the leaf"
// of a frame is the entry of the largest assigned page that covers it, or its 4 KiB entry.
//
// The real PAMT is a flat array of 1/256 of RAM. This model is sparse: an entry exists only while
// it is assigned (pt != PT_NDA) or locked, so host memory grows with the pages the module has
// handed to TDs, not with the size of the TDMRs. modelled_bytes() reports what the hardware table
// would occupy.
//
// "One page, at most one TD" (A7): every page-adding SEAMCALL requires the entry to be PT_NDA and
// records one owner (the TDR's frame), so a frame can be neither in two TDs nor mapped twice.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "hw/base/addr.h"
#include "hw/base/page_size.h"
#include "models/tdx/tdx_locks.h"

namespace cvmsim::tdx {

// PAMT page types (A7); the ABI value is the enumerator's value.
enum class PageType : uint8_t {
  kNda = 0,    // not directly assigned: free / host
  kRsvd = 1,   // reserved area inside a TDMR
  kReg = 3,    // TD private data page
  kTdr = 4,    // TD root
  kTdcx = 5,   // TDCS page (one of them is the S-EPT root)
  kTdvpr = 6,  // vCPU root and its TDVPX pages (the model types TDVPX pages PT_TDCX, see docs)
  kEpt = 8,    // Secure-EPT page (ABI spelling PT_EPT)
};
inline constexpr PageType kAllPageTypes[] = {PageType::kNda, PageType::kRsvd, PageType::kReg,
                                             PageType::kTdr, PageType::kTdcx, PageType::kTdvpr,
                                             PageType::kEpt};
std::string_view name_of(PageType t);

// One PAMT entry, laid out as the module's pamt_entry_t: a 16-bit sharex lock, the 8-bit page
// type, the 40-bit frame number of the owning TDR, and BEPOCH (the TD epoch at which the page was
// blocked, A6).
struct PamtEntry {
  SharexLock lock;
  uint8_t pt = 0;
  uint8_t owner_bytes[5] = {0, 0, 0, 0, 0};
  uint64_t bepoch = 0;

  PageType type() const { return static_cast<PageType>(pt); }
  Pfn owner() const {
    uint64_t v = 0;
    for (int i = 4; i >= 0; --i) v = (v << 8) | owner_bytes[i];
    return Pfn(v);
  }
  void set_owner(Pfn f) {
    uint64_t v = f.value();
    for (int i = 0; i < 5; ++i, v >>= 8) owner_bytes[i] = static_cast<uint8_t>(v);
  }
};
static_assert(sizeof(PamtEntry) == 16, "A7: a PAMT entry is 16 bytes");

struct HpaRange {
  Hpa base;
  uint64_t size = 0;
  bool contains(Hpa a) const { return a >= base && a.value() - base.value() < size; }
};

// A TDMR and its reserved areas (pages the module reports as PT_RSVD).
struct Tdmr {
  Hpa base;
  uint64_t size = 0;
  std::vector<HpaRange> reserved;
};

// The leaf metadata of a frame (what TDH.PHYMEM.PAGE.RDMD returns).
struct PamtLeaf {
  PamtEntry entry;
  PageSize level = PageSize::k4K;  // level of the entry that holds the metadata
  Pfn base;                        // first frame of that entry's page
};

class Pamt {
 public:
  // A PAMT entry lock held by an operation in flight.
  struct LockRef {
    Pfn base;
    PageSize level = PageSize::k4K;
    LockMode mode = LockMode::kShared;
  };

  explicit Pamt(std::vector<Tdmr> tdmrs);

  const std::vector<Tdmr>& tdmrs() const { return tdmrs_; }
  // Inside some TDMR (A7: an HPA outside gives TDX_OPERAND_ADDR_RANGE_ERROR).
  bool covers(Pfn f) const;
  bool covers_range(Pfn base, PageSize size) const;
  bool is_reserved(Pfn f) const;

  // The entry at exactly (base, level); a default PT_NDA entry (PT_RSVD for a reserved 4 KiB
  // frame) when none is stored.
  PamtEntry entry(Pfn base, PageSize level) const;
  // The leaf governing frame f.
  PamtLeaf leaf(Pfn f) const;

  // pamt_walk (A5): walks 1 GiB -> 2 MiB -> `target`, stopping early at an assigned entry; takes
  // SHARED locks on the levels passed and `mode` on the entry where it stops (level in *reached).
  // All or nothing: on a lock conflict nothing stays held and it returns false (-> BUSY).
  bool walk_and_lock(Pfn f, PageSize target, LockMode mode, std::vector<LockRef>& held,
                     PageSize* reached);
  // pamt_implicit_get_and_lock: locks exactly (base, level); false on conflict.
  bool lock(Pfn base, PageSize level, LockMode mode, std::vector<LockRef>& held);
  void unlock(const LockRef& r);
  bool locked(Pfn base, PageSize level) const;

  // ---- Updates (the module has checked and locked) ----
  void assign(Pfn base, PageSize level, PageType pt, Pfn owner);
  void make_nda(Pfn base, PageSize level);
  void set_bepoch(Pfn base, PageSize level, uint64_t bepoch);
  // pamt_is_2mb_range_free: the 2 MiB entry and all 512 4 KiB entries are PT_NDA (none reserved).
  bool range_2m_free(Pfn base) const;
  // Number of assigned 4 KiB entries inside the 2 MiB page at base.
  uint32_t assigned_4k_in_2m(Pfn base) const;

  // ---- Inspection ----
  // f(Pfn base, PageSize level, const PamtEntry&) for every assigned entry (unordered).
  template <class F>
  void for_each_assigned(F&& f) const {
    for (const auto& [k, e] : entries_) {
      if (e.type() != PageType::kNda) f(base_of(k), level_of_key(k), e);
    }
  }
  // 4 KiB-equivalents currently of type t (PT_RSVD counts reserved TDMR frames).
  uint64_t pages(PageType t) const;
  uint64_t entries_stored() const { return entries_.size(); }
  uint64_t host_bytes() const;
  // Size of the hardware PAMT for the TDMRs: 16 B per 4 KiB, 2 MiB and 1 GiB entry.
  uint64_t modelled_bytes() const;
  // Change journal for incremental checkers (T1, T5): every assign/make_nda is numbered; the
  // last kJournalSize changes are kept. changes_since(seq, out) appends the (base, level) pages
  // changed after change number `seq` and returns the current number, or nullopt when more than
  // kJournalSize changes happened since (the caller must re-read everything).
  static constexpr size_t kJournalSize = 4096;
  uint64_t change_seq() const { return change_seq_; }
  std::optional<uint64_t> changes_since(uint64_t seq,
                                        std::vector<std::pair<Pfn, PageSize>>& out) const {
    if (change_seq_ - seq > kJournalSize) return std::nullopt;
    for (uint64_t i = seq; i < change_seq_; ++i) {
      const uint64_t k = journal_[i % kJournalSize];
      out.emplace_back(base_of(k), level_of_key(k));
    }
    return change_seq_;
  }

 private:
  void journal(Pfn base, PageSize level) {
    if (journal_.empty()) journal_.resize(kJournalSize);
    journal_[change_seq_++ % kJournalSize] = key(base, level);
  }
  static constexpr uint64_t key(Pfn base, PageSize level) {
    return (uint64_t{static_cast<uint8_t>(level)} << 62) | base.value();
  }
  static constexpr Pfn base_of(uint64_t k) { return Pfn(k & ((uint64_t{1} << 62) - 1)); }
  static constexpr PageSize level_of_key(uint64_t k) { return static_cast<PageSize>(k >> 62); }
  PamtEntry& slot(Pfn base, PageSize level);
  void maybe_erase(Pfn base, PageSize level);
  void count(PageType t, PageSize level, int64_t sign);

  std::vector<Tdmr> tdmrs_;
  std::unordered_map<uint64_t, PamtEntry> entries_;
  std::unordered_map<uint64_t, uint32_t> assigned_in_2m_;  // 2 MiB index -> assigned 4 KiB entries
  std::unordered_map<uint64_t, uint32_t> assigned_in_1g_;  // 1 GiB index -> assigned 2M/4K entries
  uint64_t pages_[16] = {};                                // by PageType value
  uint64_t reserved_frames_ = 0;
  std::vector<uint64_t> journal_;
  uint64_t change_seq_ = 0;
};

}  // namespace cvmsim::tdx
