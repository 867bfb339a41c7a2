// The S-EPT state table of tdx-snp.md A2.3 as a matrix: every S-EPT-touching leaf against every
// entry state the model implements, each cell with the exact status (class, code and operand id)
// and, on success, the resulting state and PAMT effect.
//
// The expected values are written here FROM THE SPEC (A2.2 states and "pub" values, A2.3 leaf
// rows, A4 status values and walk failures, A5/A6 tracking, A7 PAMT, A8 ACCEPT), not read from the
// program. Status values are spelled as the spec's hex literals, not the model's constants, so a
// wrong constant in models/tdx/tdx_status.h fails here too. Cells where the spec is silent or
// unverified carry the model's assumption, marked "ASSUMED" with the reason; docs/tdx-model.md
// ("How the state table is tested") lists them.
//
// Each cell is built from scratch: a fresh Env and TD, the row's state reached by real leaf calls
// (AUG, ACCEPT, PAGE.ADD, SEPT.ADD, RANGE.BLOCK, MEM.TRACK), then the column's leaf once.
// A failure message names the matrix, the row and the column (INFO).
//
// Rows not built: REMOVED (A2.2: "used only during import"; no modelled leaf produces it) and the
// migration states (BLOCKEDW, EXPORTED_*, PENDING_BLOCKEDW, ...), which no leaf of the model
// produces either. Columns that take only a level >= 1 (SEPT.ADD, SEPT.REMOVE, DEMOTE 2M,
// PROMOTE 2M) are not applied to 4 KiB rows: their level input is not an S-EPT state question.
#include <functional>
#include <string>

#include "tdx_test_util.h"

using namespace cvmsim;
using namespace cvmsim::tdx;
using namespace cvmsim::tdx::test;

