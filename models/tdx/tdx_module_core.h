// The Intel TDX module as a functional model (ARCHITECTURE.md principle 1): the SEAMCALL leaves
// the host VMM calls, the TDCALL leaves a guest TD calls, and the module's EPT-violation and
// TD-exit paths, over the hw structures they manage (PhysMem frames, the Secure EPT, the PAMT,
// KeyIDs). Every rule cites docs/reference/tdx-snp.md PART A; docs/tdx-model.md explains the model,
// its parameters and its simplifications.
//
// (The file is not called tdx_module.{h,cpp}: the build puts every *_module.cpp into the SystemC
// shell, and this is the plain-C++ core.)
//
// ---- Calls, results, statuses ----
// A leaf is a method named after it (mem_page_aug = TDH.MEM.PAGE.AUG) taking the ABI operands as
// typed values in ABI register order. It returns a TdxResult: RAX as `status` (tdx_status.h: code
// in the high half, the id of the failing operand in the low half), the output registers the leaf
// defines, what it cost in cycles, and, for the guest side, what happens to the vCPU (`outcome`).
// The checks run in the order the module runs them (A2.3, A4, A7, A9), so the first failing check
// decides the status and its operand id, as on hardware.
//
// ---- Operations in flight: tickets (A5) ----
// The module never waits: every lock is a try-lock and a conflict returns TDX_OPERAND_BUSY (or
// TDX_OPERAND_BUSY_HOST_PRIORITY, TDX_PREVIOUS_TLB_EPOCH_BUSY) with the id of the contended
// resource. In a single-threaded model two calls overlap only if one is "in flight", so every leaf
// also exists split in two:
//
//   TdxTicket t = m.begin_mem_page_aug(...);   // runs the checks in order and takes the locks
//   ...                                         // other calls now see those locks held
//   TdxResult r = m.complete(std::move(t));     // applies the change (if every check passed)
//                                               // and releases the locks
//
// begin_*() stops at the first failing check; the locks taken before it stay held until
// complete(), which then reports the failure (this is the window in which a host SEAMCALL that
// failed after taking an S-EPT entry lock still holds it). A lock that could not be taken is not
// held. Tickets of different calls may complete in any order; a ticket destroyed without
// complete() releases its locks and changes nothing. The one-call form m.mem_page_aug(...) is
// complete(begin_mem_page_aug(...)). A timed shell advances time by result.cost between the two
// halves, or after the one-call form.
//
// Locks modelled: the PAMT entry locks (the TDR's own lock is its PAMT entry's, taken SHARED or
// EXCLUSIVE per leaf as A5 lists; a PAMT walk takes the 1G/2M entries SHARED), the S-EPT tree lock,
// the S-EPT entry lock (the TDEL bit, with TDHP, in the entry in memory), the TD epoch lock, the
// KOT lock and the per-package CACHE.WB mutex. A vCPU inside the TD holds its TDVPR exclusively
// (so a VP.FLUSH or second VP.ENTER of a running vCPU is BUSY). Not modelled: the TDCS op-state
// lock, the RTMR lock, migration locks.
//
// ---- Guest side ----
// vp_enter() puts a vCPU in the TD (it stays in until a TD exit). While it is in, the guest model
// calls the TDCALLs (tdg_mem_page_accept, tdg_vp_vmcall) and, when a hardware walk of the S-EPT
// faults, ept_violation(). An outcome of kTdExit means the module has already performed the TD
// exit (the vCPU is out, its epoch reference dropped, A6); the host sees result.exit. td_exit()
// models an asynchronous exit (interrupt, IPI kick), machine_check() a poison consumption (A9).
//
// ---- Memory ----
// Module writes to TD pages go to PhysMem with the TD's HKID as key id, the TD-owner bit set, the
// poison cleared (MOVDIR64B writes whole lines, A9) and the TD's principal as label. S-EPT pages
// are real frames marked as tables; the hardware walker walks them through sept_walk_root().
// The module reads and writes frame data as a firmware Initiator (hw/memory/initiator.h) with a
// chain of its own, empty: SEAM-mode accesses are not the host's, so the platform's host checks
// do not apply to them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "hw/base/addr.h"
#include "hw/base/cycles.h"
#include "hw/base/page_size.h"
#include "hw/base/principal.h"
#include "hw/base/result.h"
#include "hw/base/stat_visitor.h"
#include "hw/base/state_machine.h"
#include "hw/memory/initiator.h"
#include "hw/memory/phys_mem.h"
#include "hw/mmu/pte_format.h"
#include "hw/mmu/sept.h"
#include "hw/mmu/walker.h"
#include "models/tdx/pamt.h"
#include "models/tdx/sha384.h"
#include "models/tdx/tdx_costs.h"
#include "models/tdx/tdx_leaf.h"
#include "models/tdx/tdx_locks.h"
#include "models/tdx/tdx_status.h"

