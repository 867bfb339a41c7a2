// TdxModule: plumbing (tickets, locks, common checks), TD and vCPU management, keys and physical
// page leaves, inspection and statistics. Memory leaves are in tdx_mem_leaves.cpp, the guest side
// in tdx_guest.cpp.
#include <algorithm>
#include <cassert>
#include <iterator>
#include <string>

#include "hw/mmu/stage2_table.h"
#include "models/tdx/tdx_machines.h"
#include "models/tdx/tdx_module_internal.h"

namespace cvmsim::tdx {

using namespace status;

// ---------------------------------------------------------------------------------------------
// Names

std::string_view name_of(TdLifecycle s) {
  switch (s) {
    case TdLifecycle::kHkidAssigned:
      return "TD_HKID_ASSIGNED";
    case TdLifecycle::kKeysConfigured:
      return "TD_KEYS_CONFIGURED";
    case TdLifecycle::kBlocked:
      return "TD_BLOCKED";
    case TdLifecycle::kTeardown:
      return "TD_TEARDOWN";
  }
  return "?";
}

std::string_view name_of(OpState s) {
  switch (s) {
    case OpState::kUninitialized:
      return "OP_STATE_UNINITIALIZED";
    case OpState::kInitialized:
      return "OP_STATE_INITIALIZED";
    case OpState::kRunnable:
      return "OP_STATE_RUNNABLE";
  }
  return "?";
}

std::string_view name_of(HkidState s) {
  switch (s) {
    case HkidState::kFree:
      return "HKID_FREE";
    case HkidState::kAssigned:
      return "HKID_ASSIGNED";
    case HkidState::kFlushed:
      return "HKID_FLUSHED";
    case HkidState::kReserved:
      return "HKID_RESERVED";
  }
  return "?";
}

std::string_view name_of(GuestOutcome o) {
  switch (o) {
    case GuestOutcome::kNone:
      return "none";
    case GuestOutcome::kReturn:
      return "return";
    case GuestOutcome::kInterrupted:
      return "interrupted";
    case GuestOutcome::kTdExit:
      return "td_exit";
    case GuestOutcome::kInjectVe:
      return "inject_ve";
    case GuestOutcome::kInjectPfRsvd:
      return "inject_pf_rsvd";
  }
  return "?";
}

std::string_view name_of(TdExitReason r) {
  switch (r) {
    case TdExitReason::kNone:
      return "none";
    case TdExitReason::kEptViolation:
      return "ept_violation";
    case TdExitReason::kTdvmcall:
      return "tdvmcall";
    case TdExitReason::kAsync:
      return "async";
    case TdExitReason::kFatal:
      return "fatal";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// Tickets

TdxTicket::TdxTicket(TdxTicket&& o) noexcept
    : module_(o.module_),
      result_(o.result_),
      held_(std::move(o.held_)),
      commit_(std::move(o.commit_)),
      cov_(o.cov_) {
  o.module_ = nullptr;
  o.held_.clear();
  o.commit_ = nullptr;
}

TdxTicket& TdxTicket::operator=(TdxTicket&& o) noexcept {
  if (this != &o) {
    if (module_) module_->release(*this);
    module_ = o.module_;
    result_ = o.result_;
    held_ = std::move(o.held_);
    commit_ = std::move(o.commit_);
    cov_ = o.cov_;
    o.module_ = nullptr;
    o.held_.clear();
    o.commit_ = nullptr;
  }
  return *this;
}

TdxTicket::~TdxTicket() {
  if (module_) module_->release(*this);
}

TdxTicket TdxModule::start(Leaf leaf, uint64_t entry_cost) {
  TdxTicket t;
  t.module_ = this;
  t.result_.leaf = leaf;
  t.result_.cost = Cycles(entry_cost);
  t.result_.outcome =
      info_of(leaf).kind == LeafKind::kSeamcall ? GuestOutcome::kNone : GuestOutcome::kReturn;
  return t;
}

bool TdxModule::fail(TdxTicket& t, uint64_t s) {
  t.result_.status = s;
  t.commit_ = nullptr;
  return false;
}

void TdxModule::release(TdxTicket& t) {
  for (auto it = t.held_.rbegin(); it != t.held_.rend(); ++it) {
    const TdxHeldLock& h = *it;
    switch (h.kind) {
      case TdxHeldLock::kPamt:
        pamt_.unlock(Pamt::LockRef{h.pfn, h.level, h.mode});
        break;
      case TdxHeldLock::kSeptTree:
        if (Td* td = td_by_pfn(h.pfn)) td->sept_lock.release(h.mode);
        break;
      case TdxHeldLock::kEpoch:
        if (Td* td = td_by_pfn(h.pfn)) td->epoch_lock.release(h.mode);
        break;
      case TdxHeldLock::kSeptEntry: {
        // sept_lock_release: clear TDEL (TDHP stays, A5).
        const uint64_t raw = read_entry(h.entry);
        if (raw & SeptBits::kTdel) write_entry(h.entry, raw & ~SeptBits::kTdel);
        break;
      }
      case TdxHeldLock::kKot:
        kot_lock_.release(h.mode);
        break;
      case TdxHeldLock::kWbt:
        if (h.pkg < wbt_.size()) wbt_[h.pkg].mutex = false;
        break;
    }
  }
  t.held_.clear();
  t.commit_ = nullptr;
  t.module_ = nullptr;
}

TdxResult TdxModule::complete(TdxTicket&& t) {
  assert(t.module_ == this && "ticket from another module or already completed");
  if (t.module_ != this) return t.result_;
  const bool commits = static_cast<bool>(t.commit_);
  if (commits) {
    auto commit = std::move(t.commit_);
    t.commit_ = nullptr;
    commit(t);
  }
  record_coverage(t, commits);
  TdxResult r = t.result_;
  release(t);
  account(r);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Transition coverage (tdx_machines.h, docs/coverage.md). The next state is read back after the
// commit, so a model/table mismatch shows up as an undeclared transition.

void TdxModule::cov_sept(TdxTicket& t, Hpa entry, uint64_t raw) {
  t.cov_.sept = true;
  t.cov_.sept_entry = entry;
  t.cov_.sept_from = static_cast<uint8_t>(sept_state_of(raw));
}

void TdxModule::cov_td(TdxTicket& t, const Td& td) {
  if (t.cov_.td) return;
  t.cov_.td = true;
  t.cov_.tdr = td.tdr;
  t.cov_.td_from = td_cov_state(&td);
  cov_kot(t, td.hkid);
}

void TdxModule::cov_kot(TdxTicket& t, KeyId hkid) {
  if (hkid >= kot_.size()) return;
  t.cov_.kot = true;
  t.cov_.hkid = hkid;
  t.cov_.hkid_from = static_cast<uint8_t>(kot_[hkid].state);
}

uint8_t TdxModule::td_cov_state(const Td* td) const {
  TdCovState s = TdCovState::kNoTd;
  if (td) {
    switch (td->lifecycle) {
      case TdLifecycle::kHkidAssigned:
        s = TdCovState::kHkidAssigned;
        break;
      case TdLifecycle::kKeysConfigured:
        s = td->fatal                                 ? TdCovState::kFatal
            : td->op_state == OpState::kUninitialized ? TdCovState::kUninitialized
            : td->op_state == OpState::kInitialized   ? TdCovState::kInitialized
                                                      : TdCovState::kRunnable;
        break;
      case TdLifecycle::kBlocked:
        s = TdCovState::kBlocked;
        break;
      case TdLifecycle::kTeardown:
        s = TdCovState::kTeardown;
        break;
    }
  }
  return static_cast<uint8_t>(s);
}

// A call refused at begin (no commit) changed nothing: its next state is the state it saw. It is
// not read back, because while the call was in flight (Kvm::yield) another party may have
// committed a change to the same entry (docs/tdx-model.md "Concurrency and BUSY").
void TdxModule::record_coverage(const TdxTicket& t, bool committed) {
  const TdxResult& r = t.result_;
  auto outcome = [&](const sm::Machine& m) {
    if (status_code(r.status) != 0) return outcome_of(m, r.status);
    switch (r.outcome) {
      case GuestOutcome::kTdExit:
        return m.outcome_index("TD_EXIT");
      case GuestOutcome::kInjectVe:
        return m.outcome_index("INJECT_VE");
      case GuestOutcome::kInterrupted:
        return m.outcome_index("INTERRUPTED");
      default:
        return 0;
    }
  };
  auto rec = [&](sm::Counts& c, int op, unsigned from, unsigned to) {
    const sm::Machine& m = c.machine();
    const int oc = outcome(m);
    if (op == sm::Machine::kNone) return;
    if (oc == sm::Machine::kNone) {
      const std::string_view on =
          status_code(r.status) ? status_name(r.status) : name_of(r.outcome);
      c.record_undeclared(m.states()[from], m.ops()[op], on, m.states()[to]);
      return;
    }
    c.record(from, static_cast<unsigned>(op), static_cast<unsigned>(oc), to);
  };
  if (t.cov_.sept) {
    const sm::Machine& m = sept_machine();
    const unsigned to = committed
                            ? static_cast<unsigned>(sept_state_of(read_entry(t.cov_.sept_entry)))
                            : t.cov_.sept_from;
    int op = sept_op_of(r.leaf);
    // PROMOTE of PENDING children is its own operation (tdx_machines.cpp).
    if (r.leaf == Leaf::kMemPagePromote && r.status == kSuccess &&
        to == static_cast<unsigned>(SeptState::kPending))
      op = m.op_index("TDH.MEM.PAGE.PROMOTE(PENDING)");
    rec(*cov_sept_, op, t.cov_.sept_from, to);
  }
  if (t.cov_.td) {
    const sm::Machine& m = td_machine();
    const unsigned to = committed ? td_cov_state(td_by_pfn(t.cov_.tdr)) : t.cov_.td_from;
    int op = td_op_of(r.leaf);
    if (r.leaf == Leaf::kMngKeyConfig && r.status == kSuccess &&
        to == static_cast<unsigned>(TdCovState::kHkidAssigned))
      op = m.op_index("TDH.MNG.KEY.CONFIG(PARTIAL)");
    rec(*cov_td_, op, t.cov_.td_from, to);
  }
  if (t.cov_.kot) {
    rec(*cov_kot_, kot_op_of(r.leaf), t.cov_.hkid_from,
        committed ? static_cast<unsigned>(kot_[t.cov_.hkid].state) : t.cov_.hkid_from);
  }
}

// ---------------------------------------------------------------------------------------------
// Construction

TdxModule::TdxModule(PhysMem& mem, TdxConfig config)
    : mem_(mem),
      fw_(mem, InitiatorId{kFirmware, InitiatorKind::kFirmware, 0}, &seam_checks_),
      cfg_(std::move(config)),
      pamt_(cfg_.tdmrs) {
  assert(cfg_.hkid_bits > 0 && cfg_.hkid_bits < cfg_.max_pa && cfg_.max_pa <= 52);
  assert(cfg_.private_hkid_min <= cfg_.private_hkid_max);
  assert(cfg_.private_hkid_max < (1u << cfg_.hkid_bits));
  assert(cfg_.num_packages >= 1 && cfg_.num_packages <= 64);
  assert(cfg_.sept_root_tdcs_index < cfg_.num_tdcs_pages && cfg_.num_tdcs_pages >= 3);
  assert(cfg_.num_tdvps_pages >= 1 && cfg_.cached_sub_blocks >= 1);
  for ([[maybe_unused]] const Tdmr& t : cfg_.tdmrs) assert(mem_.contains(t.base, t.size));
  hkid_shift_ = cfg_.max_pa - cfg_.hkid_bits;
  hkid_mask_ = ((uint64_t{1} << cfg_.hkid_bits) - 1) << hkid_shift_;
  pkg_config_bitmap_ =
      cfg_.num_packages >= 64 ? ~uint64_t{0} : (uint64_t{1} << cfg_.num_packages) - 1;
  kot_.resize(size_t{cfg_.private_hkid_max} + 1);
  // A1: the global KeyID (PAMT, TDRs) is never a TD's.
  if (cfg_.global_hkid >= cfg_.private_hkid_min && cfg_.global_hkid <= cfg_.private_hkid_max) {
    kot_[cfg_.global_hkid].state = HkidState::kReserved;
  }
  wbt_.resize(cfg_.num_packages);
  status_counts_.assign(known_status_codes().size() + 1, 0);
  for (size_t k = 0; k < std::size(kAllPageTypes); ++k) {
    pages_by_type_[k] = static_cast<double>(pamt_.pages(kAllPageTypes[k]));
  }
  set_coverage(nullptr);
}

TdxModule::~TdxModule() = default;

void TdxModule::set_coverage(sm::Coverage* c) {
  coverage_ = c ? c : &own_coverage_;
  cov_sept_ = &coverage_->of(sept_machine());
  cov_td_ = &coverage_->of(td_machine());
  cov_kot_ = &coverage_->of(kot_machine());
}

Hpa TdxModule::with_hkid(Hpa a, KeyId k) const {
  return Hpa((a.value() & ~hkid_mask_) | ((uint64_t{k} << hkid_shift_) & hkid_mask_));
}

KeyId TdxModule::hkid_of(Hpa a) const {
  return static_cast<KeyId>((a.value() & hkid_mask_) >> hkid_shift_);
}

TdxModule::Td* TdxModule::td_by_pfn(Pfn tdr) {
  auto it = tds_.find(tdr.value());
  return it == tds_.end() ? nullptr : it->second.get();
}

const TdxModule::Td* TdxModule::td_by_pfn(Pfn tdr) const {
  auto it = tds_.find(tdr.value());
  return it == tds_.end() ? nullptr : it->second.get();
}

// ---------------------------------------------------------------------------------------------
// Common checks

// hpa_check_with_pwr_2_alignment (M helpers.c): aligned, no KeyID bits, below MAX_PA (A1).
bool TdxModule::hpa_operand_ok(Hpa a, uint64_t align) const {
  return (a.value() & (align - 1)) == 0 && hkid_of(a) == 0 &&
         (cfg_.max_pa >= 64 || (a.value() >> cfg_.max_pa) == 0);
}

// check_and_lock_explicit_private_hpa + non_shared_hpa_metadata_check_and_lock (A7): operand
// check, TDMR coverage, PAMT walk with locks, page type (and, for a free 2 MiB range, every 4 KiB
// entry free).
bool TdxModule::check_page(TdxTicket& t, Hpa a, uint32_t op, PageSize size, LockMode mode,
                           PageType expected) {
  PageSize reached = size;
  if (!lock_page_metadata(t, a, op, size, mode, /*in_memory=*/true, &reached)) return false;
  const Pfn f = hpa_to_pfn(a);
  const PamtEntry e = pamt_.entry(f.align_down(reached), reached);
  if (reached != size || e.type() != expected) {
    return fail(t, with_operand(kPageMetadataIncorrect, op));
  }
  // pamt_is_2mb_range_free (A2.3 AUG 2 MiB, A7).
  if (expected == PageType::kNda && size == PageSize::k2M && !pamt_.range_2m_free(f)) {
    return fail(t, with_operand(kPageMetadataIncorrect, op));
  }
  return true;
}

// The common prologue of every leaf that takes a page operand: the operand check, TDMR coverage
// (and, for pages the module will touch, that the frame exists), then the PAMT walk taking its
// locks, which the ticket holds. `reached` is the level of the PAMT leaf found.
bool TdxModule::lock_page_metadata(TdxTicket& t, Hpa a, uint32_t op, PageSize size, LockMode mode,
                                   bool in_memory, PageSize* reached) {
  if (!hpa_operand_ok(a, bytes_of(size))) return fail(t, with_operand(kOperandInvalid, op));
  const Pfn f = hpa_to_pfn(a);
  if (!pamt_.covers_range(f, size) || (in_memory && !mem_.contains(a, bytes_of(size)))) {
    return fail(t, with_operand(kOperandAddrRangeError, op));
  }
  charge(t, cfg_.costs.pamt_level * (3 - level_of(size)) + cfg_.costs.lock);
  std::vector<Pamt::LockRef> refs;
  const bool locked = pamt_.walk_and_lock(f, size, mode, refs, reached);
  if (!locked) return fail(t, with_operand(kOperandBusy, op));
  for (const Pamt::LockRef& r : refs) {
    TdxHeldLock h;
    h.kind = TdxHeldLock::kPamt;
    h.mode = r.mode;
    h.pfn = r.base;
    h.level = r.level;
    t.held_.push_back(h);
  }
  return true;
}

bool TdxModule::check_tdr(TdxTicket& t, Hpa tdr, uint32_t op, LockMode mode, Td** out) {
  if (!check_page(t, tdr, op, PageSize::k4K, mode, PageType::kTdr)) return false;
  Td* td = td_by_pfn(hpa_to_pfn(tdr));
  assert(td && "PT_TDR page without TD state");
  if (!td) return fail(t, with_operand(kPageMetadataIncorrect, op));
  cov_td(t, *td);
  *out = td;
  return true;
}

// Implicit TDR of a page (its PAMT owner): lock_and_map_implicit_tdr, operand TDR.
bool TdxModule::lock_pamt(TdxTicket& t, Pfn base, PageSize level, LockMode mode, uint32_t op) {
  std::vector<Pamt::LockRef> refs;
  charge(t, cfg_.costs.lock);
  if (!pamt_.lock(base, level, mode, refs)) return fail(t, with_operand(kOperandBusy, op));
  TdxHeldLock h;
  h.kind = TdxHeldLock::kPamt;
  h.mode = mode;
  h.pfn = base;
  h.level = level;
  t.held_.push_back(h);
  return true;
}

// check_td_in_correct_build_state + op-state gating (M helpers.c; A2.3).
bool TdxModule::check_td_state(TdxTicket& t, const Td& td, Leaf leaf) {
  cov_td(t, td);
  if (td.fatal) return fail(t, kTdFatal);
  if (td.lifecycle != TdLifecycle::kKeysConfigured) return fail(t, kTdKeysNotConfigured);
  if (td.tdcx.size() < cfg_.num_tdcs_pages) return fail(t, kTdcsNotAllocated);
  if (!op_state_allows(leaf, td.op_state)) return fail(t, kOpStateIncorrect);
  return true;
}

// verify_page_info_input (M helpers.c): level in range, GPA aligned to it.
bool TdxModule::check_page_info(TdxTicket& t, const Td&, Gpa gpa, unsigned level,
                                unsigned min_level, unsigned max_level) {
  if (level < min_level || level > max_level ||
      (gpa.value() & (Stage2Table::span_of(level) - 1)) != 0) {
    return fail(t, with_operand(kOperandInvalid, operand::kRcx));
  }
  return true;
}

unsigned TdxModule::shared_bit_of(const Td& td) const {
  return td.gpaw52 ? 51 : 47;
}

// check_gpa_validity(gpa, gpaw, PRIVATE_ONLY) (A1).
bool TdxModule::gpa_valid_private(const Td& td, Gpa gpa) const {
  const unsigned gpa_width = td.gpaw52 ? 52 : 48;
  const uint64_t s_bit = uint64_t{1} << (gpa_width - 1);
  if (gpa.value() & s_bit) return false;
  const unsigned min_width = std::min(cfg_.max_pa, gpa_width);
  const uint64_t above = min_width >= 64 ? 0 : ~((uint64_t{1} << min_width) - 1);
  return (gpa.value() & above & ~s_bit) == 0;
}

bool TdxModule::lock_sept_tree(TdxTicket& t, Td& td, LockMode mode) {
  charge(t, cfg_.costs.lock);
  if (!td.sept_lock.try_acquire(mode)) {
    return fail(t, with_operand(kOperandBusy, operand::kSeptTree));
  }
  TdxHeldLock h;
  h.kind = TdxHeldLock::kSeptTree;
  h.mode = mode;
  h.pfn = td.tdr;
  t.held_.push_back(h);
  return true;
}

void TdxModule::set_sept_error_details(TdxTicket& t, uint64_t raw, unsigned level) {
  // set_arch_septe_details_in_vmm_regs (A2.2).
  t.result_.rcx = SeptCodec::arch_entry(raw);
  t.result_.rdx = SeptCodec::arch_info(sept_state_of(raw), level);
}

// secure_ept_walk (M sept_manager.c): from the root down to `level`, stopping early at an entry
// hardware would not follow (RWX=000) or at a leaf.
TdxModule::Walk TdxModule::sept_walk(const Td& td, Gpa gpa, unsigned level) const {
  Walk w;
  w.requested = level;
  const unsigned top = td.sept_levels ? td.sept_levels - 1 : 3;
  Pfn table =
      td.tdcx.size() > cfg_.sept_root_tdcs_index ? td.tdcx[cfg_.sept_root_tdcs_index] : Pfn(0);
  for (unsigned l = top;; --l) {
    w.entry = Stage2Table::entry_hpa(table, gpa, l);
    w.raw = read_entry(w.entry);
    w.level = l;
    ++w.levels_read;
    if (l == level || l == 0) break;
    if ((w.raw & SeptBits::kRwx) == 0 || SeptCodec::is_leaf(w.raw)) break;
    table = SeptCodec::pfn(w.raw);
  }
  return w;
}

TdxModule::Walk TdxModule::sept_walk_leaf(const Td& td, Gpa gpa) const {
  return sept_walk(td, gpa, 0);
}

// lock_sept_check_and_walk_private_gpa's walk part: the walk must reach `level`.
bool TdxModule::walk_to_level(TdxTicket& t, const Td& td, Gpa gpa, unsigned level, Walk* w) {
  *w = sept_walk(td, gpa, level);
  charge(t, cfg_.costs.sept_level * w->levels_read);
  if (!w->reached()) {
    set_sept_error_details(t, w->raw, w->level);
    return fail(t, with_operand(kEptWalkFailed, operand::kRcx));
  }
  return true;
}

// sept_lock_acquire_host (M tdx_locks.h; A5): on failure set TDHP and return BUSY; on success
// clear TDHP. The entry is re-read after locking.
bool TdxModule::lock_entry_host(TdxTicket& t, Walk* w) {
  charge(t, cfg_.costs.lock);
  const uint64_t raw = read_entry(w->entry);
  if (raw & SeptBits::kTdel) {
    if (!(raw & SeptBits::kTdhp)) ++stats_.host_priority_sets;
    write_entry(w->entry, raw | SeptBits::kTdhp);
    set_sept_error_details(t, raw, w->level);
    return fail(t, with_operand(kOperandBusy, operand::kRcx));
  }
  const uint64_t locked = (raw | SeptBits::kTdel) & ~SeptBits::kTdhp;
  write_entry(w->entry, locked);
  TdxHeldLock h;
  h.kind = TdxHeldLock::kSeptEntry;
  h.mode = LockMode::kExclusive;
  h.entry = w->entry;
  t.held_.push_back(h);
  w->raw = locked;
  return true;
}

// is_tlb_tracked (A6; M helpers.h).
bool TdxModule::is_tlb_tracked(const Td& td, uint64_t bepoch) const {
  if (td.td_epoch == 0) return true;
  if (bepoch == td.td_epoch - 1 && td.refcount[bepoch & 1] == 0) return true;
  return bepoch < td.td_epoch - 1;
}

// ---------------------------------------------------------------------------------------------
// Writes to TD pages (A9): the TD's key, owner bit set, poison cleared by the full-line writes,
// the TD's principal as label.

void TdxModule::td_frame_meta(Pfn f, const Td& td) {
  mem_.set_key(f, td.hkid);
  mem_.set_td_owner(f, true);
  mem_.set_poison(f, false);
  mem_.set_label(f, td.principal);
  mem_.note_cached(f, kAllLines,
                   td.principal);  // written with MOVDIR64B: the lines are in the cache
}

void TdxModule::zero_td_page(Pfn f, const Td& td) {
  (void)fw_.fill_plain(pfn_to_hpa(f), kPageBytes, 0);
  td_frame_meta(f, td);
  ++stats_.pages_zeroed;
}

void TdxModule::init_sept_page(Pfn f, const Td& td) {
  // A2.3 SEPT.ADD: zeroed with MOVDIR64B under the TD HKID, all 512 entries FREE|SVE.
  mem_.mark_table(f, true);
  const Hpa base = pfn_to_hpa(f);
  for (unsigned i = 0; i < kEntriesPerTable; ++i)
    (void)fw_.write_u64(base + 8 * i, kSepteInitValue);
  td_frame_meta(f, td);
  ++stats_.pages_zeroed;
}

// ---------------------------------------------------------------------------------------------
// TD build: MNG.CREATE, KEY.CONFIG, ADDCX, INIT; VP.CREATE, VP.ADDCX, VP.INIT

TdxTicket TdxModule::begin_mng_create(Hpa tdr, KeyId hkid, Principal owner) {
  TdxTicket t = start(Leaf::kMngCreate, cfg_.costs.seamcall);
  // A9: the HKID must be private (operand RDX) ...
  if (hkid < cfg_.private_hkid_min || hkid > cfg_.private_hkid_max) {
    fail(t, with_operand(kOperandInvalid, operand::kRdx));
    return t;
  }
  // ... the TDR page free (A7) ...
  if (!check_page(t, tdr, operand::kRcx, PageSize::k4K, LockMode::kExclusive, PageType::kNda)) {
    return t;
  }
  t.cov_.td = true;  // coverage: NO_TD -> (tdx_machines.h)
  t.cov_.tdr = hpa_to_pfn(tdr);
  t.cov_.td_from = static_cast<uint8_t>(TdCovState::kNoTd);
  cov_kot(t, hkid);
  // ... and the KOT entry FREE (A9).
  charge(t, cfg_.costs.lock);
  if (!kot_lock_.try_acquire(LockMode::kExclusive)) {
    fail(t, with_operand(kOperandBusy, operand::kKot));
    return t;
  }
  t.held_.push_back(
      TdxHeldLock{TdxHeldLock::kKot, LockMode::kExclusive, Pfn(), PageSize::k4K, Hpa(), 0});
  if (kot_[hkid].state != HkidState::kFree) {
    fail(t, kHkidNotFree);
    return t;
  }
  charge(t, cfg_.costs.zero_4k);
  t.commit_ = [this, tdr, hkid, owner](TdxTicket&) {
    const Pfn f = hpa_to_pfn(tdr);
    auto td = std::make_unique<Td>();
    td->tdr = f;
    td->principal = owner;
    td->hkid = hkid;
    td->lifecycle = TdLifecycle::kHkidAssigned;
    // The TDR is written with the global KeyID (A1) and holds module data.
    (void)fw_.fill_plain(tdr, kPageBytes, 0);
    mem_.set_key(f, cfg_.global_hkid);
    mem_.set_td_owner(f, true);
    mem_.set_poison(f, false);
    mem_.set_label(f, kFirmware);
    kot_[hkid].state = HkidState::kAssigned;
    kot_[hkid].tdr = tdr;
    pamt_.assign(f, PageSize::k4K, PageType::kTdr, Pfn(0));  // M: a TDR's owner field is 0
    tds_.emplace(f.value(), std::move(td));
    ++stats_.tds_created;
  };
  return t;
}

TdxTicket TdxModule::begin_mng_key_config(Hpa tdr, unsigned pkg) {
  TdxTicket t = start(Leaf::kMngKeyConfig, cfg_.costs.seamcall);
  Td* td = nullptr;
  if (!check_tdr(t, tdr, operand::kRcx, LockMode::kExclusive, &td)) return t;
  if (td->fatal) {
    fail(t, kTdFatal);
    return t;
  }
  // A9: KEY.CONFIG needs lifecycle HKID_ASSIGNED.
  if (td->lifecycle != TdLifecycle::kHkidAssigned) {
    fail(t, kLifecycleStateIncorrect);
    return t;
  }
  if (pkg >= cfg_.num_packages) {  // model input: the LP's package must exist
    fail(t, with_operand(kOperandInvalid, operand::kRcx));
    return t;
  }
  if (td->pkg_config_bitmap & (uint64_t{1} << pkg)) {
    fail(t, kKeyConfigured);  // warning: already configured on this package
    return t;
  }
  charge(t, cfg_.costs.key_program);
  t.commit_ = [this, td, pkg](TdxTicket&) {
    td->pkg_config_bitmap |= uint64_t{1} << pkg;
    if (td->pkg_config_bitmap == pkg_config_bitmap_) td->lifecycle = TdLifecycle::kKeysConfigured;
  };
  return t;
}

TdxTicket TdxModule::begin_mng_addcx(Hpa tdr, Hpa tdcx) {
  TdxTicket t = start(Leaf::kMngAddcx, cfg_.costs.seamcall);
  Td* td = nullptr;
  if (!check_tdr(t, tdr, operand::kRdx, LockMode::kExclusive, &td)) return t;
  if (td->fatal) {
    fail(t, kTdFatal);
    return t;
  }
  if (td->lifecycle != TdLifecycle::kKeysConfigured) {
    fail(t, kTdKeysNotConfigured);
    return t;
  }
  if (td->tdcx.size() >= cfg_.num_tdcs_pages) {
    fail(t, kTdcxNumIncorrect);
    return t;
  }
  if (!check_page(t, tdcx, operand::kRcx, PageSize::k4K, LockMode::kExclusive, PageType::kNda)) {
    return t;
  }
  charge(t, cfg_.costs.zero_4k);
  t.commit_ = [this, td, tdcx](TdxTicket&) {
    const Pfn f = hpa_to_pfn(tdcx);
    const size_t index = td->tdcx.size();
    if (index == cfg_.sept_root_tdcs_index) {
      init_sept_page(f, *td);  // M tdh_mng_add_cx: the root is filled with SEPTE_INIT_VALUE
    } else if (index == 2) {
      (void)fw_.fill_plain(tdcx, kPageBytes, 0xFF);  // MSR bitmaps page: all ones
      td_frame_meta(f, *td);
    } else {
      zero_td_page(f, *td);
    }
    td->tdcx.push_back(f);
    ++td->chldcnt;
    pamt_.assign(f, PageSize::k4K, PageType::kTdcx, td->tdr);
  };
  return t;
}

TdxTicket TdxModule::begin_mng_init(Hpa tdr, const TdParams& p) {
  TdxTicket t = start(Leaf::kMngInit, cfg_.costs.seamcall);
  Td* td = nullptr;
  if (!check_tdr(t, tdr, operand::kRcx, LockMode::kExclusive, &td)) return t;
  if (!check_td_state(t, *td, Leaf::kMngInit)) return t;
  // TD_PARAMS checks (reduced): supported ATTRIBUTES bits, EPT levels and GPAW, MAX_VCPUS.
  constexpr uint64_t kSupportedAttrs = kTdAttrDebug | (1ull << 16) | (1ull << 27) |
                                       kTdAttrSeptVeDisable | (1ull << 29) | (1ull << 30) |
                                       (1ull << 63);
  if (p.attributes & ~kSupportedAttrs) {
    fail(t, with_operand(kOperandInvalid, operand::kAttributes));
    return t;
  }
  if ((p.sept_levels != 4 && p.sept_levels != 5) || (p.gpaw52 && p.sept_levels != 5)) {
    fail(t, with_operand(kOperandInvalid, operand::kEptpControls));
    return t;
  }
  if (p.max_vcpus == 0) {
    fail(t, with_operand(kOperandInvalid, operand::kMaxVcpus));
    return t;
  }
  t.commit_ = [td, p](TdxTicket&) {
    td->attributes = p.attributes;
    td->sept_levels = p.sept_levels;
    td->gpaw52 = p.gpaw52;
    td->max_vcpus = p.max_vcpus;
    td->num_assoc_vcpus = 0;
    td->td_epoch = 1;  // M tdh_mng_init: TD_EPOCH starts at 1, refcounts 0
    td->refcount[0] = td->refcount[1] = 0;
    td->mrtd_ctx.reset();
    td->op_state = OpState::kInitialized;
  };
  return t;
}

TdxTicket TdxModule::begin_vp_create(Hpa tdr, Hpa tdvpr) {
  TdxTicket t = start(Leaf::kVpCreate, cfg_.costs.seamcall);
  Td* td = nullptr;
  if (!check_tdr(t, tdr, operand::kRdx, LockMode::kShared, &td)) return t;
  if (!check_td_state(t, *td, Leaf::kVpCreate)) return t;
  if (td->vcpus_created >= td->max_vcpus) {
    fail(t, kMaxVcpusExceeded);
    return t;
  }
  if (!check_page(t, tdvpr, operand::kRcx, PageSize::k4K, LockMode::kExclusive, PageType::kNda)) {
    return t;
  }
  charge(t, cfg_.costs.zero_4k);
  t.commit_ = [this, td, tdvpr](TdxTicket&) {
    const Pfn f = hpa_to_pfn(tdvpr);
    zero_td_page(f, *td);
    auto v = std::make_unique<Vcpu>();
    v->tdvpr = f;
    v->tdr = td->tdr;
    vcpus_.emplace(f.value(), std::move(v));
    ++td->vcpus_created;
    ++td->chldcnt;
    pamt_.assign(f, PageSize::k4K, PageType::kTdvpr, td->tdr);
  };
  return t;
}

TdxTicket TdxModule::begin_vp_addcx(Hpa tdvpr, Hpa tdvpx) {
  TdxTicket t = start(Leaf::kVpAddcx, cfg_.costs.seamcall);
  if (!check_page(t, tdvpr, operand::kRdx, PageSize::k4K, LockMode::kExclusive, PageType::kTdvpr)) {
    return t;
  }
  Vcpu* v = vcpus_.at(hpa_to_pfn(tdvpr).value()).get();
  Td* td = td_by_pfn(v->tdr);
  if (!lock_pamt(t, td->tdr, PageSize::k4K, LockMode::kShared, operand::kTdr)) return t;
  if (!check_td_state(t, *td, Leaf::kVpAddcx)) return t;
  if (v->initialized || v->num_pages >= cfg_.num_tdvps_pages) {
    fail(t, with_operand(kTdcxNumIncorrect, operand::kRdx));
    return t;
  }
  if (!check_page(t, tdvpx, operand::kRcx, PageSize::k4K, LockMode::kExclusive, PageType::kNda)) {
    return t;
  }
  charge(t, cfg_.costs.zero_4k);
  t.commit_ = [this, td, v, tdvpx](TdxTicket&) {
    const Pfn f = hpa_to_pfn(tdvpx);
    zero_td_page(f, *td);
    ++v->num_pages;
    ++td->chldcnt;
    // TDVPX pages are typed PT_TDCX in the model [assumed], so PT_TDVPR marks vCPU roots only.
    pamt_.assign(f, PageSize::k4K, PageType::kTdcx, td->tdr);
  };
  return t;
}

TdxTicket TdxModule::begin_vp_init(Hpa tdvpr) {
  TdxTicket t = start(Leaf::kVpInit, cfg_.costs.seamcall);
  if (!check_page(t, tdvpr, operand::kRcx, PageSize::k4K, LockMode::kExclusive, PageType::kTdvpr)) {
    return t;
  }
  Vcpu* v = vcpus_.at(hpa_to_pfn(tdvpr).value()).get();
  Td* td = td_by_pfn(v->tdr);
  if (!lock_pamt(t, td->tdr, PageSize::k4K, LockMode::kShared, operand::kTdr)) return t;
  if (!check_td_state(t, *td, Leaf::kVpInit)) return t;
  if (v->initialized) {
    fail(t, kVcpuStateIncorrect);
    return t;
  }
  if (v->num_pages < cfg_.num_tdvps_pages) {
    fail(t, with_operand(kTdcxNumIncorrect, operand::kRcx));
    return t;
  }
  t.commit_ = [td, v](TdxTicket&) {
    v->initialized = true;
    ++td->num_vcpus;
  };
  return t;
}

// ---------------------------------------------------------------------------------------------
// Teardown and keys (A9, A10.4)

TdxTicket TdxModule::begin_vp_flush(Hpa tdvpr, unsigned lp) {
  TdxTicket t = start(Leaf::kVpFlush, cfg_.costs.seamcall);
  // A vCPU inside the TD holds its TDVPR: flushing it from elsewhere is BUSY.
  if (!check_page(t, tdvpr, operand::kRcx, PageSize::k4K, LockMode::kExclusive, PageType::kTdvpr)) {
    return t;
  }
  Vcpu* v = vcpus_.at(hpa_to_pfn(tdvpr).value()).get();
  Td* td = td_by_pfn(v->tdr);
  cov_td(t, *td);
  if (!lock_pamt(t, td->tdr, PageSize::k4K, LockMode::kShared, operand::kTdr)) return t;
  // VP.FLUSH must work on a FATAL TD (teardown), so only the lifecycle is checked [assumed].
  if (td->lifecycle != TdLifecycle::kKeysConfigured) {
    fail(t, kLifecycleStateIncorrect);
    return t;
  }
  if (v->lp < 0) {
    fail(t, kVcpuNotAssociated);  // KVM ignores this one (A10.4)
    return t;
  }
  if (v->lp != static_cast<int>(lp)) {
    fail(t, kVcpuAssociated);  // must run on the LP the vCPU is associated with [assumed code]
    return t;
  }
  charge(t, cfg_.costs.invept);
  t.commit_ = [td, v](TdxTicket&) {
    v->lp = -1;
    if (td->num_assoc_vcpus > 0) --td->num_assoc_vcpus;
  };
  return t;
}

TdxTicket TdxModule::begin_mng_vpflushdone(Hpa tdr) {
  TdxTicket t = start(Leaf::kMngVpflushdone, cfg_.costs.seamcall);
  Td* td = nullptr;
  if (!check_tdr(t, tdr, operand::kRcx, LockMode::kExclusive, &td)) return t;
  charge(t, cfg_.costs.lock);
  if (!kot_lock_.try_acquire(LockMode::kExclusive)) {
    fail(t, with_operand(kOperandBusy, operand::kKot));
    return t;
  }
  t.held_.push_back(
      TdxHeldLock{TdxHeldLock::kKot, LockMode::kExclusive, Pfn(), PageSize::k4K, Hpa(), 0});
  if (td->lifecycle != TdLifecycle::kKeysConfigured &&
      td->lifecycle != TdLifecycle::kHkidAssigned) {
    fail(t, kLifecycleStateIncorrect);
    return t;
  }
  // A9: every vCPU flushed from its LP first.
  if (td->tdcx.size() >= cfg_.num_tdcs_pages && td->op_state != OpState::kUninitialized &&
      td->num_assoc_vcpus != 0) {
    fail(t, kFlushvpNotDone);
    return t;
  }
  t.commit_ = [this, td](TdxTicket&) {
    KotEntry& k = kot_[td->hkid];
    k.wbinvd_bitmap = cfg_.skip_phymem_cache_wb ? 0 : pkg_config_bitmap_;
    // [assumed] With SKIP_PHYMEM_CACHE_WB the platform keeps caches coherent across a key's
    // reuse by itself: the key's lines count as written back here.
    if (cfg_.skip_phymem_cache_wb) mem_.writeback_key(td->hkid);
    k.state = HkidState::kFlushed;
    td->lifecycle = TdLifecycle::kBlocked;
  };
  return t;
}

TdxTicket TdxModule::begin_phymem_cache_wb(unsigned pkg, CacheWbCmd cmd, bool interrupt_pending) {
  TdxTicket t = start(Leaf::kPhymemCacheWb, cfg_.costs.seamcall);
  if (cmd != CacheWbCmd::kStart && cmd != CacheWbCmd::kResume) {
    fail(t, with_operand(kOperandInvalid, operand::kRcx));
    return t;
  }
  if (pkg >= cfg_.num_packages) {  // model input: the LP's package
    fail(t, with_operand(kOperandInvalid, operand::kRcx));
    return t;
  }
  // Package-scope mutex, then the KOT shared (M tdh_phymem_cache_wb.c).
  charge(t, 2 * cfg_.costs.lock);
  if (wbt_[pkg].mutex) {
    fail(t, with_operand(kOperandBusy, operand::kWbcache));
    return t;
  }
  wbt_[pkg].mutex = true;
  t.held_.push_back(
      TdxHeldLock{TdxHeldLock::kWbt, LockMode::kExclusive, Pfn(), PageSize::k4K, Hpa(), pkg});
  if (!kot_lock_.try_acquire(LockMode::kShared)) {
    fail(t, with_operand(kOperandBusy, operand::kKot));
    return t;
  }
  t.held_.push_back(
      TdxHeldLock{TdxHeldLock::kKot, LockMode::kShared, Pfn(), PageSize::k4K, Hpa(), 0});
  if (cfg_.skip_phymem_cache_wb) return t;  // TDX_FEATURES0.SKIP_PHYMEM_CACHE_WB: no-op (A9)
  Wbt& w = wbt_[pkg];
  std::vector<KeyId> flushed;
  if (cmd == CacheWbCmd::kStart) {
    for (unsigned k = cfg_.private_hkid_min; k <= cfg_.private_hkid_max; ++k) {
      if (kot_[k].state == HkidState::kFlushed) flushed.push_back(static_cast<KeyId>(k));
    }
    if (flushed.empty()) {
      fail(t, kNoHkidReadyToWbcache);
      return t;
    }
  } else if (w.intr_point == 0) {
    fail(t, kWbcacheResumeError);
    return t;
  }
  t.commit_ = [this, pkg, cmd, interrupt_pending, flushed](TdxTicket& tk) {
    Wbt& wb = wbt_[pkg];
    if (cmd == CacheWbCmd::kStart) {
      wb.intr_point = 0;
      wb.hkids = flushed;
    }
    // WBNOINVDP over the cached sub-blocks; interruptible between them (A9).
    do {
      ++wb.intr_point;
      charge(tk, cfg_.costs.cache_wb_sub_block);
      if (wb.intr_point < cfg_.cached_sub_blocks && interrupt_pending) {
        tk.result_.status = kInterruptedResumable;
        return;
      }
    } while (wb.intr_point < cfg_.cached_sub_blocks);
    wb.intr_point = 0;
    for (KeyId k : wb.hkids) {
      kot_[k].wbinvd_bitmap &= ~(uint64_t{1} << pkg);
      // Caches are modelled as one: the key's lines are written back once every package has
      // run CACHE.WB (PhysMem::writeback_key; ISO-8, T6).
      if (kot_[k].wbinvd_bitmap == 0) mem_.writeback_key(k);
    }
    wb.hkids.clear();
  };
  return t;
}

TdxTicket TdxModule::begin_mng_key_freeid(Hpa tdr) {
  TdxTicket t = start(Leaf::kMngKeyFreeid, cfg_.costs.seamcall);
  Td* td = nullptr;
  if (!check_tdr(t, tdr, operand::kRcx, LockMode::kExclusive, &td)) return t;
  if (td->lifecycle != TdLifecycle::kBlocked) {
    fail(t, kLifecycleStateIncorrect);
    return t;
  }
  charge(t, cfg_.costs.lock);
  if (!kot_lock_.try_acquire(LockMode::kExclusive)) {
    fail(t, with_operand(kOperandBusy, operand::kKot));
    return t;
  }
  t.held_.push_back(
      TdxHeldLock{TdxHeldLock::kKot, LockMode::kExclusive, Pfn(), PageSize::k4K, Hpa(), 0});
  // A9 / T6: the HKID is reusable only after CACHE.WB on every package.
  if (kot_[td->hkid].wbinvd_bitmap != 0 && !cfg_.erratum_freeid_ignores_cache_wb) {
    fail(t, kWbcacheNotComplete);
    return t;
  }
  t.commit_ = [this, td](TdxTicket&) {
    kot_[td->hkid].state = HkidState::kFree;
    kot_[td->hkid].tdr = Hpa(0);
    td->lifecycle = TdLifecycle::kTeardown;
  };
  return t;
}

TdxTicket TdxModule::begin_mng_key_reclaimid() {
  // A3: TDH.MNG.KEY.RECLAIMID is a no-op that returns SUCCESS.
  return start(Leaf::kMngKeyReclaimid, cfg_.costs.seamcall);
}

TdxTicket TdxModule::begin_phymem_page_reclaim(Hpa page) {
  TdxTicket t = start(Leaf::kPhymemPageReclaim, cfg_.costs.seamcall);
  // A9: 4 KiB aligned, no KeyID bits, inside a TDMR.
  PageSize level = PageSize::k4K;
  if (!lock_page_metadata(t, page, operand::kRcx, PageSize::k4K, LockMode::kExclusive,
                          /*in_memory=*/false, &level))
    return t;
  const Pfn f = hpa_to_pfn(page);
  const Pfn base = f.align_down(level);
  const PamtEntry e = pamt_.entry(base, level);
  if (e.type() == PageType::kNda || e.type() == PageType::kRsvd) {
    fail(t, with_operand(kPageMetadataIncorrect, operand::kRcx));
    return t;
  }
  t.result_.rcx = e.pt;
  t.result_.rdx = pfn_to_hpa(e.owner()).value();
  t.result_.r8 = level_of(level);
  if (f != base) {  // a large page is reclaimed by its first frame
    fail(t, with_operand(kOperandInvalid, operand::kRcx));
    return t;
  }
  Td* owner = nullptr;
  if (e.type() != PageType::kTdr) {
    owner = td_by_pfn(e.owner());
    if (!lock_pamt(t, e.owner(), PageSize::k4K, LockMode::kShared, operand::kTdr)) return t;
    // A9 / T6: pages return to the host only in TD_TEARDOWN.
    if (!owner || owner->lifecycle != TdLifecycle::kTeardown) {
      fail(t, kLifecycleStateIncorrect);
      return t;
    }
  } else {
    owner = td_by_pfn(f);
    if (owner) cov_td(t, *owner);
    if (!owner || owner->lifecycle != TdLifecycle::kTeardown) {
      fail(t, kLifecycleStateIncorrect);
      return t;
    }
    if (owner->chldcnt != 0) {  // A7: the TDR goes last
      fail(t, kTdAssociatedPagesExist);
      return t;
    }
  }
  t.commit_ = [this, f, level, e, owner](TdxTicket&) {
    // No cache flush and no clearing here (A9): the host must clear the page before reuse.
    if (e.type() == PageType::kEpt ||
        (e.type() == PageType::kTdcx && mem_.meta(f).flags & kFrameTable)) {
      mem_.mark_table(f, false);
    }
    if (e.type() == PageType::kTdvpr) vcpus_.erase(f.value());
    pamt_.make_nda(f, level);
    if (e.type() == PageType::kTdr) {
      tds_.erase(f.value());
      ++stats_.tds_reclaimed;
    } else {
      owner->chldcnt -= frames_of(level);
    }
  };
  return t;
}

TdxTicket TdxModule::begin_phymem_page_wbinvd(Hpa page_with_hkid) {
  TdxTicket t = start(Leaf::kPhymemPageWbinvd, cfg_.costs.seamcall);
  // A9: the PA carries the KeyID whose lines to write back; the page must already be PT_NDA.
  const Hpa page(page_with_hkid.value() & ~hkid_mask_);
  if (!check_page(t, page, operand::kRcx, PageSize::k4K, LockMode::kShared, PageType::kNda)) {
    return t;
  }
  charge(t, cfg_.costs.wbinvd_page);
  // The page's lines tagged with the KeyID are written back and invalidated (ISO-8).
  t.commit_ = [this, page, k = hkid_of(page_with_hkid)](TdxTicket&) {
    mem_.writeback_frame(hpa_to_pfn(page), k);
  };
  return t;
}

TdxTicket TdxModule::begin_phymem_page_rdmd(Hpa page) {
  TdxTicket t = start(Leaf::kPhymemPageRdmd, cfg_.costs.seamcall);
  PageSize level = PageSize::k4K;
  if (!lock_page_metadata(t, page, operand::kRcx, PageSize::k4K, LockMode::kShared,
                          /*in_memory=*/false, &level))
    return t;
  const Pfn f = hpa_to_pfn(page);
  const PamtEntry e = pamt_.entry(f.align_down(level), level);
  t.result_.rcx = e.pt;
  t.result_.rdx = pfn_to_hpa(e.owner()).value();
  t.result_.r8 = level_of(level);
  t.result_.r9 = e.bepoch;
  return t;
}

// ---------------------------------------------------------------------------------------------
// Inspection

std::vector<Hpa> TdxModule::tds() const {
  std::vector<Hpa> v;
  for (const auto& [k, td] : tds_) v.push_back(pfn_to_hpa(Pfn(k)));
  return v;
}

std::optional<TdInfo> TdxModule::td_info(Hpa tdr) const {
  const Td* td = td_by_pfn(hpa_to_pfn(tdr));
  if (!td) return std::nullopt;
  TdInfo i;
  i.tdr = tdr;
  i.principal = td->principal;
  i.hkid = td->hkid;
  i.lifecycle = td->lifecycle;
  i.op_state = td->op_state;
  i.fatal = td->fatal;
  i.pkg_config_bitmap = td->pkg_config_bitmap;
  i.chldcnt = td->chldcnt;
  i.num_tdcx = static_cast<unsigned>(td->tdcx.size());
  i.attributes = td->attributes;
  i.sept_levels = td->sept_levels;
  i.gpaw52 = td->gpaw52;
  i.num_vcpus = td->num_vcpus;
  i.num_assoc_vcpus = td->num_assoc_vcpus;
  i.td_epoch = td->td_epoch;
  i.refcount[0] = td->refcount[0];
  i.refcount[1] = td->refcount[1];
  i.finalized = td->finalized;
  i.mrtd = td->mrtd;
  if (td->tdcx.size() > cfg_.sept_root_tdcs_index) {
    i.sept_root = pfn_to_hpa(td->tdcx[cfg_.sept_root_tdcs_index]);
  }
  i.shared_bit = Gpa(uint64_t{1} << shared_bit_of(*td));
  return i;
}

std::optional<VcpuInfo> TdxModule::vcpu_info(Hpa tdvpr) const {
  auto it = vcpus_.find(hpa_to_pfn(tdvpr).value());
  if (it == vcpus_.end()) return std::nullopt;
  const Vcpu& v = *it->second;
  VcpuInfo i;
  i.tdvpr = tdvpr;
  i.tdr = pfn_to_hpa(v.tdr);
  i.num_tdvps_pages = v.num_pages;
  i.initialized = v.initialized;
  i.in_td = v.in_td;
  i.lp = v.lp;
  i.vcpu_epoch = v.vcpu_epoch;
  return i;
}

std::vector<Hpa> TdxModule::vcpus_of(Hpa tdr) const {
  std::vector<Hpa> out;
  const Pfn f = hpa_to_pfn(tdr);
  for (const auto& [k, v] : vcpus_) {
    if (v->tdr == f) out.push_back(pfn_to_hpa(Pfn(k)));
  }
  return out;
}

KotEntry TdxModule::kot(KeyId hkid) const {
  if (hkid >= kot_.size()) return KotEntry{HkidState::kReserved, 0, Hpa(0)};
  return kot_[hkid];
}

SeptLookup TdxModule::sept_entry(Hpa tdr, Gpa gpa, unsigned level) const {
  SeptLookup l;
  const Td* td = td_by_pfn(hpa_to_pfn(tdr));
  if (!td || td->sept_levels == 0 || td->tdcx.size() <= cfg_.sept_root_tdcs_index) return l;
  if (level >= td->sept_levels) return l;
  const Walk w = sept_walk(*td, gpa, level);
  l.found = true;
  l.entry = SeptCodec::decode(w.raw, w.level);
  l.entry_hpa = w.entry;
  return l;
}

void TdxModule::for_each_sept_entry(Hpa tdr,
                                    const std::function<void(Gpa, const SeptEntry&)>& f) const {
  const Td* td = td_by_pfn(hpa_to_pfn(tdr));
  if (!td || td->sept_levels == 0 || td->tdcx.size() <= cfg_.sept_root_tdcs_index) return;
  std::function<void(Pfn, unsigned, uint64_t)> visit = [&](Pfn table, unsigned level,
                                                           uint64_t base) {
    for (unsigned i = 0; i < kEntriesPerTable; ++i) {
      const uint64_t raw = read_entry(pfn_to_hpa(table) + 8 * i);
      const SeptEntry e = SeptCodec::decode(raw, level);
      if (e.state == SeptState::kFree) continue;
      const uint64_t b = base + i * Stage2Table::span_of(level);
      f(Gpa(b), e);
      if (!e.leaf && level > 0 &&
          (e.state == SeptState::kNlMapped || e.state == SeptState::kNlBlocked)) {
        visit(e.pfn, level - 1, b);
      }
    }
  };
  visit(td->tdcx[cfg_.sept_root_tdcs_index], td->sept_levels - 1, 0);
}

std::optional<WalkRoot> TdxModule::sept_walk_root(Hpa tdr) const {
  const Td* td = td_by_pfn(hpa_to_pfn(tdr));
  if (!td || td->sept_levels == 0 || td->tdcx.size() <= cfg_.sept_root_tdcs_index) {
    return std::nullopt;
  }
  return WalkRoot{&mem_, td->tdcx[cfg_.sept_root_tdcs_index],
                  td->sept_levels == 5 ? Stage2Format::kEpt5 : Stage2Format::kEpt4};
}

bool TdxModule::tlb_tracked(Hpa tdr, uint64_t bepoch) const {
  const Td* td = td_by_pfn(hpa_to_pfn(tdr));
  return td && is_tlb_tracked(*td, bepoch);
}

// ---------------------------------------------------------------------------------------------
// Statistics

unsigned TdxModule::status_index(uint64_t s) const {
  const auto codes = known_status_codes();
  const uint64_t c = status_code(s);
  for (size_t i = 0; i < codes.size(); ++i) {
    if (codes[i] == c) return static_cast<unsigned>(i);
  }
  return static_cast<unsigned>(codes.size());
}

void TdxModule::account(const TdxResult& r) {
  const unsigned i = static_cast<unsigned>(r.leaf);
  if (i < kNumLeaves) {
    ++stats_.calls[i];
    stats_.cycles[i] += r.cost.count();
    if (tdx::is_error(r.status)) ++stats_.errors[i];
    const uint64_t c = status_code(r.status);
    if (c == kOperandBusy || c == kOperandBusyHostPriority || c == kPreviousTlbEpochBusy) {
      ++stats_.busy[i];
    }
  }
  ++status_counts_[status_index(r.status)];
  for (size_t k = 0; k < std::size(kAllPageTypes); ++k) {
    pages_by_type_[k] = static_cast<double>(pamt_.pages(kAllPageTypes[k]));
  }
  tds_live_ = static_cast<double>(tds_.size());
}

void TdxModule::describe_stats(StatVisitor& v) const {
  for (unsigned i = 0; i < kNumLeaves; ++i) {
    const LeafInfo& li = info_of(static_cast<Leaf>(i));
    const std::string p = std::string(li.stat) + ".";
    const std::string what = std::string(li.name);
    v.counter(p + "calls", stats_.calls[i], "calls", what + " calls completed");
    v.counter(p + "errors", stats_.errors[i], "calls", what + " calls that returned an error");
    v.counter(p + "busy", stats_.busy[i], "calls",
              what +
                  " calls that returned TDX_OPERAND_BUSY, _BUSY_HOST_PRIORITY or "
                  "TDX_PREVIOUS_TLB_EPOCH_BUSY");
    v.counter(p + "cycles", stats_.cycles[i], "cycles", what + " cycles charged");
  }
  const auto codes = known_status_codes();
  for (size_t i = 0; i < codes.size(); ++i) {
    const std::string n(status_name(codes[i]));
    v.counter("status." + n, status_counts_[i], "results", "results with status " + n);
  }
  v.counter("status.TDX_UNKNOWN_STATUS", status_counts_[codes.size()], "results",
            "results with a status outside the model's list");
  for (size_t k = 0; k < std::size(kAllPageTypes); ++k) {
    const std::string n(name_of(kAllPageTypes[k]));
    v.value("pamt.pages." + n, pages_by_type_[k], "pages",
            "4 KiB-equivalents in TDMRs whose PAMT type is " + n);
  }
  v.counter("tds_created", stats_.tds_created, "TDs", "TDH.MNG.CREATE successes");
  v.counter("tds_reclaimed", stats_.tds_reclaimed, "TDs", "TDR pages reclaimed (TD gone)");
  v.value("tds_live", tds_live_, "TDs", "TDs whose TDR is not yet reclaimed");
  v.counter("epochs", stats_.epochs, "epochs", "TD epoch increments by TDH.MEM.TRACK");
  v.value("max_td_epoch", max_epoch_, "epoch", "highest TD epoch reached by any TD");
  v.counter("invepts", stats_.invepts, "count",
            "INVEPTs on TD entry because the TD epoch moved since the vCPU's last entry");
  v.counter("td_entries", stats_.td_entries, "entries", "successful TDH.VP.ENTER");
  v.counter("td_exits", stats_.td_exits, "exits", "TD exits to the host VMM");
  v.counter("ve_injected", stats_.ve_injected, "count",
            "EPT violations on PENDING pages turned into a guest #VE");
  v.counter("pages_zeroed", stats_.pages_zeroed, "pages",
            "4 KiB pages initialised with MOVDIR64B under a TD key");
  v.counter("pages_copied", stats_.pages_copied, "pages",
            "4 KiB pages copied in by TDH.MEM.PAGE.ADD");
  v.counter("sha384_blocks", stats_.sha384_blocks, "blocks",
            "SHA-384 128-byte compressions for MRTD");
  v.counter("accept_interrupts", stats_.accept_interrupts, "count",
            "2 MiB TDG.MEM.PAGE.ACCEPTs interrupted and left resumable");
  v.counter("host_priority_sets", stats_.host_priority_sets, "count",
            "host SEAMCALLs that found an S-EPT entry locked by a guest TDCALL and set its "
            "host-priority bit TDHP (the guest's ACCEPTs on it then get "
            "TDX_OPERAND_BUSY_HOST_PRIORITY until the host has locked it)");
}

}  // namespace cvmsim::tdx