namespace {

// ---- Status values from tdx-snp.md A4 (high 32 bits) and operand ids (low 32 bits) ----
constexpr uint64_t kSuccess = 0x0;
constexpr uint64_t kRcx = 1;                                        // OPERAND_ID_RCX (A4)
constexpr uint64_t kStateIncorrect = 0xC0000B0D00000000ull | kRcx;  // A2.3 default
constexpr uint64_t kWalkFailed = 0xC0000B0000000000ull | kRcx;      // A4 "EPT walk failures"
constexpr uint64_t kNotPresent = 0xC0000B0300000000ull;             // A2.3 MR.EXTEND
constexpr uint64_t kNotBlocked = 0xC0000B0600000000ull;             // A2.3 REMOVE
constexpr uint64_t kAlreadyBlocked = 0x00000B0700000000ull;         // A2.3 BLOCK
constexpr uint64_t kTrackingNotDone = 0xC0000B0800000000ull;        // A2.3 UNBLOCK/REMOVE
constexpr uint64_t kInvalidPromote = 0xC0000B0900000000ull;         // A2.3 PROMOTE
constexpr uint64_t kAlreadyAccepted = 0x00000B0A00000000ull;        // A8
constexpr uint64_t kSizeMismatch = 0xC0000B0B00000000ull;           // A8
constexpr uint64_t kPageNotFree = 0xC0000B0E00000000ull;            // A2.3 SEPT.REMOVE

// ASSUMED operand ids: A2.3 names GPA_RANGE_NOT_BLOCKED, GPA_RANGE_ALREADY_BLOCKED,
// TLB_TRACKING_NOT_DONE, EPT_PAGE_NOT_FREE and EPT_INVALID_PROMOTE_CONDITIONS by their bare
// values; the model reports them against the GPA operand (RCX) like every other S-EPT error
// (A4: api_error_with_operand_id). For ALREADY_BLOCKED, NOT_BLOCKED and TLB_TRACKING_NOT_DONE
// this matches M tdh_mem_range_block.c / tdh_mem_page_remove.c (checked, not copied). A8 says
// PAGE_SIZE_MISMATCH carries the level; the model does
// the same for PAGE_ALREADY_ACCEPTED (the spec gives no operand for it).
constexpr uint64_t kNotBlockedRcx = kNotBlocked | kRcx;
constexpr uint64_t kAlreadyBlockedRcx = kAlreadyBlocked | kRcx;
constexpr uint64_t kTrackingNotDoneRcx = kTrackingNotDone | kRcx;
constexpr uint64_t kInvalidPromoteRcx = kInvalidPromote | kRcx;
constexpr uint64_t kPageNotFreeRcx = kPageNotFree | kRcx;
// ASSUMED (MR.EXTEND on a leaf the walk reaches but that is not MAPPED: PENDING, BLOCKED,
// PENDING_BLOCKED): A2.3 gives "walk failure -> TDX_EPT_ENTRY_NOT_PRESENT"; the model treats a
// leaf with RWX=000 as not present and reports NOT_PRESENT|RCX for it too. (M tdh_mr_extend.c
// returns NOT_PRESENT|RCX for a walk failure but bare NOT_PRESENT, no operand, for a reached leaf
// in a state other than MAPPED: a known difference, left for the spec to settle.)
constexpr uint64_t kNotPresentRcx = kNotPresent | kRcx;

constexpr uint64_t with_level(uint64_t s, unsigned level) {
  return s | level;
}

// ---- The "pub" state values of A2.2 (RDX[15:8] of SEPT.RD and of S-EPT errors) ----
uint64_t pub(SeptState s) {
  switch (s) {
    case SeptState::kFree:
      return 0;
    case SeptState::kNlMapped:
      return 0x84;
    case SeptState::kNlBlocked:
      return 0x81;
    case SeptState::kMapped:
      return 4;
    case SeptState::kBlocked:
      return 1;
    case SeptState::kPending:
      return 2;
    case SeptState::kPendingBlocked:
      return 3;
    default:
      return 0xFF;
  }
}

constexpr Gpa kG{0x400000};  // 2 MiB aligned

// ---- Rows ----

struct Row {
  const char* name;
  SeptState state;       // the state of the entry at (kG, level)
  unsigned level;        // 0 = 4 KiB, 1 = 2 MiB
  bool tracked = false;  // *BLOCKED rows: MEM.TRACK done after the BLOCK (A6)
  bool full = false;     // NL_* rows at 2 MiB: the child table holds 512 PENDING 4 KiB leaves
};

bool blocked(SeptState s) {
  return s == SeptState::kBlocked || s == SeptState::kPendingBlocked || s == SeptState::kNlBlocked;
}
bool non_leaf(SeptState s) {
  return s == SeptState::kNlMapped || s == SeptState::kNlBlocked;
}
bool leaf(SeptState s) {
  return s != SeptState::kFree && !non_leaf(s);
}

// Rows on a RUNNABLE TD (finalized; TLB tracking required, A2.3 last bullet).
const std::vector<Row>& runnable_rows() {
  static const std::vector<Row> rows = {
      {"FREE@4K", SeptState::kFree, 0},
      {"MAPPED@4K", SeptState::kMapped, 0},
      {"PENDING@4K", SeptState::kPending, 0},
      {"BLOCKED@4K untracked", SeptState::kBlocked, 0, false},
      {"BLOCKED@4K tracked", SeptState::kBlocked, 0, true},
      {"PENDING_BLOCKED@4K untracked", SeptState::kPendingBlocked, 0, false},
      {"PENDING_BLOCKED@4K tracked", SeptState::kPendingBlocked, 0, true},
      {"FREE@2M", SeptState::kFree, 1},
      {"NL_MAPPED@2M empty", SeptState::kNlMapped, 1},
      {"NL_BLOCKED@2M empty untracked", SeptState::kNlBlocked, 1, false},
      {"NL_BLOCKED@2M empty tracked", SeptState::kNlBlocked, 1, true},
      {"NL_MAPPED@2M full", SeptState::kNlMapped, 1, false, true},
      {"NL_BLOCKED@2M full untracked", SeptState::kNlBlocked, 1, false, true},
      {"NL_BLOCKED@2M full tracked", SeptState::kNlBlocked, 1, true, true},
      {"MAPPED@2M", SeptState::kMapped, 1},
      {"PENDING@2M", SeptState::kPending, 1},
      {"BLOCKED@2M untracked", SeptState::kBlocked, 1, false},
      {"BLOCKED@2M tracked", SeptState::kBlocked, 1, true},
      {"PENDING_BLOCKED@2M untracked", SeptState::kPendingBlocked, 1, false},
      {"PENDING_BLOCKED@2M tracked", SeptState::kPendingBlocked, 1, true},
  };
  return rows;
}

// Rows on an INITIALIZED TD (before MR.FINALIZE: no tracking required, PAGE.ADD allowed).
const std::vector<Row>& initialized_rows() {
  static const std::vector<Row> rows = {
      {"FREE@4K", SeptState::kFree, 0},
      {"MAPPED@4K (PAGE.ADD)", SeptState::kMapped, 0},
      {"PENDING@4K", SeptState::kPending, 0},
      {"BLOCKED@4K", SeptState::kBlocked, 0},
      {"PENDING_BLOCKED@4K", SeptState::kPendingBlocked, 0},
      {"FREE@2M", SeptState::kFree, 1},
      {"PENDING@2M", SeptState::kPending, 1},
  };
  return rows;
}

// One cell's world: a fresh module and TD with kG in the row's state.
struct Cell {
  Env e;
  Td td;
  const Row& row;
  Hpa data;                 // leaf rows: the page (4 KiB) or the first frame of the 2 MiB page
  Hpa table;                // NL rows: the level-0 S-EPT page under kG
  TdxModule::Stats before;  // the module's counters just before the column's call

  Cell(const Row& r, bool runnable) : td(e.build_td(20, 1, runnable)), row(r) { build(runnable); }