namespace cvmsim::tdx {

// ---- States (A9, A2.3) ----

// TDR.LIFECYCLE_STATE (A9).
enum class TdLifecycle : uint8_t {
  kHkidAssigned = 0,
  kKeysConfigured = 1,
  kBlocked = 2,
  kTeardown = 3
};
// TDCS.OP_STATE (A2.3, M op_state_lookup.h); migration states are not modelled.
enum class OpState : uint8_t { kUninitialized = 0, kInitialized = 1, kRunnable = 2 };
// KOT entry state (A9).
enum class HkidState : uint8_t { kFree = 0, kAssigned = 1, kFlushed = 2, kReserved = 3 };

std::string_view name_of(TdLifecycle s);
std::string_view name_of(OpState s);
std::string_view name_of(HkidState s);

// ---- Configuration ----

struct TdxConfig {
  // Memory the module manages (A7). Pages outside every TDMR are rejected with
  // TDX_OPERAND_ADDR_RANGE_ERROR. Must lie inside the PhysMem.
  std::vector<Tdmr> tdmrs;
  // Physical address width and the KeyID bits just below it (A1: HKID = (pa & mask) >> start).
  unsigned max_pa = 52;
  unsigned hkid_bits = 6;
  // The TDX-private KeyID range (A1; Linux prints e.g. "private KeyID range: [16, 64)").
  KeyId private_hkid_min = 16;
  KeyId private_hkid_max = 63;
  // The global KeyID the host kernel keeps for PAMT and TDRs: the first private one (A1). Its KOT
  // entry is HKID_RESERVED, so no TD gets it.
  KeyId global_hkid = 16;
  // Packages: TDH.MNG.KEY.CONFIG and TDH.PHYMEM.CACHE.WB run once per package (A9).
  unsigned num_packages = 1;
  // TDCS pages a TD needs before TDH.MNG.INIT (M td_control_structures.h MIN_NUM_TDCS_PAGES = 6
  // in TDX 1.5) and which of them is the S-EPT root (SEPT_ROOT_PAGE_INDEX = 3).
  unsigned num_tdcs_pages = 6;
  unsigned sept_root_tdcs_index = 3;
  // TDVPS pages per vCPU, the TDVPR included (TDH.VP.ADDCX adds the others) [unverified: the
  // number is enumerated by the module; 6 assumed].
  unsigned num_tdvps_pages = 6;
  // CACHE.WB work units: interruptible between units (A9 "cached sub-blocks") [unverified count].
  unsigned cached_sub_blocks = 16;
  // TDX_FEATURES0.SKIP_PHYMEM_CACHE_WB (A9: newer modules make CACHE.WB a no-op).
  bool skip_phymem_cache_wb = false;
  // A modelled erratum (not real behaviour; docs/tdx-model.md "HKID reuse"): TDH.MNG.KEY.FREEID
  // frees the HKID without checking that TDH.PHYMEM.CACHE.WB ran on every package (A9, T6), so
  // a KVM that skips CACHE.WB can hand the HKID to the next TD while lines tagged with it are
  // still cached. Set by platform.tdx.hkid_reuse = unsafe_no_flush.
  bool erratum_freeid_ignores_cache_wb = false;
  TdxCosts costs;
};

// TD_PARAMS of TDH.MNG.INIT, reduced to what memory isolation needs.
inline constexpr uint64_t kTdAttrDebug = 1ull << 0;
inline constexpr uint64_t kTdAttrSeptVeDisable = 1ull << 28;  // A8: Linux guests require it
struct TdParams {
  uint64_t attributes = kTdAttrSeptVeDisable;
  unsigned max_vcpus = 1;
  unsigned sept_levels = 4;  // 4 (GPAW 48, SHARED = bit 47) or 5
  bool gpaw52 = false;       // GPAW 52 (SHARED = bit 51); needs 5 levels (A1)
};

enum class CacheWbCmd : uint8_t { kStart = 0, kResume = 1 };

// ---- Guest-side ABI pieces (A8) ----

inline constexpr uint64_t kTdvmcallMapGpa = 0x10001;  // R11 of TDG.VP.VMCALL<MapGPA>
namespace tdvmcall_status {                           // R10 on return from a TDVMCALL (GHCI; A8)
inline constexpr uint64_t kSuccess = 0;
inline constexpr uint64_t kRetry = 1;
inline constexpr uint64_t kInvalidOperand = 0x8000000000000000ull;
inline constexpr uint64_t kAlignError = 0x8000000000000002ull;
inline constexpr uint64_t kSubfuncUnsupported = 0x8000000000000003ull;
}  // namespace tdvmcall_status

// GPRs of a TDG.VP.VMCALL (R10 = 0 standard; R11 sub-function; R12.. arguments).
struct TdvmcallArgs {
  uint64_t r10 = 0, r11 = 0, r12 = 0, r13 = 0, r14 = 0, r15 = 0;
};

// What the host VMM should answer to MapGPA (R10, and R11 = resume GPA on RETRY), per the checks
// KVM makes (L-kvm-tdx tdx_map_gpa): 4 KiB-aligned start and size, non-zero size, no wrap, the
// whole range below the GPA width and on one side of the SHARED bit. The module itself does not
// check: it forwards every TDVMCALL to the host.
uint64_t check_map_gpa(Gpa start, uint64_t size, unsigned shared_bit);

enum class GuestOutcome : uint8_t {
  kNone,          // a SEAMCALL (host side)
  kReturn,        // the TDCALL returns to the guest with `status`
  kInterrupted,   // ACCEPT 2 MiB stopped for an interrupt: progress saved, the guest re-issues it
  kTdExit,        // the vCPU left the TD; `exit` tells the host why
  kInjectVe,      // EPT violation on a PENDING page: #VE injected, no host involvement (A8)
  kInjectPfRsvd,  // EPT violation on bits above the SHARED bit: #PF(PFEC.RSVD) (A1)
};
std::string_view name_of(GuestOutcome o);

enum class TdExitReason : uint8_t { kNone, kEptViolation, kTdvmcall, kAsync, kFatal };
std::string_view name_of(TdExitReason r);

// Extended exit qualification type of an EPT-violation TD exit [values unverified: taken from
// KVM's TDX_EXT_EXIT_QUAL_TYPE_ACCEPT = 1, _PENDING_EPT_VIOLATION = 6].
enum class EeqType : uint8_t { kNone = 0, kAccept = 1, kPendingEptViolation = 6 };

struct TdExit {
  TdExitReason reason = TdExitReason::kNone;
  Gpa gpa;              // EPT violation: the faulting GPA (S bit included)
  bool shared = false;  // the GPA had the SHARED bit set
  bool write = false;
  unsigned level = 0;  // ACCEPT: the level the guest asked for
  EeqType eeq = EeqType::kNone;
  SeptState sept_state = SeptState::kFree;  // private GPA: state of the entry the walk ended at
  unsigned sept_level = 0;                  // ... and its level
  uint64_t size = 0;                        // kTdvmcall MapGPA: R13, the size in bytes
  TdvmcallArgs vmcall;                      // kTdvmcall: the guest's registers
};

// ---- Results ----

struct TdxResult {
  Leaf leaf = Leaf::kCount;
  uint64_t status = status::kSuccess;         // RAX
  uint64_t rcx = 0, rdx = 0, r8 = 0, r9 = 0;  // outputs; each leaf documents its own
  Cycles cost;
  GuestOutcome outcome = GuestOutcome::kNone;
  TdExit exit;             // outcome == kTdExit
  bool flush_tlb = false;  // VP.ENTER: the module did INVEPT (the TD epoch moved, A6)

