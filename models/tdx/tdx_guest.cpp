// TdxModule: vCPU entry and exit (A6 epoch tracking), the TDCALLs a guest TD issues
// (TDG.MEM.PAGE.ACCEPT, TDG.VP.VMCALL) and the module's EPT-violation dispatch (A8).
#include "models/tdx/tdx_module_internal.h"

namespace cvmsim::tdx {

using namespace status;

// KVM's checks on MapGPA (L-kvm-tdx tdx_map_gpa, A8) [order of the checks assumed].
uint64_t check_map_gpa(Gpa start, uint64_t size, unsigned shared_bit) {
  const uint64_t g = start.value();
  const uint64_t width_limit = uint64_t{1} << (shared_bit + 1);
  if (size == 0 || g + size < g || g + size > width_limit ||
      ((g >> shared_bit) & 1) != (((g + size - 1) >> shared_bit) & 1)) {
    return tdvmcall_status::kInvalidOperand;
  }
  if ((g & (kPageBytes - 1)) != 0 || (size & (kPageBytes - 1)) != 0) {
    return tdvmcall_status::kAlignError;
  }
  return tdvmcall_status::kSuccess;
}

// ---------------------------------------------------------------------------------------------
// TDH.VP.ENTER (A6.1): adjust_tlb_tracking_state, then the vCPU runs in the TD.

TdxTicket TdxModule::begin_vp_enter(Hpa tdvpr, unsigned lp) {
  TdxTicket t = start(Leaf::kVpEnter, cfg_.costs.seamcall);
  // The TDVPR is locked exclusively for as long as the vCPU runs (BUSY if it already does).
  if (!check_page(t, tdvpr, operand::kRcx, PageSize::k4K, LockMode::kExclusive, PageType::kTdvpr)) {
    return t;
  }
  Vcpu* v = vcpus_.at(hpa_to_pfn(tdvpr).value()).get();
  Td* td = td_by_pfn(v->tdr);
  cov_td(t, *td);
  if (!lock_pamt(t, td->tdr, PageSize::k4K, LockMode::kShared, operand::kTdr)) return t;
  // A9: a FATAL TD cannot be entered (TDX_TD_FATAL from the build-state check).
  if (!check_td_state(t, *td, Leaf::kVpEnter)) return t;
  if (!v->initialized) {
    fail(t, kVcpuStateIncorrect);
    return t;
  }
  if (v->lp >= 0 && v->lp != static_cast<int>(lp)) {
    fail(t, kVcpuAssociated);  // VP.FLUSH on the old LP first [assumed code]
    return t;
  }
  charge(t, cfg_.costs.lock);
  if (!td->epoch_lock.try_acquire(LockMode::kShared)) {
    fail(t, with_operand(kOperandBusy, operand::kTdEpoch));
    return t;
  }
  t.held_.push_back(
      TdxHeldLock{TdxHeldLock::kEpoch, LockMode::kShared, td->tdr, PageSize::k4K, Hpa(), 0});
  charge(t, cfg_.costs.td_entry);
  t.commit_ = [this, td, v, lp](TdxTicket& tk) {
    const bool new_association = v->lp < 0;
    if (new_association) {
      v->lp = static_cast<int>(lp);
      ++td->num_assoc_vcpus;
    }
    const uint64_t e = td->td_epoch;
    ++td->refcount[e & 1];
    if (e != v->vcpu_epoch) {
      // Same LP as before: it may hold stale translations of this TD (A6.1).
      if (!new_association) {
        tk.result_.flush_tlb = true;
        charge(tk, cfg_.costs.invept);
        ++stats_.invepts;
      }
      v->vcpu_epoch = e;
    }
    v->in_td = true;
    ++stats_.td_entries;
    // The TDVPR lock now belongs to the running vCPU, not to this call.
    for (auto it = tk.held_.begin(); it != tk.held_.end(); ++it) {
      if (it->kind == TdxHeldLock::kPamt && it->pfn == v->tdvpr && it->level == PageSize::k4K &&
          it->mode == LockMode::kExclusive) {
        tk.held_.erase(it);
        break;
      }
    }
  };
  return t;
}

// ---------------------------------------------------------------------------------------------
// TD exits

TdxModule::Vcpu* TdxModule::vcpu_in_td(TdxTicket& t, Hpa tdvpr) {
  auto it = vcpus_.find(hpa_to_pfn(tdvpr).value());
  if (it == vcpus_.end() || !it->second->in_td) {
    // Model misuse: only a vCPU inside its TD can issue a TDCALL or fault.
    fail(t, kVcpuStateIncorrect);
    return nullptr;
  }
  return it->second.get();
}

void TdxModule::do_td_exit(Vcpu& v, Td& td, const TdExit& e, TdxResult& r) {
  // The reference taken at entry is dropped (A6.1 [inferred from revert_tlb_tracking_state]).
  if (td.refcount[v.vcpu_epoch & 1] > 0) --td.refcount[v.vcpu_epoch & 1];
  v.in_td = false;
  pamt_.unlock(Pamt::LockRef{v.tdvpr, PageSize::k4K, LockMode::kExclusive});
  r.outcome = GuestOutcome::kTdExit;
  r.exit = e;
  r.cost += Cycles(cfg_.costs.td_exit);
  ++stats_.td_exits;
}

TdxTicket TdxModule::begin_td_exit(Hpa tdvpr) {
  TdxTicket t = start(Leaf::kAsyncExit, 0);
  Vcpu* v = vcpu_in_td(t, tdvpr);
  if (!v) return t;
  cov_td(t, *td_by_pfn(v->tdr));
  t.commit_ = [this, v](TdxTicket& tk) {
    TdExit e;
    e.reason = TdExitReason::kAsync;
    do_td_exit(*v, *td_by_pfn(v->tdr), e, tk.result_);
  };
  return t;
}

TdxResult TdxModule::machine_check(Hpa tdvpr) {
  TdxTicket t = start(Leaf::kAsyncExit, 0);
  auto it = vcpus_.find(hpa_to_pfn(tdvpr).value());
  if (it == vcpus_.end()) {
    fail(t, with_operand(kOperandInvalid, operand::kRcx));
    return complete(std::move(t));
  }
  Vcpu* v = it->second.get();
  cov_td(t, *td_by_pfn(v->tdr));
  t.commit_ = [this, v](TdxTicket& tk) {
    // A9: poison consumed in the TD -> the module marks the TD FATAL.
    Td& td = *td_by_pfn(v->tdr);
    td.fatal = true;
    tk.result_.status = kNonRecoverableTdNonAccessible;
    if (v->in_td) {
      TdExit e;
      e.reason = TdExitReason::kFatal;
      do_td_exit(*v, td, e, tk.result_);
    }
  };
  return complete(std::move(t));
}

// ---------------------------------------------------------------------------------------------
// TDG.VP.VMCALL (A8): every TDVMCALL, MapGPA included, is a TD exit to the host VMM, which
// answers in R10 (tdvmcall_status, check_map_gpa) when it resumes the vCPU.

TdxTicket TdxModule::begin_tdg_vp_vmcall(Hpa tdvpr, const TdvmcallArgs& args) {
  TdxTicket t = start(Leaf::kTdgVpVmcall, cfg_.costs.tdcall);
  Vcpu* v = vcpu_in_td(t, tdvpr);
  if (!v) return t;
  t.commit_ = [this, v, args](TdxTicket& tk) {
    TdExit e;
    e.reason = TdExitReason::kTdvmcall;
    e.vmcall = args;
    if (args.r10 == 0 && args.r11 == kTdvmcallMapGpa) {
      e.gpa = Gpa(args.r12);
      e.size = args.r13;
      const Td& td = *td_by_pfn(v->tdr);
      e.shared = (args.r12 >> shared_bit_of(td)) & 1;
    }
    do_td_exit(*v, *td_by_pfn(v->tdr), e, tk.result_);
  };
  return t;
}

// ---------------------------------------------------------------------------------------------
// EPT-violation dispatch (A8, M td_dispatcher/vm_exits/td_ept_violation.c).

TdxTicket TdxModule::begin_ept_violation(Hpa tdvpr, Gpa gpa, bool write) {
  TdxTicket t = start(Leaf::kEptViolation, 0);
  t.result_.outcome = GuestOutcome::kReturn;
  Vcpu* v = vcpu_in_td(t, tdvpr);
  if (!v) return t;
  Td* td = td_by_pfn(v->tdr);
  const unsigned sbit = shared_bit_of(*td);
  TdExit e;
  e.reason = TdExitReason::kEptViolation;
  e.gpa = gpa;
  e.write = write;
  if ((gpa.value() >> sbit) & 1) {
    // Shared GPA: the host fixes its shared EPT.
    e.shared = true;
    t.commit_ = [this, v, td, e](TdxTicket& tk) { do_td_exit(*v, *td, e, tk.result_); };
    return t;
  }
  // A1 special case: GPAW 48, MAX_PA > 48 and bits between the S bit and MAX_PA-1 set ->
  // #PF(PFEC.RSVD) in the guest, no exit.
  if (!td->gpaw52 && cfg_.max_pa > 48 && (gpa.value() >> 48) != 0) {
    t.result_.outcome = GuestOutcome::kInjectPfRsvd;
    charge(t, cfg_.costs.ve_injection);
    return t;
  }
  const Walk w = sept_walk_leaf(*td, gpa);
  charge(t, cfg_.costs.sept_level * w.levels_read);
  cov_sept(t, w.entry, w.raw);
  const SeptState s = sept_state_of(w.raw);
  e.sept_state = s;
  e.sept_level = w.level;
  if (SeptCodec::is_leaf(w.raw) && info_of(s).pending_guest_acceptable) {
    if (td->sept_ve_disable()) {
      e.eeq = EeqType::kPendingEptViolation;
    } else {
      t.result_.outcome = GuestOutcome::kInjectVe;
      charge(t, cfg_.costs.ve_injection);
      t.commit_ = [this](TdxTicket&) { ++stats_.ve_injected; };
      return t;
    }
  }
  // FREE, BLOCKED, ... (RWX=0, SVE=1): TD exit to the VMM (A8, T4).
  t.commit_ = [this, v, td, e](TdxTicket& tk) { do_td_exit(*v, *td, e, tk.result_); };
  return t;
}

// ---------------------------------------------------------------------------------------------
// TDG.MEM.PAGE.ACCEPT (A8, M tdg_mem_page_accept.c).

TdxTicket TdxModule::begin_tdg_mem_page_accept(Hpa tdvpr, Gpa gpa, PageSize size,
                                               bool interrupt_pending) {
  TdxTicket t = start(Leaf::kTdgMemPageAccept, cfg_.costs.tdcall);
  Vcpu* v = vcpu_in_td(t, tdvpr);
  if (!v) return t;
  Td* td = td_by_pfn(v->tdr);
  const unsigned level = level_of(size);
  // verify_page_info_input(LVL_PT, LVL_PD): 1 GiB is not accepted in TDX 1.5 (A8).
  if (!check_page_info(t, *td, gpa, level, 0, 1) || !gpa_valid_private(*td, gpa)) {
    fail(t, with_operand(kOperandInvalid, operand::kRcx));
    return t;
  }
  // Walk to the requested level without the tree lock.
  const Walk w = sept_walk(*td, gpa, level);
  charge(t, cfg_.costs.sept_level * w.levels_read);
  TdExit violation;
  violation.reason = TdExitReason::kEptViolation;
  violation.gpa = gpa;
  violation.level = level;
  violation.eeq = EeqType::kAccept;
  violation.sept_level = w.level;
  if (!w.reached()) {
    const SeptState s = sept_state_of(w.raw);
    violation.sept_state = s;
    if (SeptCodec::is_leaf(w.raw) && info_of(s).guest_accessible_leaf) {
      fail(t, with_operand(kPageAlreadyAccepted, w.level));  // a larger accepted leaf
      return t;
    }
    // A larger non-accessible leaf (e.g. PENDING 2 MiB for a 4 KiB request) or a missing
    // level: the host must DEMOTE or SEPT.ADD/AUG.
    t.commit_ = [this, v, td, violation](TdxTicket& tk) {
      do_td_exit(*v, *td, violation, tk.result_);
    };
    return t;
  }
  cov_sept(t, w.entry, w.raw);
  // sept_lock_acquire_guest (A5): BUSY if held; BUSY_HOST_PRIORITY if a host call failed on it.
  charge(t, cfg_.costs.lock);
  uint64_t raw = read_entry(w.entry);
  if (raw & SeptBits::kTdel) {
    fail(t, with_operand(kOperandBusy, operand::kRcx));
    return t;
  }
  if (raw & SeptBits::kTdhp) {
    fail(t, with_operand(kOperandBusyHostPriority, operand::kRcx));
    return t;
  }
  raw |= SeptBits::kTdel;
  write_entry(w.entry, raw);
  t.held_.push_back(
      TdxHeldLock{TdxHeldLock::kSeptEntry, LockMode::kExclusive, Pfn(), PageSize::k4K, w.entry, 0});
  const SeptState s = sept_state_of(raw);
  violation.sept_state = s;
  if (s != SeptState::kFree && !SeptCodec::is_leaf(raw)) {
    fail(t, with_operand(kPageSizeMismatch, w.level));  // requested 2 MiB, mapped as 4 KiB
    return t;
  }
  if (SeptCodec::is_leaf(raw) && info_of(s).guest_accessible_leaf) {
    fail(t, with_operand(kPageAlreadyAccepted, w.level));
    return t;
  }
  if (!info_of(s).pending_guest_acceptable || s == SeptState::kInvalid) {
    // FREE here is the lazy-AUG path: the host AUGs and the guest re-executes ACCEPT.
    t.commit_ = [this, v, td, violation](TdxTicket& tk) {
      do_td_exit(*v, *td, violation, tk.result_);
    };
    return t;
  }
  const SeptEntry e = SeptCodec::decode(raw, level);
  const unsigned todo =
      size == PageSize::k4K ? 1 : (interrupt_pending ? 1 : kEntriesPerTable - e.accept_counter);
  charge(t, cfg_.costs.zero_4k * todo);
  const Hpa entry = w.entry;
  t.commit_ = [this, td, entry, raw, e, size, interrupt_pending](TdxTicket& tk) {
    uint64_t copy = raw;
    bool interrupted = false;
    if (size == PageSize::k4K) {
      zero_td_page(e.pfn, *td);
    } else {
      // 4 KiB at a time; ACCEPT_COUNTER (bits 20:12) records progress (A8).
      unsigned counter = e.accept_counter;
      bool done = false;
      do {
        zero_td_page(e.pfn + counter, *td);
        if (counter == kEntriesPerTable - 1) {
          done = true;
          counter = 0;
        } else {
          ++counter;
          interrupted = interrupt_pending;
        }
      } while (!done && !interrupted);
      copy = SeptCodec::with_accept_counter(copy, counter);
    }
    if (!interrupted) {
      const SeptState to =
          e.state == SeptState::kPending ? SeptState::kMapped : SeptState::kExportedDirty;
      copy = SeptCodec::with_state(copy, to);
    } else {
      tk.result_.outcome = GuestOutcome::kInterrupted;
      ++stats_.accept_interrupts;
    }
    // Written from the copy taken when the lock was acquired (M): a TDHP a host set meanwhile
    // is overwritten; the release then clears TDEL.
    write_entry(entry, copy);
  };
  return t;
}

}  // namespace cvmsim::tdx