  void build(bool runnable) {
    const SeptState s = row.state;
    e.ensure_sept(td, kG, row.level);  // every level above the row's is NL_MAPPED
    if (row.level == 1 && non_leaf(s)) {
      table = e.page();
      REQUIRE_OK(e.m.mem_sept_add(td.tdr, kG, 1, table));
      if (row.full) {
        data = e.page_2m();
        for (unsigned i = 0; i < 512; ++i) {
          REQUIRE_OK(
              e.m.mem_page_aug(td.tdr, kG + i * kPageBytes, PageSize::k4K, data + i * kPageBytes));
        }
      }
    } else if (s != SeptState::kFree) {
      const PageSize size = row.level == 0 ? PageSize::k4K : PageSize::k2M;
      data = row.level == 0 ? e.page() : e.page_2m();
      const bool accepted = s == SeptState::kMapped || s == SeptState::kBlocked;
      if (accepted && !runnable) {
        REQUIRE(row.level == 0);
        REQUIRE_OK(e.m.mem_page_add(td.tdr, kG, data, e.page()));
      } else {
        REQUIRE_OK(e.m.mem_page_aug(td.tdr, kG, size, data));
        if (accepted) {
          e.enter(td);
          REQUIRE_OK(e.m.tdg_mem_page_accept(td.vcpus[0], kG, size));
          e.leave(td);
        }
      }
    }
    if (blocked(s)) {
      REQUIRE_OK(e.m.mem_range_block(td.tdr, kG, row.level));
      // No vCPU is in the TD, so one TRACK completes tracking of the block (A6 step 4).
      if (row.tracked) REQUIRE_OK(e.m.mem_track(td.tdr));
    }
    REQUIRE(e.state(td, kG, row.level) == s);  // the row is what it claims
  }