  bool ok() const { return status == status::kSuccess; }
  bool is_error() const { return tdx::is_error(status); }
  uint64_t code() const { return status_code(status); }
  uint32_t operand() const { return status_operand(status); }
  Status as_status() const { return to_status(status); }
};

// ---- Tickets ----

class TdxModule;

// A lock an operation in flight holds.
struct TdxHeldLock {
  enum Kind : uint8_t { kPamt, kSeptTree, kSeptEntry, kEpoch, kKot, kWbt };
  Kind kind = kPamt;
  LockMode mode = LockMode::kShared;
  Pfn pfn;                         // kPamt: entry base; kSeptTree/kEpoch: the TDR
  PageSize level = PageSize::k4K;  // kPamt
  Hpa entry;                       // kSeptEntry: address of the S-EPT entry
  unsigned pkg = 0;                // kWbt
};

class TdxTicket {
 public:
  TdxTicket() = default;
  TdxTicket(TdxTicket&& o) noexcept;
  TdxTicket& operator=(TdxTicket&& o) noexcept;
  TdxTicket(const TdxTicket&) = delete;
  TdxTicket& operator=(const TdxTicket&) = delete;
  ~TdxTicket();  // abandons: releases the locks, applies nothing

  Leaf leaf() const { return result_.leaf; }
  bool pending() const { return module_ != nullptr; }
  // The status begin decided: kSuccess means complete() applies the change.
  uint64_t status() const { return result_.status; }
  // What begin charged: the time the call runs with its locks held before complete() (a timed
  // shell lets it pass between the two halves).
  Cycles cost() const { return result_.cost; }
  const std::vector<TdxHeldLock>& held() const { return held_; }

