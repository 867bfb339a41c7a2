// TdxModule: the SEAMCALLs that change the Secure EPT and MRTD (tdx-snp.md A2.3, A6, A7).
// Each begin_* runs the module's checks in the module's order (M src/vmm_dispatcher/api_calls/
// tdh_mem_*.c): TDR, TD state, page info, GPA, S-EPT tree lock, walk, entry lock, entry state,
// then the leaf's own checks; the commit lambda is what runs after "ALL_CHECKS_PASSED".
#include <array>
#include <cstring>

#include "hw/mmu/stage2_table.h"
#include "models/tdx/tdx_module_internal.h"

namespace cvmsim::tdx {

using namespace status;

namespace {

bool in(SeptState s, std::initializer_list<SeptState> set) {
  for (SeptState x : set) {
    if (x == s) return true;
  }
  return false;
}

// A 128-byte MRTD update block: the ASCII leaf name, then the GPA at byte 16 [layout assumed:
// M uses a name field followed by the GPA; the exact offsets are not in the spec].
std::array<uint8_t, Sha384::kBlockBytes> measurement_block(std::string_view name, Gpa gpa) {
  std::array<uint8_t, Sha384::kBlockBytes> b{};
  std::memcpy(b.data(), name.data(), std::min<size_t>(name.size(), 16));
  const uint64_t g = gpa.value();
  for (int i = 0; i < 8; ++i) b[16 + i] = static_cast<uint8_t>(g >> (8 * i));
  return b;
}

}  // namespace

bool TdxModule::sept_prologue(TdxTicket& t, Hpa tdr, Leaf leaf, Gpa gpa, unsigned level,
                              unsigned min_level, int max_level, LockMode tree_mode, Td** out,
                              Walk* w) {
  Td* td = nullptr;
  if (!check_tdr(t, tdr, operand::kRdx, LockMode::kShared, &td)) return false;
  if (!check_td_state(t, *td, leaf)) return false;
  const unsigned max = max_level < 0 ? td->sept_levels - 1 : static_cast<unsigned>(max_level);
  if (!check_page_info(t, *td, gpa, level, min_level, max)) return false;
  // lock_sept_check_and_walk_private_gpa: GPA, tree lock, walk (A4, A5).
  if (!gpa_valid_private(*td, gpa)) return fail(t, with_operand(kOperandInvalid, operand::kRcx));
  if (!lock_sept_tree(t, *td, tree_mode)) return false;
  if (!walk_to_level(t, *td, gpa, level, w)) return false;
  cov_sept(t, w->entry, w->raw);
  if (!lock_entry_host(t, w)) return false;
  *out = td;
  return true;
}

// ---------------------------------------------------------------------------------------------
// TDH.MEM.SEPT.ADD (A2.3): FREE (new S-EPT page) or NL_MAPPED (allow_existing) -> NL_MAPPED.

TdxTicket TdxModule::begin_mem_sept_add(Hpa tdr, Gpa gpa, unsigned level, Hpa page,
                                        bool allow_existing) {
  TdxTicket t = start(Leaf::kMemSeptAdd, cfg_.costs.seamcall);
  Td* td = nullptr;
  Walk w;
  if (!sept_prologue(t, tdr, Leaf::kMemSeptAdd, gpa, level, 1, -1, LockMode::kShared, &td, &w)) {
    return t;
  }
  const SeptState s = sept_state_of(w.raw);
  if (s != SeptState::kFree && s != SeptState::kNlMapped) {
    set_sept_error_details(t, w.raw, w.level);
    fail(t, with_operand(kEptEntryStateIncorrect, operand::kRcx));
    return t;
  }
  if (s == SeptState::kNlMapped) {
    if (!allow_existing) {
      set_sept_error_details(t, w.raw, w.level);
      fail(t, with_operand(kEptEntryStateIncorrect, operand::kRcx));
      return t;
    }
    t.result_.r8 = page.value() | (uint64_t{1} << 63);  // "page not used" (version 1)
    return t;
  }
  if (!check_page(t, page, operand::kR8, PageSize::k4K, LockMode::kExclusive, PageType::kNda)) {
    return t;
  }
  charge(t, cfg_.costs.zero_4k);
  const Hpa entry = w.entry;
  t.commit_ = [this, td, page, entry](TdxTicket&) {
    const Pfn f = hpa_to_pfn(page);
    init_sept_page(f, *td);
    pamt_.assign(f, PageSize::k4K, PageType::kEpt, td->tdr);
    ++td->chldcnt;
    write_entry(entry, SeptCodec::non_leaf(f, false) | SeptBits::kTdel);  // unlocked on release
  };
  return t;
}

// ---------------------------------------------------------------------------------------------
// TDH.MEM.PAGE.ADD (A2.3): FREE 4 KiB -> MAPPED, copy with MOVDIR64B, MRTD update; TDR held
// exclusively, which serialises the whole S-EPT (A5), so no tree or entry lock.

TdxTicket TdxModule::begin_mem_page_add(Hpa tdr, Gpa gpa, Hpa page, Hpa source) {
  TdxTicket t = start(Leaf::kMemPageAdd, cfg_.costs.seamcall);
  Td* td = nullptr;
  if (!check_tdr(t, tdr, operand::kRdx, LockMode::kExclusive, &td)) return t;
  if (!check_td_state(t, *td, Leaf::kMemPageAdd)) return t;
  if (!check_page_info(t, *td, gpa, 0, 0, 0)) return t;
  if (!gpa_valid_private(*td, gpa)) {
    fail(t, with_operand(kOperandInvalid, operand::kRcx));
    return t;
  }
  Walk w = sept_walk(*td, gpa, 0);
  charge(t, cfg_.costs.sept_level * w.levels_read);
  if (!w.reached()) {
    set_sept_error_details(t, w.raw, w.level);
    fail(t, with_operand(kEptWalkFailed, operand::kRcx));
    return t;
  }
  cov_sept(t, w.entry, w.raw);
  if (sept_state_of(w.raw) != SeptState::kFree) {
    set_sept_error_details(t, w.raw, w.level);
    fail(t, with_operand(kEptEntryStateIncorrect, operand::kRcx));
    return t;
  }
  // shared_hpa_check (A1): the source must carry a shared (non-TDX) KeyID.
  const Hpa src(source.value() & ~hkid_mask_);
  if ((source.value() & (kPageBytes - 1)) != 0 || hkid_of(source) >= cfg_.private_hkid_min ||
      (source.value() >> cfg_.max_pa) != 0 || !mem_.contains(src, kPageBytes)) {
    fail(t, with_operand(kOperandInvalid, operand::kR9));
    return t;
  }
  if (!check_page(t, page, operand::kR8, PageSize::k4K, LockMode::kExclusive, PageType::kNda)) {
    return t;
  }
  charge(t, cfg_.costs.copy_4k + cfg_.costs.sha384_block);
  const Hpa entry = w.entry;
  t.commit_ = [this, td, gpa, page, src, entry](TdxTicket&) {
    const Pfn f = hpa_to_pfn(page);
    std::vector<uint8_t> buf(kPageBytes);
    (void)fw_.read_plain(src, buf);
    (void)fw_.write_plain(page, buf);
    td_frame_meta(f, *td);
    ++stats_.pages_copied;
    write_entry(entry, SeptCodec::leaf(f, SeptState::kMapped));
    const auto block = measurement_block("MEM.PAGE.ADD", gpa);
    td->mrtd_ctx.update(block);
    ++stats_.sha384_blocks;
    ++td->chldcnt;
    pamt_.assign(f, PageSize::k4K, PageType::kReg, td->tdr);
  };
  return t;
}

// ---------------------------------------------------------------------------------------------
// TDH.MR.EXTEND (A2.3): 256 B of a MAPPED page: a header block and two data blocks.

TdxTicket TdxModule::begin_mr_extend(Hpa tdr, Gpa gpa) {
  TdxTicket t = start(Leaf::kMrExtend, cfg_.costs.seamcall);
  Td* td = nullptr;
  if (!check_tdr(t, tdr, operand::kRdx, LockMode::kExclusive, &td)) return t;
  if (!check_td_state(t, *td, Leaf::kMrExtend)) return t;
  if ((gpa.value() & 255) != 0 || !gpa_valid_private(*td, gpa)) {
    fail(t, with_operand(kOperandInvalid, operand::kRcx));
    return t;
  }
  Walk w = sept_walk(*td, gpa, 0);
  charge(t, cfg_.costs.sept_level * w.levels_read);
  cov_sept(t, w.entry, w.raw);
  if (!SeptCodec::is_leaf(w.raw) || (w.raw & SeptBits::kRwx) == 0) {
    set_sept_error_details(t, w.raw, w.level);
    fail(t, with_operand(kEptEntryNotPresent, operand::kRcx));  // A2.3: walk failure
    return t;
  }
  if (sept_state_of(w.raw) != SeptState::kMapped) {
    set_sept_error_details(t, w.raw, w.level);
    fail(t, with_operand(kEptEntryStateIncorrect, operand::kRcx));
    return t;
  }
  const SeptEntry e = SeptCodec::decode(w.raw, w.level);
  const Hpa data = e.hpa() + (gpa.value() & (Stage2Table::span_of(w.level) - 1));
  charge(t, 3 * cfg_.costs.sha384_block);
  t.commit_ = [this, td, gpa, data](TdxTicket&) {
    const auto header = measurement_block("MR.EXTEND", gpa);
    td->mrtd_ctx.update(header);
    std::array<uint8_t, 256> chunk{};
    (void)fw_.read_plain(data, chunk);  // read under the TD's key by the module
    td->mrtd_ctx.update(chunk);
    stats_.sha384_blocks += 3;
  };
  return t;
}

// TDH.MR.FINALIZE (A2.3): MRTD final, op state RUNNABLE (TLB tracking required from now, A6).
TdxTicket TdxModule::begin_mr_finalize(Hpa tdr) {
  TdxTicket t = start(Leaf::kMrFinalize, cfg_.costs.seamcall);
  Td* td = nullptr;
  if (!check_tdr(t, tdr, operand::kRcx, LockMode::kExclusive, &td)) return t;
  if (!check_td_state(t, *td, Leaf::kMrFinalize)) return t;
  charge(t, cfg_.costs.sha384_block);
  t.commit_ = [this, td](TdxTicket&) {
    td->mrtd = td->mrtd_ctx.finalize();
    ++stats_.sha384_blocks;
    td->finalized = true;
    td->op_state = OpState::kRunnable;
  };
  return t;
}

// ---------------------------------------------------------------------------------------------
// TDH.MEM.PAGE.AUG (A2.3): FREE/REMOVED -> PENDING, 4 KiB or 2 MiB; the page is not zeroed here.

TdxTicket TdxModule::begin_mem_page_aug(Hpa tdr, Gpa gpa, PageSize size, Hpa page) {
  TdxTicket t = start(Leaf::kMemPageAug, cfg_.costs.seamcall);
  Td* td = nullptr;
  Walk w;
  if (!sept_prologue(t, tdr, Leaf::kMemPageAug, gpa, level_of(size), 0, 1, LockMode::kShared, &td,
                     &w)) {
    return t;
  }
  const SeptState s = sept_state_of(w.raw);
  if (s != SeptState::kFree && s != SeptState::kRemoved) {
    set_sept_error_details(t, w.raw, w.level);
    fail(t, with_operand(kEptEntryStateIncorrect, operand::kRcx));
    return t;
  }
  // check_and_lock_free_range_hpa: PT_NDA, and for 2 MiB the whole range free (A7).
  if (!check_page(t, page, operand::kR8, size, LockMode::kExclusive, PageType::kNda)) return t;
  const Hpa entry = w.entry;
  t.commit_ = [this, td, size, page, entry](TdxTicket&) {
    const Pfn f = hpa_to_pfn(page);
    write_entry(entry, SeptCodec::leaf(f, SeptState::kPending));
    td->chldcnt += frames_of(size);
    pamt_.assign(f, size, PageType::kReg, td->tdr);
  };
  return t;
}

// ---------------------------------------------------------------------------------------------
// TDH.MEM.RANGE.BLOCK (A2.3): NL_MAPPED -> NL_BLOCKED, MAPPED/BLOCKEDW -> BLOCKED,
// PENDING* -> PENDING_BLOCKED; PAMT.BEPOCH <- TD epoch (A6).

TdxTicket TdxModule::begin_mem_range_block(Hpa tdr, Gpa gpa, unsigned level) {
  TdxTicket t = start(Leaf::kMemRangeBlock, cfg_.costs.seamcall);
  Td* td = nullptr;
  Walk w;
  if (!sept_prologue(t, tdr, Leaf::kMemRangeBlock, gpa, level, 0, -1, LockMode::kExclusive, &td,
                     &w)) {
    return t;
  }
  const SeptState s = sept_state_of(w.raw);
  if (!in(s, {SeptState::kNlMapped, SeptState::kMapped, SeptState::kBlockedW, SeptState::kPending,
              SeptState::kPendingBlockedW})) {
    set_sept_error_details(t, w.raw, level);
    fail(t, with_operand(info_of(s).any_blocked ? kGpaRangeAlreadyBlocked : kEptEntryStateIncorrect,
                         operand::kRcx));
    return t;
  }
  const Hpa entry = w.entry;
  const uint64_t raw = w.raw;
  t.commit_ = [this, td, entry, raw, level, s](TdxTicket&) {
    SeptState to = SeptState::kPendingBlocked;
    if (s == SeptState::kNlMapped) to = SeptState::kNlBlocked;
    if (s == SeptState::kMapped || s == SeptState::kBlockedW) to = SeptState::kBlocked;
    write_entry(entry, SeptCodec::with_state(raw, to));
    // The epoch is sampled after the entry is blocked (M tdh_mem_range_block.c).
    const SeptEntry e = SeptCodec::decode(raw, level);
    if (e.leaf) {
      pamt_.set_bepoch(e.pfn, static_cast<PageSize>(level), td->td_epoch);
    } else {
      pamt_.set_bepoch(e.pfn, PageSize::k4K, td->td_epoch);  // the child S-EPT page
    }
  };
  return t;
}

// ---------------------------------------------------------------------------------------------
// TDH.MEM.TRACK (A6): td_epoch++ unless a vCPU still runs in the previous epoch.

TdxTicket TdxModule::begin_mem_track(Hpa tdr) {
  TdxTicket t = start(Leaf::kMemTrack, cfg_.costs.seamcall);
  Td* td = nullptr;
  if (!check_tdr(t, tdr, operand::kRcx, LockMode::kShared, &td)) return t;
  if (!check_td_state(t, *td, Leaf::kMemTrack)) return t;
  charge(t, cfg_.costs.lock);
  if (!td->epoch_lock.try_acquire(LockMode::kExclusive)) {
    fail(t, with_operand(kOperandBusy, operand::kTdEpoch));
    return t;
  }
  t.held_.push_back(
      TdxHeldLock{TdxHeldLock::kEpoch, LockMode::kExclusive, td->tdr, PageSize::k4K, Hpa(), 0});
  if (td->refcount[1 - (td->td_epoch & 1)] != 0) {
    fail(t, kPreviousTlbEpochBusy);
    return t;
  }
  t.commit_ = [this, td](TdxTicket&) {
    ++td->td_epoch;
    ++stats_.epochs;
    max_epoch_ = std::max(max_epoch_, static_cast<double>(td->td_epoch));
  };
  return t;
}

// ---------------------------------------------------------------------------------------------
// TDH.MEM.RANGE.UNBLOCK (A2.3): *BLOCKED -> back, once the block is TLB-tracked.

TdxTicket TdxModule::begin_mem_range_unblock(Hpa tdr, Gpa gpa, unsigned level) {
  TdxTicket t = start(Leaf::kMemRangeUnblock, cfg_.costs.seamcall);
  Td* td = nullptr;
  Walk w;
  if (!sept_prologue(t, tdr, Leaf::kMemRangeUnblock, gpa, level, 0, -1, LockMode::kExclusive, &td,
                     &w)) {
    return t;
  }
  const SeptState s = sept_state_of(w.raw);
  if (!in(s, {SeptState::kNlBlocked, SeptState::kBlocked, SeptState::kPendingBlocked})) {
    set_sept_error_details(t, w.raw, level);
    fail(t, with_operand(kEptEntryStateIncorrect, operand::kRcx));
    return t;
  }
  const SeptEntry e = SeptCodec::decode(w.raw, level);
  if (info_of(s).tlb_tracking_required && op_state_tracking_required(td->op_state)) {
    const uint64_t bepoch = e.leaf ? pamt_.entry(e.pfn, static_cast<PageSize>(level)).bepoch
                                   : pamt_.entry(e.pfn, PageSize::k4K).bepoch;
    if (!is_tlb_tracked(*td, bepoch)) {
      fail(t, with_operand(kTlbTrackingNotDone, operand::kRcx));
      return t;
    }
  }
  const Hpa entry = w.entry;
  const uint64_t raw = w.raw;
  t.commit_ = [this, entry, raw, s](TdxTicket&) {
    SeptState to = SeptState::kPending;
    if (s == SeptState::kNlBlocked) to = SeptState::kNlMapped;
    if (s == SeptState::kBlocked) to = SeptState::kMapped;
    write_entry(entry, SeptCodec::with_state(raw, to));
  };
  return t;
}

// ---------------------------------------------------------------------------------------------
// TDH.MEM.PAGE.REMOVE (A2.3): leaf -> FREE, PAMT -> PT_NDA; once the TD runs, only a BLOCKED
// and TLB-tracked entry (A6). The page's contents stay (not cleared).

TdxTicket TdxModule::begin_mem_page_remove(Hpa tdr, Gpa gpa, PageSize size) {
  TdxTicket t = start(Leaf::kMemPageRemove, cfg_.costs.seamcall);
  Td* td = nullptr;
  Walk w;
  if (!sept_prologue(t, tdr, Leaf::kMemPageRemove, gpa, level_of(size), 0, 2, LockMode::kShared,
                     &td, &w)) {
    return t;
  }
  const SeptState s = sept_state_of(w.raw);
  if (!SeptCodec::is_leaf(w.raw) ||
      !in(s, {SeptState::kMapped, SeptState::kBlocked, SeptState::kBlockedW, SeptState::kPending,
              SeptState::kPendingBlocked, SeptState::kPendingBlockedW})) {
    set_sept_error_details(t, w.raw, level_of(size));
    fail(t, with_operand(kEptEntryStateIncorrect, operand::kRcx));
    return t;
  }
  const SeptEntry e = SeptCodec::decode(w.raw, w.level);
  if (!lock_pamt(t, e.pfn, size, LockMode::kExclusive, operand::kRcx)) return t;
  if (info_of(s).tlb_tracking_required && op_state_tracking_required(td->op_state)) {
    if (!info_of(s).any_blocked) {
      set_sept_error_details(t, w.raw, level_of(size));
      fail(t, with_operand(kGpaRangeNotBlocked, operand::kRcx));
      return t;
    }
    if (!is_tlb_tracked(*td, pamt_.entry(e.pfn, size).bepoch)) {
      fail(t, with_operand(kTlbTrackingNotDone, operand::kRcx));
      return t;
    }
  }
  const Hpa entry = w.entry;
  const Pfn f = e.pfn;
  t.commit_ = [this, td, entry, f, size](TdxTicket& tk) {
    write_entry(entry, kSepteInitValue);
    td->chldcnt -= frames_of(size);
    pamt_.make_nda(f, size);
    tk.result_.rcx = pfn_to_hpa(f).value();
  };
  return t;
}

// ---------------------------------------------------------------------------------------------
// TDH.MEM.SEPT.REMOVE (A2.3): NL_* -> FREE when all 512 children are FREE; the S-EPT page goes
// back to PT_NDA (M tdh_mem_sept_remove.c).

// The S-EPT table checks shared by SEPT.REMOVE and PROMOTE (A2.3): the entry is NL_MAPPED or
// NL_BLOCKED; the table page's PAMT entry is locked; once the TD can run, the entry must be
// NL_BLOCKED and its block epoch tracked (A6). The table's frame comes back in `table`.
bool TdxModule::check_blocked_table(TdxTicket& t, Td& td, const Walk& w, unsigned level,
                                    Pfn* table) {
  const SeptState s = sept_state_of(w.raw);
  if (s != SeptState::kNlMapped && s != SeptState::kNlBlocked) {
    set_sept_error_details(t, w.raw, level);
    return fail(t, with_operand(kEptEntryStateIncorrect, operand::kRcx));
  }
  *table = SeptCodec::pfn(w.raw);
  if (!lock_pamt(t, *table, PageSize::k4K, LockMode::kExclusive, operand::kRcx)) return false;
  if (op_state_tracking_required(td.op_state)) {
    if (s != SeptState::kNlBlocked) {
      set_sept_error_details(t, w.raw, level);
      return fail(t, with_operand(kGpaRangeNotBlocked, operand::kRcx));
    }
    if (!is_tlb_tracked(td, pamt_.entry(*table, PageSize::k4K).bepoch))
      return fail(t, with_operand(kTlbTrackingNotDone, operand::kRcx));
  }
  return true;
}

TdxTicket TdxModule::begin_mem_sept_remove(Hpa tdr, Gpa gpa, unsigned level) {
  TdxTicket t = start(Leaf::kMemSeptRemove, cfg_.costs.seamcall);
  Td* td = nullptr;
  Walk w;
  if (!sept_prologue(t, tdr, Leaf::kMemSeptRemove, gpa, level, 1, -1, LockMode::kExclusive, &td,
                     &w)) {
    return t;
  }
  Pfn child;
  if (!check_blocked_table(t, *td, w, level, &child)) return t;
  charge(t, cfg_.costs.sept_page_scan);
  for (unsigned i = 0; i < kEntriesPerTable; ++i) {
    if (sept_state_of(read_entry(pfn_to_hpa(child) + 8 * i)) != SeptState::kFree) {
      set_sept_error_details(t, w.raw, level);
      fail(t, with_operand(kEptPageNotFree, operand::kRcx));
      return t;
    }
  }
  const Hpa entry = w.entry;
  t.commit_ = [this, td, entry, child](TdxTicket& tk) {
    write_entry(entry, kSepteInitValue);
    --td->chldcnt;
    pamt_.make_nda(child, PageSize::k4K);
    mem_.mark_table(child, false);
    tk.result_.rcx = pfn_to_hpa(child).value();
  };
  return t;
}

// ---------------------------------------------------------------------------------------------
// TDH.MEM.PAGE.DEMOTE (A2.3): a 2 MiB/1 GiB leaf becomes 512 leaves one size down in a new
// S-EPT page. The children are MAPPED (parent MAPPED/BLOCKED) or PENDING (parent PENDING*) and
// the parent NL_MAPPED [assumed: the spec does not give the resulting states]. The module's
// interrupt checks during DEMOTE are not modelled.

TdxTicket TdxModule::begin_mem_page_demote(Hpa tdr, Gpa gpa, PageSize size, Hpa new_sept_page) {
  TdxTicket t = start(Leaf::kMemPageDemote, cfg_.costs.seamcall);
  Td* td = nullptr;
  Walk w;
  const unsigned level = level_of(size);
  if (!sept_prologue(t, tdr, Leaf::kMemPageDemote, gpa, level, 1, 2, LockMode::kShared, &td, &w)) {
    return t;
  }
  const SeptState s = sept_state_of(w.raw);
  if (!SeptCodec::is_leaf(w.raw) || !in(s, {SeptState::kMapped, SeptState::kBlocked,
                                            SeptState::kPending, SeptState::kPendingBlocked})) {
    set_sept_error_details(t, w.raw, level);
    fail(t, with_operand(kEptEntryStateIncorrect, operand::kRcx));
    return t;
  }
  const SeptEntry e = SeptCodec::decode(w.raw, level);
  if (!lock_pamt(t, e.pfn, size, LockMode::kExclusive, operand::kRcx)) return t;
  if (op_state_tracking_required(td->op_state)) {
    if (!info_of(s).any_blocked) {
      set_sept_error_details(t, w.raw, level);
      fail(t, with_operand(kGpaRangeNotBlocked, operand::kRcx));
      return t;
    }
    if (!is_tlb_tracked(*td, pamt_.entry(e.pfn, size).bepoch)) {
      fail(t, with_operand(kTlbTrackingNotDone, operand::kRcx));
      return t;
    }
  }
  if (!check_page(t, new_sept_page, operand::kR8, PageSize::k4K, LockMode::kExclusive,
                  PageType::kNda)) {
    return t;
  }
  charge(t, cfg_.costs.zero_4k + cfg_.costs.sept_page_scan);
  const Hpa entry = w.entry;
  t.commit_ = [this, td, entry, e, s, size, new_sept_page](TdxTicket&) {
    const Pfn table = hpa_to_pfn(new_sept_page);
    const PageSize child_size = static_cast<PageSize>(level_of(size) - 1);
    const SeptState child_state = (s == SeptState::kMapped || s == SeptState::kBlocked)
                                      ? SeptState::kMapped
                                      : SeptState::kPending;
    init_sept_page(table, *td);
    for (unsigned i = 0; i < kEntriesPerTable; ++i) {
      const Pfn cf = e.pfn + i * frames_of(child_size);
      (void)fw_.write_u64(pfn_to_hpa(table) + 8 * i, SeptCodec::leaf(cf, child_state));
    }
    pamt_.make_nda(e.pfn, size);
    for (unsigned i = 0; i < kEntriesPerTable; ++i) {
      pamt_.assign(e.pfn + i * frames_of(child_size), child_size, PageType::kReg, td->tdr);
    }
    pamt_.assign(table, PageSize::k4K, PageType::kEpt, td->tdr);
    ++td->chldcnt;
    write_entry(entry, SeptCodec::non_leaf(table, false) | SeptBits::kTdel);
  };
  return t;
}

// ---------------------------------------------------------------------------------------------
// TDH.MEM.PAGE.PROMOTE (A2.3): 512 contiguous, aligned leaves in one state (all MAPPED or all
// PENDING) become one leaf; the freed S-EPT page goes back to the host (PT_NDA).

TdxTicket TdxModule::begin_mem_page_promote(Hpa tdr, Gpa gpa, PageSize size) {
  TdxTicket t = start(Leaf::kMemPagePromote, cfg_.costs.seamcall);
  Td* td = nullptr;
  Walk w;
  const unsigned level = level_of(size);
  if (!sept_prologue(t, tdr, Leaf::kMemPagePromote, gpa, level, 1, 2, LockMode::kShared, &td, &w)) {
    return t;
  }
  Pfn table;
  if (!check_blocked_table(t, *td, w, level, &table)) return t;
  charge(t, cfg_.costs.sept_page_scan);
  const PageSize child_size = static_cast<PageSize>(level - 1);
  const SeptEntry first = SeptCodec::decode(read_entry(pfn_to_hpa(table)), level - 1);
  bool ok = first.leaf &&
            (first.state == SeptState::kMapped || first.state == SeptState::kPending) &&
            first.pfn.is_aligned(size);
  for (unsigned i = 0; ok && i < kEntriesPerTable; ++i) {
    const SeptEntry c = SeptCodec::decode(read_entry(pfn_to_hpa(table) + 8 * i), level - 1);
    ok = c.leaf && c.state == first.state && !c.locked && c.accept_counter == 0 &&
         c.pfn == first.pfn + i * frames_of(child_size);
  }
  if (!ok) {
    set_sept_error_details(t, w.raw, level);
    fail(t, with_operand(kEptInvalidPromoteConditions, operand::kRcx));
    return t;
  }
  const Hpa entry = w.entry;
  t.commit_ = [this, td, entry, table, first, size, child_size](TdxTicket& tk) {
    for (unsigned i = 0; i < kEntriesPerTable; ++i) {
      pamt_.make_nda(first.pfn + i * frames_of(child_size), child_size);
    }
    pamt_.assign(first.pfn, size, PageType::kReg, td->tdr);
    write_entry(entry, SeptCodec::leaf(first.pfn, first.state) | SeptBits::kTdel);
    pamt_.make_nda(table, PageSize::k4K);
    mem_.mark_table(table, false);
    --td->chldcnt;
    tk.result_.rcx = pfn_to_hpa(table).value();
  };
  return t;
}

// ---------------------------------------------------------------------------------------------
// TDH.MEM.SEPT.RD (A2.3): any state; RCX/RDX = the architectural entry and level/state.

TdxTicket TdxModule::begin_mem_sept_rd(Hpa tdr, Gpa gpa, unsigned level) {
  TdxTicket t = start(Leaf::kMemSeptRd, cfg_.costs.seamcall);
  Td* td = nullptr;
  if (!check_tdr(t, tdr, operand::kRdx, LockMode::kShared, &td)) return t;
  if (!check_td_state(t, *td, Leaf::kMemSeptRd)) return t;
  if (!check_page_info(t, *td, gpa, level, 0, td->sept_levels - 1)) return t;
  if (!gpa_valid_private(*td, gpa)) {
    fail(t, with_operand(kOperandInvalid, operand::kRcx));
    return t;
  }
  Walk w = sept_walk(*td, gpa, level);
  charge(t, cfg_.costs.sept_level * w.levels_read);
  set_sept_error_details(t, w.raw, w.level);
  if (!w.reached()) fail(t, with_operand(kEptWalkFailed, operand::kRcx));
  return t;
}

}  // namespace cvmsim::tdx