  uint64_t chldcnt() { return e.m.td_info(td.tdr)->chldcnt; }
  PageType pt(Hpa h) { return e.m.pamt_leaf(h).entry.type(); }
};

// ---- Expected cells ----

struct Expect {
  bool applies = true;
  uint64_t status = kSuccess;
  bool td_exit = false;                   // ACCEPT: EPT-violation TD exit (A8), no status
  SeptState after = SeptState::kInvalid;  // on success: the entry at (kG, row level)
};
Expect na() {
  return Expect{false};
}
Expect err(uint64_t s) {
  return Expect{true, s};
}
Expect ok(SeptState after) {
  return Expect{true, kSuccess, false, after};
}
Expect td_exit() {
  return Expect{true, kSuccess, true};
}

// A column: its name, the expected cell for a row (from the spec), the call, and the extra
// checks on success (PAMT, chldcnt, outputs).
struct Col {
  const char* name;
  std::function<Expect(const Row&)> expect;
  std::function<TdxResult(Cell&)> call;
  std::function<void(Cell&, const TdxResult&, uint64_t chld_before)> on_success;
  int level = -1;  // the level of the entry the leaf acts on: -1 = the row's level, else fixed
};

// Tracking rule shared by REMOVE, SEPT.REMOVE, DEMOTE, PROMOTE on a RUNNABLE TD (A2.3, A6):
// an unblocked entry -> GPA_RANGE_NOT_BLOCKED; blocked but untracked -> TLB_TRACKING_NOT_DONE.
std::optional<Expect> tracking_rule(const Row& r) {
  if (!blocked(r.state)) return err(kNotBlockedRcx);
  if (!r.tracked) return err(kTrackingNotDoneRcx);
  return std::nullopt;
}

std::vector<Col> runnable_cols() {
  std::vector<Col> c;
  // TDH.MEM.SEPT.ADD (A2.3 row 1): FREE -> NL_MAPPED, new page PT_EPT, chldcnt++. NL_MAPPED only
  // on the "already exists" path (version >= 1), so plain SEPT.ADD refuses it.
  c.push_back({"SEPT.ADD",
               [](const Row& r) {
                 if (r.level == 0) return na();
                 return r.state == SeptState::kFree ? ok(SeptState::kNlMapped)
                                                    : err(kStateIncorrect);
               },
               [](Cell& x) {
                 x.table = x.e.page();
                 return x.e.m.mem_sept_add(x.td.tdr, kG, 1, x.table);
               },
               [](Cell& x, const TdxResult&, uint64_t chld) {
                 CHECK(x.pt(x.table) == PageType::kEpt);
                 CHECK(x.chldcnt() == chld + 1);
               },
               1});
  // SEPT.ADD version 1 ("already exists" path, A2.3 row 1): NL_MAPPED succeeds and the offered
  // page is not used (stays PT_NDA, A7: pages are assigned only when added).
  c.push_back({"SEPT.ADD(existing ok)",
               [](const Row& r) {
                 if (r.level == 0) return na();
                 if (r.state == SeptState::kFree || r.state == SeptState::kNlMapped)
                   return ok(SeptState::kNlMapped);
                 return err(kStateIncorrect);
               },
               [](Cell& x) {
                 x.table = x.e.page();
                 return x.e.m.mem_sept_add(x.td.tdr, kG, 1, x.table, true);
               },
               [](Cell& x, const TdxResult&, uint64_t chld) {
                 if (x.row.state == SeptState::kFree) {
                   CHECK(x.pt(x.table) == PageType::kEpt);
                   CHECK(x.chldcnt() == chld + 1);
                 } else {
                   CHECK(x.pt(x.table) == PageType::kNda);
                   CHECK(x.chldcnt() == chld);
                 }
               },
               1});
  // TDH.MEM.PAGE.AUG 4K at kG (A2.3): FREE/REMOVED -> PENDING, PAMT NDA -> PT_REG, chldcnt += 1.
  // The walk must reach level 0 (A4): a missing level-0 table or a 2 MiB leaf above -> WALK_FAILED.
  c.push_back(
      {"PAGE.AUG 4K",
       [](const Row& r) {
         if (r.level == 0)
           return r.state == SeptState::kFree ? ok(SeptState::kPending) : err(kStateIncorrect);
         if (r.state == SeptState::kFree || leaf(r.state)) return err(kWalkFailed);
         // ASSUMED: the walk does not pass an NL_BLOCKED entry (RWX=000); A4 names only a
         // missing table or a higher leaf as walk failures.
         if (r.state == SeptState::kNlBlocked) return err(kWalkFailed);
         // NL_MAPPED: the level-0 entry is FREE (empty table) or PENDING (full).
         return r.full ? err(kStateIncorrect) : Expect{true, kSuccess, false, SeptState::kInvalid};
       },
       [](Cell& x) {
         x.data = x.e.page();
         return x.e.m.mem_page_aug(x.td.tdr, kG, PageSize::k4K, x.data);
       },
       [](Cell& x, const TdxResult&, uint64_t chld) {
         CHECK(x.e.state(x.td, kG, 0) == SeptState::kPending);
         CHECK(x.pt(x.data) == PageType::kReg);
         CHECK(x.chldcnt() == chld + 1);
       },
       0});
  // TDH.MEM.PAGE.AUG 2M at kG (A2.3): the level-1 entry must be FREE; chldcnt += 512; PAMT leaf
  // at 2 MiB (A7). On 4 KiB rows the level-1 entry is NL_MAPPED.
  c.push_back({"PAGE.AUG 2M",
               [](const Row& r) {
                 if (r.level == 1 && r.state == SeptState::kFree) return ok(SeptState::kPending);
                 return err(kStateIncorrect);
               },
               [](Cell& x) {
                 x.data = x.e.page_2m();
                 return x.e.m.mem_page_aug(x.td.tdr, kG, PageSize::k2M, x.data);
               },
               [](Cell& x, const TdxResult&, uint64_t chld) {
                 CHECK(x.pt(x.data + 7 * kPageBytes) == PageType::kReg);
                 CHECK(x.e.m.pamt_leaf(x.data + 7 * kPageBytes).level == PageSize::k2M);
                 CHECK(x.chldcnt() == chld + 512);
               },
               1});
  // TDH.MEM.RANGE.BLOCK at the row's level (A2.3): NL_MAPPED -> NL_BLOCKED, MAPPED -> BLOCKED,
  // PENDING -> PENDING_BLOCKED; already blocked -> GPA_RANGE_ALREADY_BLOCKED; FREE refused.
  // PAMT.BEPOCH of the blocked page <- td_epoch (A2.3, A6 step 2).
  c.push_back({"RANGE.BLOCK",
               [](const Row& r) {
                 switch (r.state) {
                   case SeptState::kNlMapped:
                     return ok(SeptState::kNlBlocked);
                   case SeptState::kMapped:
                     return ok(SeptState::kBlocked);
                   case SeptState::kPending:
                     return ok(SeptState::kPendingBlocked);
                   case SeptState::kFree:
                     return err(kStateIncorrect);
                   default:
                     return err(kAlreadyBlockedRcx);
                 }
               },
               [](Cell& x) { return x.e.m.mem_range_block(x.td.tdr, kG, x.row.level); },
               [](Cell& x, const TdxResult&, uint64_t) {
                 const Hpa blocked_page = non_leaf(x.row.state) ? x.table : x.data;
                 CHECK(x.e.m.pamt_leaf(blocked_page).entry.bepoch ==
                       x.e.m.td_info(x.td.tdr)->td_epoch);
               }});
  // TDH.MEM.RANGE.UNBLOCK (A2.3): NL_BLOCKED/BLOCKED/PENDING_BLOCKED back to NL_MAPPED/MAPPED/
  // PENDING once the block is tracked, else TLB_TRACKING_NOT_DONE; any other state refused.
  c.push_back({"RANGE.UNBLOCK",
               [](const Row& r) {
                 if (!blocked(r.state)) return err(kStateIncorrect);
                 if (!r.tracked) return err(kTrackingNotDoneRcx);
                 switch (r.state) {
                   case SeptState::kNlBlocked:
                     return ok(SeptState::kNlMapped);
                   case SeptState::kBlocked:
                     return ok(SeptState::kMapped);
                   default:
                     return ok(SeptState::kPending);
                 }
               },
               [](Cell& x) { return x.e.m.mem_range_unblock(x.td.tdr, kG, x.row.level); },
               nullptr});
  // TDH.MEM.PAGE.REMOVE at the row's size (A2.3): leaf states only; on a runnable TD the entry
  // must be blocked and tracked. -> FREE, PAMT -> PT_NDA, chldcnt -= 1 << (9*level), RCX = HPA.
  c.push_back({"PAGE.REMOVE",
               [](const Row& r) {
                 if (!leaf(r.state)) return err(kStateIncorrect);
                 if (auto t = tracking_rule(r)) return *t;
                 return ok(SeptState::kFree);
               },
               [](Cell& x) {
                 return x.e.m.mem_page_remove(x.td.tdr, kG,
                                              x.row.level ? PageSize::k2M : PageSize::k4K);
               },
               [](Cell& x, const TdxResult& r, uint64_t chld) {
                 CHECK(r.rcx == x.data.value());
                 CHECK(x.pt(x.data) == PageType::kNda);
                 CHECK(x.pt(x.data + (x.row.level ? 511 : 0) * kPageBytes) == PageType::kNda);
                 CHECK(x.chldcnt() == chld - (x.row.level ? 512 : 1));
               }});
  // TDH.MEM.SEPT.REMOVE (A2.3): NL_MAPPED/NL_BLOCKED; runnable: NL_BLOCKED and tracked; all
  // children FREE else EPT_PAGE_NOT_FREE. Parent -> FREE, the S-EPT page -> PT_NDA.
  c.push_back({"SEPT.REMOVE",
               [](const Row& r) {
                 if (r.level == 0) return na();
                 if (!non_leaf(r.state)) return err(kStateIncorrect);
                 if (auto t = tracking_rule(r)) return *t;
                 return r.full ? err(kPageNotFreeRcx) : ok(SeptState::kFree);
               },
               [](Cell& x) { return x.e.m.mem_sept_remove(x.td.tdr, kG, 1); },
               [](Cell& x, const TdxResult& r, uint64_t chld) {
                 CHECK(r.rcx == x.table.value());
                 CHECK(x.pt(x.table) == PageType::kNda);
                 CHECK(x.chldcnt() == chld - 1);
               },
               1});
  // TDH.MEM.PAGE.DEMOTE 2M (A2.3): MAPPED/BLOCKED/PENDING/PENDING_BLOCKED 2 MiB leaf; runnable:
  // BLOCKED and tracked. ASSUMED (the spec gives no resulting states): the parent becomes
  // NL_MAPPED and the 512 children MAPPED (parent BLOCKED) or PENDING (parent PENDING_BLOCKED).
  c.push_back({"PAGE.DEMOTE 2M",
               [](const Row& r) {
                 if (r.level == 0) return na();
                 if (!leaf(r.state)) return err(kStateIncorrect);
                 if (auto t = tracking_rule(r)) return *t;
                 return ok(SeptState::kNlMapped);
               },
               [](Cell& x) {
                 x.table = x.e.page();
                 return x.e.m.mem_page_demote(x.td.tdr, kG, PageSize::k2M, x.table);
               },
               [](Cell& x, const TdxResult&, uint64_t chld) {
                 const SeptState child =
                     x.row.state == SeptState::kBlocked ? SeptState::kMapped : SeptState::kPending;
                 CHECK(x.e.state(x.td, kG, 0) == child);
                 CHECK(x.e.state(x.td, kG + 511 * kPageBytes, 0) == child);
                 CHECK(x.pt(x.table) == PageType::kEpt);
                 CHECK(x.e.m.pamt_leaf(x.data + 9 * kPageBytes).level == PageSize::k4K);
                 CHECK(x.chldcnt() == chld + 1);  // the new S-EPT page
               },
               1});
  // TDH.MEM.PAGE.PROMOTE 2M (A2.3): NL_MAPPED/NL_BLOCKED; runnable: NL_BLOCKED and tracked; the
  // 512 children must be contiguous same-state leaves, else EPT_INVALID_PROMOTE_CONDITIONS. The
  // result is one 2 MiB leaf in the children's state [inferred], the S-EPT page goes back to the
  // host (PT_NDA, RCX).
  c.push_back({"PAGE.PROMOTE 2M",
               [](const Row& r) {
                 if (r.level == 0) return na();
                 if (!non_leaf(r.state)) return err(kStateIncorrect);
                 if (auto t = tracking_rule(r)) return *t;
                 return r.full ? ok(SeptState::kPending) : err(kInvalidPromoteRcx);
               },
               [](Cell& x) { return x.e.m.mem_page_promote(x.td.tdr, kG, PageSize::k2M); },
               [](Cell& x, const TdxResult& r, uint64_t chld) {
                 CHECK(r.rcx == x.table.value());
                 CHECK(x.pt(x.table) == PageType::kNda);
                 CHECK(x.e.m.pamt_leaf(x.data + 9 * kPageBytes).level == PageSize::k2M);
                 CHECK(x.chldcnt() == chld - 1);
               },
               1});
  // TDH.MEM.SEPT.RD (A2.3): any state; RDX = level [2:0] and the A2.2 "pub" state [15:8].
  c.push_back({"SEPT.RD", [](const Row& r) { return ok(r.state); },
               [](Cell& x) { return x.e.m.mem_sept_rd(x.td.tdr, kG, x.row.level); },
               [](Cell& x, const TdxResult& r, uint64_t) {
                 CHECK((r.rdx & 7) == x.row.level);
                 CHECK(((r.rdx >> 8) & 0xFF) == pub(x.row.state));
               }});
  // TDG.MEM.PAGE.ACCEPT 4K at kG (A8): PENDING -> MAPPED (zeroed); an accepted leaf at or above
  // the level -> PAGE_ALREADY_ACCEPTED; FREE, blocked, a larger PENDING leaf or a missing table ->
  // EPT-violation TD exit.
  c.push_back({"ACCEPT 4K",
               [](const Row& r) {
                 if (r.level == 0) {
                   if (r.state == SeptState::kPending) return ok(SeptState::kMapped);
                   if (r.state == SeptState::kMapped) return err(with_level(kAlreadyAccepted, 0));
                   return td_exit();
                 }
                 if (r.state == SeptState::kMapped) return err(with_level(kAlreadyAccepted, 1));
                 // NL_MAPPED full: the level-0 entry is PENDING.
                 if (r.state == SeptState::kNlMapped && r.full)
                   return Expect{true, kSuccess, false, SeptState::kInvalid};
                 // ASSUMED for NL_BLOCKED: the walk stops at the blocked table entry (as for AUG).
                 return td_exit();
               },
               [](Cell& x) {
                 x.e.enter(x.td);
                 return x.e.m.tdg_mem_page_accept(x.td.vcpus[0], kG, PageSize::k4K);
               },
               [](Cell& x, const TdxResult&, uint64_t) {
                 CHECK(x.e.state(x.td, kG, 0) == SeptState::kMapped);
                 CHECK(x.e.m.stats().pages_zeroed == x.before.pages_zeroed + 1);  // A8: zeroed
               },
               0});
  // TDG.MEM.PAGE.ACCEPT 2M at kG (A8): a non-leaf non-FREE entry at the level (incl. the level-1
  // entry above every 4 KiB row) -> PAGE_SIZE_MISMATCH | level.
  c.push_back({"ACCEPT 2M",
               [](const Row& r) {
                 if (r.level == 0 || non_leaf(r.state)) return err(with_level(kSizeMismatch, 1));
                 if (r.state == SeptState::kPending) return ok(SeptState::kMapped);
                 if (r.state == SeptState::kMapped) return err(with_level(kAlreadyAccepted, 1));
                 return td_exit();
               },
               [](Cell& x) {
                 x.e.enter(x.td);
                 return x.e.m.tdg_mem_page_accept(x.td.vcpus[0], kG, PageSize::k2M);
               },
               [](Cell& x, const TdxResult&, uint64_t) {
                 // A8: 2 MiB zeroed 4 KiB at a time, ACCEPT_COUNTER back to 0 when done.
                 CHECK(x.e.m.stats().pages_zeroed == x.before.pages_zeroed + 512);
                 CHECK(x.e.m.sept_entry(x.td.tdr, kG, 1).entry.accept_counter == 0);
               },
               1});
  return c;
}

std::vector<Col> initialized_cols() {
  std::vector<Col> c;
  // TDH.MEM.PAGE.ADD (A2.3): FREE 4 KiB -> MAPPED, PAMT PT_REG, chldcnt++, one MRTD block. The
  // walk must reach level 0 (A4): a missing table or a 2 MiB leaf -> EPT_WALK_FAILED.
  c.push_back({"PAGE.ADD",
               [](const Row& r) {
                 if (r.level == 1) return err(kWalkFailed);
                 return r.state == SeptState::kFree ? ok(SeptState::kMapped) : err(kStateIncorrect);
               },
               [](Cell& x) {
                 x.data = x.e.page();
                 return x.e.m.mem_page_add(x.td.tdr, kG, x.data, x.e.page());
               },
               [](Cell& x, const TdxResult&, uint64_t chld) {
                 CHECK(x.pt(x.data) == PageType::kReg);
                 CHECK(x.chldcnt() == chld + 1);
                 CHECK(x.e.m.stats().sha384_blocks == x.before.sha384_blocks + 1);  // 128 B block
                 CHECK(x.e.m.stats().pages_copied == x.before.pages_copied + 1);
               },
               0});
  // TDH.MR.EXTEND (A2.3): MAPPED; a walk failure (FREE at or above the level) -> NOT_PRESENT|RCX.
  c.push_back({"MR.EXTEND",
               [](const Row& r) {
                 if (r.state == SeptState::kMapped) return ok(SeptState::kMapped);
                 if (r.state == SeptState::kFree) return err(kNotPresentRcx);
                 return err(kNotPresentRcx);  // ASSUMED, see kNotPresentRcx
               },
               [](Cell& x) { return x.e.m.mr_extend(x.td.tdr, kG); },
               [](Cell& x, const TdxResult&, uint64_t) {
                 // A2.3: one header block, then 2 x 128 B data blocks.
                 CHECK(x.e.m.stats().sha384_blocks == x.before.sha384_blocks + 3);
               },
               0});
  // TDH.MEM.PAGE.REMOVE before FINALIZE (A2.3 last bullet): no BLOCK/TRACK precondition.
  c.push_back(
      {"PAGE.REMOVE",
       [](const Row& r) { return leaf(r.state) ? ok(SeptState::kFree) : err(kStateIncorrect); },
       [](Cell& x) {
         return x.e.m.mem_page_remove(x.td.tdr, kG, x.row.level ? PageSize::k2M : PageSize::k4K);
       },
       [](Cell& x, const TdxResult& r, uint64_t chld) {
         CHECK(r.rcx == x.data.value());
         CHECK(x.pt(x.data) == PageType::kNda);
         CHECK(x.chldcnt() == chld - (x.row.level ? 512 : 1));
       }});
  // TDH.MEM.RANGE.UNBLOCK before FINALIZE: no tracking needed (A2.3 last bullet).
  c.push_back({"RANGE.UNBLOCK",
               [](const Row& r) {
                 if (r.state == SeptState::kBlocked) return ok(SeptState::kMapped);
                 if (r.state == SeptState::kPendingBlocked) return ok(SeptState::kPending);
                 return err(kStateIncorrect);
               },
               [](Cell& x) { return x.e.m.mem_range_unblock(x.td.tdr, kG, x.row.level); },
               nullptr});
  return c;
}

// Runs every applicable cell of rows x cols; returns the number of cells run.
unsigned run_matrix(const char* matrix, const std::vector<Row>& rows, const std::vector<Col>& cols,
                    bool runnable) {
  unsigned n = 0;
  for (const Row& row : rows) {
    for (const Col& col : cols) {
      const Expect want = col.expect(row);
      if (!want.applies) continue;
      ++n;
      INFO(matrix << " | row " << row.name << " | col " << col.name);
      Cell x(row, runnable);
      const uint64_t chld = x.chldcnt();
      x.before = x.e.m.stats();
      const TdxResult r = col.call(x);
      if (want.td_exit) {
        CHECK(r.outcome == GuestOutcome::kTdExit);
        CHECK(r.exit.reason == TdExitReason::kEptViolation);
        continue;
      }
      CHECK(st(r.status) == st(want.status));
      if (r.outcome == GuestOutcome::kTdExit) FAIL_CHECK("unexpected TD exit");
      if (want.status != kSuccess) {
        // A refused leaf leaves the entry as it was.
        CHECK(x.e.state(x.td, kG, row.level) == row.state);
        // A2.2: on EPT_ENTRY_STATE_INCORRECT, RDX = level [2:0] and the "pub" state [15:8] of
        // the entry the leaf acted on (checked where that entry is the row's).
        const unsigned lvl = col.level < 0 ? row.level : static_cast<unsigned>(col.level);
        if (want.status == kStateIncorrect && lvl == row.level) {
          CHECK((r.rdx & 7) == lvl);
          CHECK(((r.rdx >> 8) & 0xFF) == pub(row.state));
        }
        continue;
      }
      if (want.after != SeptState::kInvalid) {
        CHECK(name_of(x.e.state(x.td, kG, row.level)) == name_of(want.after));
      }
      if (r.ok() && col.on_success) col.on_success(x, r, chld);
    }
  }
  return n;
}

}  // namespace