 private:
  friend class TdxModule;
  TdxModule* module_ = nullptr;
  TdxResult result_;
  std::vector<TdxHeldLock> held_;
  std::function<void(TdxTicket&)> commit_;  // the change, run by complete()
  // Transition coverage (tdx_machines.h): the S-EPT entry the call reached and its state then,
  // the TD it named and its state then; complete() records (from, leaf, outcome, to).
  struct Coverage {
    Hpa sept_entry;
    Pfn tdr;
    uint8_t sept_from = 0;
    uint8_t td_from = 0;
    uint8_t hkid_from = 0;
    KeyId hkid = 0;
    bool sept = false;
    bool td = false;
    bool kot = false;
  } cov_;
};

// ---- Inspection (for checkers of T1-T6 and for tests) ----

struct TdInfo {
  Hpa tdr;
  Principal principal;
  KeyId hkid = 0;
  TdLifecycle lifecycle = TdLifecycle::kHkidAssigned;
  OpState op_state = OpState::kUninitialized;
  bool fatal = false;
  uint64_t pkg_config_bitmap = 0;
  uint64_t chldcnt = 0;  // 4 KiB-equivalents owned (A7)
  unsigned num_tdcx = 0;
  uint64_t attributes = 0;
  unsigned sept_levels = 0;
  bool gpaw52 = false;
  unsigned num_vcpus = 0;        // initialised vCPUs
  unsigned num_assoc_vcpus = 0;  // vCPUs associated with an LP (A9 VPFLUSHDONE)
  uint64_t td_epoch = 0;
  uint16_t refcount[2] = {0, 0};
  bool finalized = false;
  Sha384::Digest mrtd{};  // valid once finalized
  Hpa sept_root;          // TDCS page SEPT_ROOT_PAGE_INDEX (0 before it is added)
  Gpa shared_bit;         // the SHARED bit as a GPA (A1)
};

struct VcpuInfo {
  Hpa tdvpr;
  Hpa tdr;
  unsigned num_tdvps_pages = 0;
  bool initialized = false;
  bool in_td = false;
  int lp = -1;  // associated logical processor, -1 if none
  uint64_t vcpu_epoch = 0;
};

struct KotEntry {
  HkidState state = HkidState::kFree;
  uint64_t wbinvd_bitmap = 0;  // packages still to CACHE.WB (A9)
  Hpa tdr;                     // the TD holding it (ASSIGNED/FLUSHED)
};

// A Secure-EPT lookup: the entry a software walk ends at.
struct SeptLookup {
  bool found = false;  // false: no such TD or no S-EPT root yet
  SeptEntry entry;     // the entry where the walk stopped (level == requested, a leaf, or RWX=0)
  Hpa entry_hpa;       // its address
};

class TdxModule {
 public:
  struct Stats {
    uint64_t calls[kNumLeaves] = {};
    uint64_t errors[kNumLeaves] = {};  // results with bit 63 set
    uint64_t busy[kNumLeaves] = {};    // TDX_OPERAND_BUSY*, PREVIOUS_TLB_EPOCH_BUSY
    uint64_t cycles[kNumLeaves] = {};
    uint64_t tds_created = 0;
    uint64_t tds_reclaimed = 0;
    uint64_t epochs = 0;  // successful TDH.MEM.TRACK
    uint64_t invepts = 0;
    uint64_t ve_injected = 0;
    uint64_t td_exits = 0;
    uint64_t td_entries = 0;
    uint64_t pages_zeroed = 0;  // 4 KiB pages written with MOVDIR64B (ACCEPT, SEPT.ADD, ...)
    uint64_t pages_copied = 0;  // PAGE.ADD
    uint64_t sha384_blocks = 0;
    uint64_t accept_interrupts = 0;
    uint64_t host_priority_sets = 0;  // host entry-lock failures that set TDHP
  };

  TdxModule(PhysMem& mem, TdxConfig config);
  ~TdxModule();
  TdxModule(const TdxModule&) = delete;
  TdxModule& operator=(const TdxModule&) = delete;

  const TdxConfig& config() const { return cfg_; }
  PhysMem& mem() { return mem_; }

  // An HPA with KeyID bits (A1), as TDH.PHYMEM.PAGE.WBINVD takes it.
  Hpa with_hkid(Hpa a, KeyId k) const;
  KeyId hkid_of(Hpa a) const;

  // ======== SEAMCALLs: TD build (A10.1) ========
  // TDH.MNG.CREATE(RCX = TDR page, RDX = HKID). `owner` is the TD's principal (the label of every
  // page the module writes for it). KOT: FREE -> ASSIGNED; lifecycle HKID_ASSIGNED (A9).
  TdxTicket begin_mng_create(Hpa tdr, KeyId hkid, Principal owner);
  // TDH.MNG.KEY.CONFIG(RCX = TDR) on an LP of package `pkg`; KEYS_CONFIGURED after all packages.
  TdxTicket begin_mng_key_config(Hpa tdr, unsigned pkg);
  // TDH.MNG.ADDCX(RCX = TDCX page, RDX = TDR).
  TdxTicket begin_mng_addcx(Hpa tdr, Hpa tdcx);
  // TDH.MNG.INIT(RCX = TDR, RDX = TD_PARAMS). op state UNINITIALIZED -> INITIALIZED.
  TdxTicket begin_mng_init(Hpa tdr, const TdParams& params);
  // TDH.VP.CREATE(RCX = TDVPR page, RDX = TDR).
  TdxTicket begin_vp_create(Hpa tdr, Hpa tdvpr);
  // TDH.VP.ADDCX(RCX = TDVPX page, RDX = TDVPR).
  TdxTicket begin_vp_addcx(Hpa tdvpr, Hpa tdvpx);
  // TDH.VP.INIT(RCX = TDVPR).
  TdxTicket begin_vp_init(Hpa tdvpr);
  // TDH.MEM.SEPT.ADD(RCX = GPA | level of the parent entry (1 .. levels-1), RDX = TDR,
  // R8 = new S-EPT page). allow_existing: the version-1 "already exists" path (A2.3).
  TdxTicket begin_mem_sept_add(Hpa tdr, Gpa gpa, unsigned level, Hpa page,
                               bool allow_existing = false);
  // TDH.MEM.PAGE.ADD(RCX = GPA, RDX = TDR, R8 = target page, R9 = source page): 4 KiB, copies
  // the source with MOVDIR64B, extends MRTD (A2.3).
  TdxTicket begin_mem_page_add(Hpa tdr, Gpa gpa, Hpa page, Hpa source);
  // TDH.MR.EXTEND(RCX = GPA (256 B aligned), RDX = TDR): 3 SHA-384 blocks (A2.3).
  TdxTicket begin_mr_extend(Hpa tdr, Gpa gpa);
  // TDH.MR.FINALIZE(RCX = TDR): op state -> RUNNABLE, MRTD final.
  TdxTicket begin_mr_finalize(Hpa tdr);

  // ======== SEAMCALLs: runtime memory (A10.2, A10.3) ========
  // TDH.MEM.PAGE.AUG(RCX = GPA | level, RDX = TDR, R8 = page): FREE/REMOVED -> PENDING.
  TdxTicket begin_mem_page_aug(Hpa tdr, Gpa gpa, PageSize size, Hpa page);
  // TDH.MEM.RANGE.BLOCK(RCX = GPA | level, RDX = TDR): PAMT.BEPOCH <- td_epoch.
  TdxTicket begin_mem_range_block(Hpa tdr, Gpa gpa, unsigned level);
  // TDH.MEM.TRACK(RCX = TDR): td_epoch++ (A6).
  TdxTicket begin_mem_track(Hpa tdr);
  // TDH.MEM.RANGE.UNBLOCK(RCX = GPA | level, RDX = TDR).
  TdxTicket begin_mem_range_unblock(Hpa tdr, Gpa gpa, unsigned level);
  // TDH.MEM.PAGE.REMOVE(RCX = GPA | level, RDX = TDR): RCX out = the removed page's HPA.
  TdxTicket begin_mem_page_remove(Hpa tdr, Gpa gpa, PageSize size);
  // TDH.MEM.SEPT.REMOVE(RCX = GPA | level of the parent entry, RDX = TDR): RCX out = the page.
  TdxTicket begin_mem_sept_remove(Hpa tdr, Gpa gpa, unsigned level);
  // TDH.MEM.PAGE.DEMOTE(RCX = GPA | level (2M/1G), RDX = TDR, R8 = new S-EPT page).
  TdxTicket begin_mem_page_demote(Hpa tdr, Gpa gpa, PageSize size, Hpa new_sept_page);
  // TDH.MEM.PAGE.PROMOTE(RCX = GPA | level (2M/1G), RDX = TDR): RCX out = the freed S-EPT page.
  TdxTicket begin_mem_page_promote(Hpa tdr, Gpa gpa, PageSize size);
  // TDH.MEM.SEPT.RD(RCX = GPA | level, RDX = TDR): RCX = architectural entry, RDX = level/state.
  TdxTicket begin_mem_sept_rd(Hpa tdr, Gpa gpa, unsigned level);

  // ======== SEAMCALLs: vCPUs ========
  // TDH.VP.ENTER(RCX = TDVPR) on logical processor `lp`: the vCPU enters the TD (A6 epoch
  // refcount; flush_tlb when the epoch moved since its last entry on this LP).
  TdxTicket begin_vp_enter(Hpa tdvpr, unsigned lp);
  // TDH.VP.FLUSH(RCX = TDVPR) on `lp`: dissociates the vCPU from the LP (A9).
  TdxTicket begin_vp_flush(Hpa tdvpr, unsigned lp);