TEST_CASE(
    "tdx state matrix: every S-EPT leaf against every state of a RUNNABLE TD (A2.3, A6, A8)") {
  const unsigned n = run_matrix("runnable", runnable_rows(), runnable_cols(), true);
  CHECK(n == 7 * 8 + 13 * 13);  // 4 KiB rows skip the five level >= 1 columns
}

TEST_CASE("tdx state matrix: PAGE.ADD, MR.EXTEND and the untracked rules on an INITIALIZED TD") {
  const unsigned n = run_matrix("initialized", initialized_rows(), initialized_cols(), false);
  CHECK(n == 7 * 4);
}

// ---- Op-state gating (A2.3 last bullets, A9) ----
//
// PAGE.ADD, MR.EXTEND and MR.FINALIZE only in OP_STATE_INITIALIZED; AUG in {INITIALIZED,
// RUNNABLE} (the migration states of A2.3 are not modelled); PHYMEM.PAGE.RECLAIM only once the
// owner TD is in TD_TEARDOWN (A9 "reclaim" row: else LIFECYCLE_STATE_INCORRECT).
namespace {

// ASSUMED values (the spec names the gating but not the status): a leaf outside its op states
// returns TDX_OP_STATE_INCORRECT 0xC000060800000000 (the model's value); a TD past VPFLUSHDONE
// (lifecycle BLOCKED/TEARDOWN) fails the TD-state check first with TDX_TD_KEYS_NOT_CONFIGURED
// 0x8000081000000000 (the model's check order: lifecycle before op state).
constexpr uint64_t kOpStateIncorrect = 0xC000060800000000ull;
constexpr uint64_t kKeysNotConfigured = 0x8000081000000000ull;
constexpr uint64_t kLifecycleIncorrect = 0xC000060700000000ull;  // A4

enum class Op { kUninitialized, kInitialized, kRunnable, kTeardown };
const char* op_name(Op o) {
  switch (o) {
    case Op::kUninitialized:
      return "UNINITIALIZED";
    case Op::kInitialized:
      return "INITIALIZED";
    case Op::kRunnable:
      return "RUNNABLE";
    default:
      return "TEARDOWN";
  }
}

constexpr Gpa kAddGpa = kG;                   // FREE 4 KiB entry (levels above present)
constexpr Gpa kExtGpa = kG + kPageBytes;      // MAPPED by PAGE.ADD before FINALIZE
constexpr Gpa kAugGpa = kG + 2 * kPageBytes;  // FREE 4 KiB entry

struct OpCell {
  Env e;
  Td td;
  explicit OpCell(Op op) {
    if (op == Op::kUninitialized) {  // MNG.CREATE, KEY.CONFIG, ADDCX; no MNG.INIT
      td.hkid = 20;
      td.tdr = e.page();
      REQUIRE_OK(e.m.mng_create(td.tdr, 20, kTdOwner));
      REQUIRE_OK(e.m.mng_key_config(td.tdr, 0));
      for (unsigned i = 0; i < e.m.config().num_tdcs_pages; ++i) {
        td.tdcx.push_back(e.page());
        REQUIRE_OK(e.m.mng_addcx(td.tdr, td.tdcx.back()));
      }
      REQUIRE(e.m.td_info(td.tdr)->op_state == OpState::kUninitialized);
      return;
    }
    td = e.build_td(20, 1, false);
    e.ensure_sept(td, kG);
    REQUIRE_OK(e.m.mem_page_add(td.tdr, kExtGpa, e.page(), e.page()));
    if (op == Op::kInitialized) return;
    REQUIRE_OK(e.m.mr_finalize(td.tdr));
    if (op == Op::kRunnable) return;
    // Teardown (A9, A10.4); the vCPU never entered, so no VP.FLUSH is needed.
    REQUIRE_OK(e.m.mng_vpflushdone(td.tdr));
    REQUIRE_OK(e.m.phymem_cache_wb(0));
    REQUIRE_OK(e.m.mng_key_freeid(td.tdr));
    REQUIRE(e.m.td_info(td.tdr)->lifecycle == TdLifecycle::kTeardown);
  }
};

struct OpCol {
  const char* name;
  uint64_t want[4];  // by Op
  std::function<TdxResult(OpCell&)> call;
};

}  // namespace