  // ======== SEAMCALLs: teardown, keys, physical pages (A9, A10.4) ========
  TdxTicket begin_mng_vpflushdone(Hpa tdr);
  TdxTicket begin_phymem_cache_wb(unsigned pkg, CacheWbCmd cmd, bool interrupt_pending = false);
  TdxTicket begin_mng_key_freeid(Hpa tdr);
  TdxTicket begin_mng_key_reclaimid();
  // TDH.PHYMEM.PAGE.RECLAIM(RCX = page): RCX out = old page type, RDX = owner TDR, R8 = level.
  TdxTicket begin_phymem_page_reclaim(Hpa page);
  // TDH.PHYMEM.PAGE.WBINVD(RCX = page HPA with its KeyID bits).
  TdxTicket begin_phymem_page_wbinvd(Hpa page_with_hkid);
  // TDH.PHYMEM.PAGE.RDMD(RCX = page): RCX = type, RDX = owner, R8 = level, R9 = BEPOCH.
  TdxTicket begin_phymem_page_rdmd(Hpa page);

  // ======== TDCALLs and module paths, by a vCPU inside the TD (A8) ========
  // TDG.MEM.PAGE.ACCEPT(RCX = GPA | level). interrupt_pending: an interrupt is pending for the
  // vCPU, so a 2 MiB accept stops after the next 4 KiB chunk (outcome kInterrupted).
  TdxTicket begin_tdg_mem_page_accept(Hpa tdvpr, Gpa gpa, PageSize size,
                                      bool interrupt_pending = false);
  // TDG.VP.VMCALL: forwarded to the host as a TD exit (MapGPA: R11 = 0x10001, R12 = GPA,
  // R13 = size).
  TdxTicket begin_tdg_vp_vmcall(Hpa tdvpr, const TdvmcallArgs& args);
  // An EPT violation in the TD (the hardware walk faulted on gpa): inject #VE, #PF(RSVD), or TD
  // exit.
  TdxTicket begin_ept_violation(Hpa tdvpr, Gpa gpa, bool write);
  // An asynchronous TD exit (interrupt, IPI kick): the vCPU leaves the TD.
  TdxTicket begin_td_exit(Hpa tdvpr);

  // Completes a ticket from any begin_*() (see the header comment).
  TdxResult complete(TdxTicket&& t);

  // ---- One-call forms: complete(begin_*(...)) ----
  TdxResult mng_create(Hpa tdr, KeyId hkid, Principal owner) {
    return complete(begin_mng_create(tdr, hkid, owner));
  }
  TdxResult mng_key_config(Hpa tdr, unsigned pkg = 0) {
    return complete(begin_mng_key_config(tdr, pkg));
  }
  TdxResult mng_addcx(Hpa tdr, Hpa tdcx) { return complete(begin_mng_addcx(tdr, tdcx)); }
  TdxResult mng_init(Hpa tdr, const TdParams& p) { return complete(begin_mng_init(tdr, p)); }
  TdxResult vp_create(Hpa tdr, Hpa tdvpr) { return complete(begin_vp_create(tdr, tdvpr)); }
  TdxResult vp_addcx(Hpa tdvpr, Hpa tdvpx) { return complete(begin_vp_addcx(tdvpr, tdvpx)); }
  TdxResult vp_init(Hpa tdvpr) { return complete(begin_vp_init(tdvpr)); }
  TdxResult mem_sept_add(Hpa tdr, Gpa gpa, unsigned level, Hpa page, bool allow_existing = false) {
    return complete(begin_mem_sept_add(tdr, gpa, level, page, allow_existing));
  }
  TdxResult mem_page_add(Hpa tdr, Gpa gpa, Hpa page, Hpa source) {
    return complete(begin_mem_page_add(tdr, gpa, page, source));
  }
  TdxResult mr_extend(Hpa tdr, Gpa gpa) { return complete(begin_mr_extend(tdr, gpa)); }
  TdxResult mr_finalize(Hpa tdr) { return complete(begin_mr_finalize(tdr)); }
  TdxResult mem_page_aug(Hpa tdr, Gpa gpa, PageSize size, Hpa page) {
    return complete(begin_mem_page_aug(tdr, gpa, size, page));
  }
  TdxResult mem_range_block(Hpa tdr, Gpa gpa, unsigned level) {
    return complete(begin_mem_range_block(tdr, gpa, level));
  }
  TdxResult mem_track(Hpa tdr) { return complete(begin_mem_track(tdr)); }
  TdxResult mem_range_unblock(Hpa tdr, Gpa gpa, unsigned level) {
    return complete(begin_mem_range_unblock(tdr, gpa, level));
  }
  TdxResult mem_page_remove(Hpa tdr, Gpa gpa, PageSize size) {
    return complete(begin_mem_page_remove(tdr, gpa, size));
  }
  TdxResult mem_sept_remove(Hpa tdr, Gpa gpa, unsigned level) {
    return complete(begin_mem_sept_remove(tdr, gpa, level));
  }
  TdxResult mem_page_demote(Hpa tdr, Gpa gpa, PageSize size, Hpa new_sept_page) {
    return complete(begin_mem_page_demote(tdr, gpa, size, new_sept_page));
  }
  TdxResult mem_page_promote(Hpa tdr, Gpa gpa, PageSize size) {
    return complete(begin_mem_page_promote(tdr, gpa, size));
  }
  TdxResult mem_sept_rd(Hpa tdr, Gpa gpa, unsigned level) {
    return complete(begin_mem_sept_rd(tdr, gpa, level));
  }
  TdxResult vp_enter(Hpa tdvpr, unsigned lp = 0) { return complete(begin_vp_enter(tdvpr, lp)); }
  TdxResult vp_flush(Hpa tdvpr, unsigned lp = 0) { return complete(begin_vp_flush(tdvpr, lp)); }
  TdxResult mng_vpflushdone(Hpa tdr) { return complete(begin_mng_vpflushdone(tdr)); }
  TdxResult phymem_cache_wb(unsigned pkg = 0, CacheWbCmd cmd = CacheWbCmd::kStart,
                            bool interrupt_pending = false) {
    return complete(begin_phymem_cache_wb(pkg, cmd, interrupt_pending));
  }
  TdxResult mng_key_freeid(Hpa tdr) { return complete(begin_mng_key_freeid(tdr)); }
  TdxResult mng_key_reclaimid() { return complete(begin_mng_key_reclaimid()); }
  TdxResult phymem_page_reclaim(Hpa page) { return complete(begin_phymem_page_reclaim(page)); }
  TdxResult phymem_page_wbinvd(Hpa page_with_hkid) {
    return complete(begin_phymem_page_wbinvd(page_with_hkid));
  }
  TdxResult phymem_page_rdmd(Hpa page) { return complete(begin_phymem_page_rdmd(page)); }
  TdxResult tdg_mem_page_accept(Hpa tdvpr, Gpa gpa, PageSize size, bool interrupt_pending = false) {
    return complete(begin_tdg_mem_page_accept(tdvpr, gpa, size, interrupt_pending));
  }
  TdxResult tdg_vp_vmcall(Hpa tdvpr, const TdvmcallArgs& args) {
    return complete(begin_tdg_vp_vmcall(tdvpr, args));
  }
  TdxResult ept_violation(Hpa tdvpr, Gpa gpa, bool write = false) {
    return complete(begin_ept_violation(tdvpr, gpa, write));
  }
  TdxResult td_exit(Hpa tdvpr) { return complete(begin_td_exit(tdvpr)); }