TEST_CASE("tdx state matrix: op-state gating of PAGE.ADD, MR.EXTEND, FINALIZE, AUG, RECLAIM") {
  constexpr uint64_t O = kOpStateIncorrect, K = kKeysNotConfigured, L = kLifecycleIncorrect;
  const std::vector<OpCol> cols = {
      //                 UNINIT INIT     RUNNABLE TEARDOWN
      {"PAGE.ADD",
       {O, kSuccess, O, K},
       [](OpCell& x) { return x.e.m.mem_page_add(x.td.tdr, kAddGpa, x.e.page(), x.e.page()); }},
      {"MR.EXTEND",
       {O, kSuccess, O, K},
       [](OpCell& x) { return x.e.m.mr_extend(x.td.tdr, kExtGpa); }},
      {"MR.FINALIZE", {O, kSuccess, O, K}, [](OpCell& x) { return x.e.m.mr_finalize(x.td.tdr); }},
      {"PAGE.AUG",
       {O, kSuccess, kSuccess, K},
       [](OpCell& x) { return x.e.m.mem_page_aug(x.td.tdr, kAugGpa, PageSize::k4K, x.e.page()); }},
      {"PHYMEM.PAGE.RECLAIM",
       {L, L, L, kSuccess},
       [](OpCell& x) { return x.e.m.phymem_page_reclaim(x.td.tdcx[0]); }},
  };
  unsigned n = 0;
  for (Op op : {Op::kUninitialized, Op::kInitialized, Op::kRunnable, Op::kTeardown}) {
    for (const OpCol& col : cols) {
      INFO("op state " << op_name(op) << " | col " << col.name);
      ++n;
      OpCell x(op);
      const TdxResult r = col.call(x);
      CHECK(st(r.status) == st(col.want[static_cast<int>(op)]));
      if (r.ok() && col.want[static_cast<int>(op)] == kSuccess &&
          std::string(col.name) == "PHYMEM.PAGE.RECLAIM") {
        CHECK(x.e.m.pamt_leaf(x.td.tdcx[0]).entry.type() == PageType::kNda);
      }
      if (r.ok() && std::string(col.name) == "MR.FINALIZE") {
        CHECK(x.e.m.td_info(x.td.tdr)->op_state == OpState::kRunnable);
      }
    }
  }
  CHECK(n == 4 * 5);
}