  // A TD read consumed poison (A9: TD-owner mismatch after a host write): the TD becomes FATAL
  // and, if the vCPU is in the TD, it exits (reason kFatal). VP.ENTER then fails TDX_TD_FATAL.
  TdxResult machine_check(Hpa tdvpr);

  // ---- Inspection (read-only; no statistics, no cost) ----
  std::vector<Hpa> tds() const;
  std::optional<TdInfo> td_info(Hpa tdr) const;
  std::optional<VcpuInfo> vcpu_info(Hpa tdvpr) const;
  std::vector<Hpa> vcpus_of(Hpa tdr) const;
  KotEntry kot(KeyId hkid) const;
  const Pamt& pamt() const { return pamt_; }
  PamtLeaf pamt_leaf(Hpa page) const { return pamt_.leaf(hpa_to_pfn(page)); }
  // The S-EPT entry for gpa at `level` (or where the walk stops above it).
  SeptLookup sept_entry(Hpa tdr, Gpa gpa, unsigned level) const;
  // The S-EPT state of gpa: the entry at the deepest level the walk reaches.
  SeptLookup sept_lookup(Hpa tdr, Gpa gpa) const { return sept_entry(tdr, gpa, 0); }
  // f(Gpa base, const SeptEntry&) for every non-FREE entry, tables before their contents.
  void for_each_sept_entry(Hpa tdr, const std::function<void(Gpa, const SeptEntry&)>& f) const;
  // For the vCPU's hardware walker (hw/mmu/walker.h): the S-EPT root and format.
  std::optional<WalkRoot> sept_walk_root(Hpa tdr) const;
  // A6 is_tlb_tracked for this TD.
  bool tlb_tracked(Hpa tdr, uint64_t bepoch) const;

  const Stats& stats() const { return stats_; }
  void describe_stats(StatVisitor& v) const;

  // Transition coverage (tdx_machines.h, docs/coverage.md): the counts complete() records into,
  // the module's own unless set_coverage names the run's (which must outlive the module's last
  // call); null goes back to the module's own.
  sm::Coverage& coverage() { return *coverage_; }
  const sm::Coverage& coverage() const { return *coverage_; }
  void set_coverage(sm::Coverage* c);

 private:
  struct Td;
  struct Vcpu;
  struct Walk;
  friend class TdxTicket;

  // Ticket plumbing
  TdxTicket start(Leaf leaf, uint64_t entry_cost);
  static bool fail(TdxTicket& t, uint64_t status);
  void release(TdxTicket& t);
  void charge(TdxTicket& t, uint64_t cycles) { t.result_.cost += Cycles(cycles); }

  // Common checks (each returns false after recording the failure in the ticket)
  bool hpa_operand_ok(Hpa a, uint64_t align) const;
  bool check_tdr(TdxTicket& t, Hpa tdr, uint32_t op, LockMode mode, Td** out);
  bool check_td_state(TdxTicket& t, const Td& td, Leaf leaf);
  bool check_page(TdxTicket& t, Hpa a, uint32_t op, PageSize size, LockMode mode,
                  PageType expected);
  bool check_page_info(TdxTicket& t, const Td& td, Gpa gpa, unsigned level, unsigned min_level,
                       unsigned max_level);
  bool gpa_valid_private(const Td& td, Gpa gpa) const;
  bool lock_sept_tree(TdxTicket& t, Td& td, LockMode mode);
  bool walk_to_level(TdxTicket& t, const Td& td, Gpa gpa, unsigned level, Walk* w);
  bool lock_entry_host(TdxTicket& t, Walk* w);
  // The S-EPT leaves' common start: TDR (RDX, shared, A5), TD state and op state, page info
  // (max_level < 0: the TD's top level), private GPA, tree lock, walk to `level`, entry lock.
  bool sept_prologue(TdxTicket& t, Hpa tdr, Leaf leaf, Gpa gpa, unsigned level, unsigned min_level,
                     int max_level, LockMode tree_mode, Td** out, Walk* w);
  bool lock_pamt(TdxTicket& t, Pfn base, PageSize level, LockMode mode, uint32_t op);
  bool check_blocked_table(TdxTicket& t, Td& td, const Walk& w, unsigned level, Pfn* table);
  bool lock_page_metadata(TdxTicket& t, Hpa a, uint32_t op, PageSize size, LockMode mode,
                          bool in_memory, PageSize* reached);
  void set_sept_error_details(TdxTicket& t, uint64_t raw, unsigned level);

  Walk sept_walk(const Td& td, Gpa gpa, unsigned level) const;
  Walk sept_walk_leaf(const Td& td, Gpa gpa) const;
  bool is_tlb_tracked(const Td& td, uint64_t bepoch) const;
  unsigned shared_bit_of(const Td& td) const;

  // Memory writes on behalf of a TD (A9: MOVDIR64B, TD key, owner bit, label)
  void td_frame_meta(Pfn f, const Td& td);
  void zero_td_page(Pfn f, const Td& td);
  void init_sept_page(Pfn f, const Td& td);
  void write_entry(Hpa entry, uint64_t raw) { (void)fw_.write_u64(entry, raw); }
  uint64_t read_entry(Hpa entry) const { return fw_.read_u64(entry); }

  // Guest-side helpers
  Vcpu* vcpu_in_td(TdxTicket& t, Hpa tdvpr);
  void do_td_exit(Vcpu& v, Td& td, const TdExit& e, TdxResult& r);

  Td* td_by_pfn(Pfn tdr);
  const Td* td_by_pfn(Pfn tdr) const;
  void account(const TdxResult& r);
  // Transition coverage (tdx_machines.h): note the entry / TD a call operates on, record at
  // complete().
  void cov_sept(TdxTicket& t, Hpa entry, uint64_t raw);
  void cov_td(TdxTicket& t, const Td& td);
  void cov_kot(TdxTicket& t, KeyId hkid);
  uint8_t td_cov_state(const Td* td) const;
  void record_coverage(const TdxTicket& t, bool committed);
  unsigned status_index(uint64_t status) const;

  PhysMem& mem_;
  // The module's own accesses: SEAM mode, its own (empty) chain. The chain is declared first so
  // that it exists when fw_ takes its address.
  AccessCheckChain seam_checks_;
  Initiator fw_;
  TdxConfig cfg_;
  sm::Coverage own_coverage_;
  sm::Coverage* coverage_ = nullptr;
  sm::Counts *cov_sept_ = nullptr, *cov_td_ = nullptr, *cov_kot_ = nullptr;  // in *coverage_
  Pamt pamt_;
  uint64_t hkid_mask_ = 0;
  unsigned hkid_shift_ = 0;
  uint64_t pkg_config_bitmap_ = 0;
  std::map<uint64_t, std::unique_ptr<Td>> tds_;      // by TDR frame
  std::map<uint64_t, std::unique_ptr<Vcpu>> vcpus_;  // by TDVPR frame
  std::vector<KotEntry> kot_;
  SharexLock kot_lock_;
  struct Wbt {
    bool mutex = false;
    uint64_t intr_point = 0;
    std::vector<KeyId> hkids;  // HKIDs FLUSHED when the current CACHE.WB started
  };
  std::vector<Wbt> wbt_;
  Stats stats_;
  std::vector<uint64_t> status_counts_;
  // Gauges, refreshed by describe_stats' readers through account().
  double pages_by_type_[7] = {};
  double tds_live_ = 0;
  double max_epoch_ = 0;
};

}  // namespace cvmsim::tdx
