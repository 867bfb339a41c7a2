#include "models/tdx/tdx_machines.h"

#include <array>
#include <utility>
#include <vector>

#include "hw/mmu/sept.h"
#include "models/tdx/tdx_status.h"

namespace cvmsim::tdx {

namespace {

std::vector<std::string> sept_state_names() {
  std::vector<std::string> v;
  for (unsigned i = 0; i < kNumSeptStates; ++i) v.emplace_back(name_of(static_cast<SeptState>(i)));
  v.emplace_back(name_of(SeptState::kInvalid));  // index 16 = SeptState::kInvalid
  return v;
}

// Outcomes: index 0 is success (the convention of sm::to_dot); the guest-side results of a call
// that returns success (A8); then the status codes by their A4 names.
const char* const kSuccess = "SUCCESS";

}  // namespace

// ---------------------------------------------------------------------------------------------
// tdx.sept: one S-EPT entry. States are SeptState by value (hw/mmu/sept.h, A2.2); the migration
// states are declared (so that a model producing one is reported, not dropped) but no rule names
// them, since the model does not implement migration. A call is recorded when its walk reached the
// entry it operates on (begin_* of the S-EPT leaves, ACCEPT, the EPT-violation dispatch); calls
// refused before that (TDR, op state, operand checks, a walk that stops above the level) concern no
// entry and are not recorded here.

sm::Machine& sept_machine() {
  static const std::array kLeafOps{"TDH.MEM.SEPT.ADD",
                                   "TDH.MEM.PAGE.ADD",
                                   "TDH.MEM.PAGE.AUG",
                                   "TDH.MR.EXTEND",
                                   "TDH.MEM.RANGE.BLOCK",
                                   "TDH.MEM.RANGE.UNBLOCK",
                                   "TDH.MEM.PAGE.REMOVE",
                                   "TDH.MEM.SEPT.REMOVE",
                                   "TDH.MEM.PAGE.DEMOTE",
                                   "TDH.MEM.PAGE.PROMOTE",
                                   "TDH.MEM.PAGE.PROMOTE(PENDING)",
                                   "TDG.MEM.PAGE.ACCEPT",
                                   "EPT_VIOLATION"};
  // State groups of A2.3.
  using V = std::vector<std::string_view>;
  const V nl{"NL_MAPPED", "NL_BLOCKED"};
  const V leaves{"MAPPED", "BLOCKED", "BLOCKEDW", "PENDING", "PENDING_BLOCKED", "PENDING_BLOCKEDW"};
  const V modelled{"FREE",    "REMOVED",  "NL_MAPPED", "NL_BLOCKED",      "MAPPED",
                   "BLOCKED", "BLOCKEDW", "PENDING",   "PENDING_BLOCKED", "PENDING_BLOCKEDW"};
  const char* A23 = "tdx-snp.md A2.3";
  const char* A5 = "tdx-snp.md A5 (entry lock: busy on contention)";
  const char* A6 = "tdx-snp.md A2.3, A6 (once the TD is runnable: BLOCK and TRACK first)";
  const char* A7 = "tdx-snp.md A7 (the page operand: PAMT type, lock, range)";
  const char* A8 = "tdx-snp.md A8";
  static sm::Machine m(
      "tdx.sept", "TDX Secure-EPT entry states (tdx-snp.md A2.2, A2.3, A8)", "tdx",
      sept_state_names(), std::vector<std::string>(kLeafOps.begin(), kLeafOps.end()),
      {kSuccess, "TD_EXIT", "INJECT_VE", "INTERRUPTED", "TDX_EPT_ENTRY_STATE_INCORRECT",
       "TDX_GPA_RANGE_ALREADY_BLOCKED", "TDX_GPA_RANGE_NOT_BLOCKED", "TDX_TLB_TRACKING_NOT_DONE",
       "TDX_EPT_PAGE_NOT_FREE", "TDX_EPT_INVALID_PROMOTE_CONDITIONS", "TDX_EPT_ENTRY_NOT_PRESENT",
       "TDX_PAGE_ALREADY_ACCEPTED", "TDX_PAGE_SIZE_MISMATCH", "TDX_OPERAND_BUSY",
       "TDX_OPERAND_BUSY_HOST_PRIORITY", "TDX_PAGE_METADATA_INCORRECT", "TDX_OPERAND_INVALID",
       "TDX_OPERAND_ADDR_RANGE_ERROR"},
      {
          // TDH.MEM.SEPT.ADD: FREE -> NL_MAPPED; NL_MAPPED stays with allow_existing (version 1).
          {{"FREE"}, "TDH.MEM.SEPT.ADD", kSuccess, "NL_MAPPED", A23},
          {{"NL_MAPPED"},
           "TDH.MEM.SEPT.ADD",
           kSuccess,
           "=",
           "tdx-snp.md A2.3 (\"already exists\" path, version 1)"},
          {{"NL_MAPPED", "NL_BLOCKED", "REMOVED", "MAPPED", "BLOCKED", "BLOCKEDW", "PENDING",
            "PENDING_BLOCKED", "PENDING_BLOCKEDW"},
           "TDH.MEM.SEPT.ADD",
           "TDX_EPT_ENTRY_STATE_INCORRECT",
           "=",
           A23},
          {{"FREE", "NL_MAPPED"}, "TDH.MEM.SEPT.ADD", "TDX_OPERAND_BUSY", "=", A5},
          {{"FREE"}, "TDH.MEM.SEPT.ADD", "TDX_PAGE_METADATA_INCORRECT", "=", A7},
          {{"FREE"}, "TDH.MEM.SEPT.ADD", "TDX_OPERAND_INVALID", "=", A7},
          {{"FREE"}, "TDH.MEM.SEPT.ADD", "TDX_OPERAND_ADDR_RANGE_ERROR", "=", A7},
          // TDH.MEM.PAGE.ADD: FREE 4 KiB -> MAPPED (build time only).
          {{"FREE"}, "TDH.MEM.PAGE.ADD", kSuccess, "MAPPED", A23},
          {{"REMOVED", "NL_MAPPED", "NL_BLOCKED", "MAPPED", "BLOCKED", "BLOCKEDW", "PENDING",
            "PENDING_BLOCKED", "PENDING_BLOCKEDW"},
           "TDH.MEM.PAGE.ADD",
           "TDX_EPT_ENTRY_STATE_INCORRECT",
           "=",
           A23},
          {{"FREE"}, "TDH.MEM.PAGE.ADD", "TDX_OPERAND_BUSY", "=", A7},
          {{"FREE"}, "TDH.MEM.PAGE.ADD", "TDX_PAGE_METADATA_INCORRECT", "=", A7},
          {{"FREE"},
           "TDH.MEM.PAGE.ADD",
           "TDX_OPERAND_INVALID",
           "=",
           "tdx-snp.md A1 (the source needs a shared KeyID)"},
          {{"FREE"}, "TDH.MEM.PAGE.ADD", "TDX_OPERAND_ADDR_RANGE_ERROR", "=", A7},
          // TDH.MEM.PAGE.AUG: FREE/REMOVED -> PENDING.
          {{"FREE", "REMOVED"}, "TDH.MEM.PAGE.AUG", kSuccess, "PENDING", A23},
          {{"NL_MAPPED", "NL_BLOCKED", "MAPPED", "BLOCKED", "BLOCKEDW", "PENDING",
            "PENDING_BLOCKED", "PENDING_BLOCKEDW"},
           "TDH.MEM.PAGE.AUG",
           "TDX_EPT_ENTRY_STATE_INCORRECT",
           "=",
           A23},
          {{"FREE", "REMOVED"}, "TDH.MEM.PAGE.AUG", "TDX_OPERAND_BUSY", "=", A5},
          {{"FREE", "REMOVED"}, "TDH.MEM.PAGE.AUG", "TDX_PAGE_METADATA_INCORRECT", "=", A7},
          {{"FREE", "REMOVED"}, "TDH.MEM.PAGE.AUG", "TDX_OPERAND_INVALID", "=", A7},
          {{"FREE", "REMOVED"}, "TDH.MEM.PAGE.AUG", "TDX_OPERAND_ADDR_RANGE_ERROR", "=", A7},
          // TDH.MR.EXTEND: a MAPPED page is measured, the state stays; a walk failure is
          // NOT_PRESENT.
          {{"MAPPED"}, "TDH.MR.EXTEND", kSuccess, "=", A23},
          {{"FREE", "REMOVED", "NL_MAPPED", "NL_BLOCKED", "BLOCKED", "PENDING", "PENDING_BLOCKED",
            "PENDING_BLOCKEDW"},
           "TDH.MR.EXTEND",
           "TDX_EPT_ENTRY_NOT_PRESENT",
           "=",
           A23},
          {{"BLOCKEDW"}, "TDH.MR.EXTEND", "TDX_EPT_ENTRY_STATE_INCORRECT", "=", A23},
          // TDH.MEM.RANGE.BLOCK.
          {{"NL_MAPPED"}, "TDH.MEM.RANGE.BLOCK", kSuccess, "NL_BLOCKED", A23},
          {{"MAPPED", "BLOCKEDW"}, "TDH.MEM.RANGE.BLOCK", kSuccess, "BLOCKED", A23},
          {{"PENDING", "PENDING_BLOCKEDW"},
           "TDH.MEM.RANGE.BLOCK",
           kSuccess,
           "PENDING_BLOCKED",
           A23},
          {{"NL_BLOCKED", "BLOCKED", "PENDING_BLOCKED"},
           "TDH.MEM.RANGE.BLOCK",
           "TDX_GPA_RANGE_ALREADY_BLOCKED",
           "=",
           A23},
          {{"FREE", "REMOVED"}, "TDH.MEM.RANGE.BLOCK", "TDX_EPT_ENTRY_STATE_INCORRECT", "=", A23},
          {{"NL_MAPPED", "MAPPED", "BLOCKEDW", "PENDING", "PENDING_BLOCKEDW"},
           "TDH.MEM.RANGE.BLOCK",
           "TDX_OPERAND_BUSY",
           "=",
           A5},
          // TDH.MEM.RANGE.UNBLOCK.
          {{"NL_BLOCKED"}, "TDH.MEM.RANGE.UNBLOCK", kSuccess, "NL_MAPPED", A23},
          {{"BLOCKED"}, "TDH.MEM.RANGE.UNBLOCK", kSuccess, "MAPPED", A23},
          {{"PENDING_BLOCKED"}, "TDH.MEM.RANGE.UNBLOCK", kSuccess, "PENDING", A23},
          {{"NL_BLOCKED", "BLOCKED", "PENDING_BLOCKED"},
           "TDH.MEM.RANGE.UNBLOCK",
           "TDX_TLB_TRACKING_NOT_DONE",
           "=",
           A6},
          {{"NL_BLOCKED", "BLOCKED", "PENDING_BLOCKED"},
           "TDH.MEM.RANGE.UNBLOCK",
           "TDX_OPERAND_BUSY",
           "=",
           A5},
          {{"FREE", "REMOVED", "NL_MAPPED", "MAPPED", "BLOCKEDW", "PENDING", "PENDING_BLOCKEDW"},
           "TDH.MEM.RANGE.UNBLOCK",
           "TDX_EPT_ENTRY_STATE_INCORRECT",
           "=",
           A23},
          // TDH.MEM.PAGE.REMOVE: a leaf -> FREE.
          {leaves, "TDH.MEM.PAGE.REMOVE", kSuccess, "FREE", A23},
          {{"MAPPED", "PENDING"}, "TDH.MEM.PAGE.REMOVE", "TDX_GPA_RANGE_NOT_BLOCKED", "=", A6},
          {{"BLOCKED", "BLOCKEDW", "PENDING_BLOCKED", "PENDING_BLOCKEDW"},
           "TDH.MEM.PAGE.REMOVE",
           "TDX_TLB_TRACKING_NOT_DONE",
           "=",
           A6},
          {leaves, "TDH.MEM.PAGE.REMOVE", "TDX_OPERAND_BUSY", "=", A5},
          {{"FREE", "REMOVED", "NL_MAPPED", "NL_BLOCKED"},
           "TDH.MEM.PAGE.REMOVE",
           "TDX_EPT_ENTRY_STATE_INCORRECT",
           "=",
           A23},
          // TDH.MEM.SEPT.REMOVE: NL_* -> FREE when the child table is all FREE.
          {nl, "TDH.MEM.SEPT.REMOVE", kSuccess, "FREE", A23},
          {{"NL_MAPPED"}, "TDH.MEM.SEPT.REMOVE", "TDX_GPA_RANGE_NOT_BLOCKED", "=", A6},
          {{"NL_BLOCKED"}, "TDH.MEM.SEPT.REMOVE", "TDX_TLB_TRACKING_NOT_DONE", "=", A6},
          {nl, "TDH.MEM.SEPT.REMOVE", "TDX_EPT_PAGE_NOT_FREE", "=", A23},
          {nl, "TDH.MEM.SEPT.REMOVE", "TDX_OPERAND_BUSY", "=", A5},
          {{"FREE", "REMOVED", "MAPPED", "BLOCKED", "BLOCKEDW", "PENDING", "PENDING_BLOCKED",
            "PENDING_BLOCKEDW"},
           "TDH.MEM.SEPT.REMOVE",
           "TDX_EPT_ENTRY_STATE_INCORRECT",
           "=",
           A23},
          // TDH.MEM.PAGE.DEMOTE: the parent of the new table becomes NL_MAPPED [children states
          // assumed, docs/tdx-model.md]; the 512 new child entries are not recorded.
          {{"MAPPED", "BLOCKED", "PENDING", "PENDING_BLOCKED"},
           "TDH.MEM.PAGE.DEMOTE",
           kSuccess,
           "NL_MAPPED",
           A23},
          {{"MAPPED", "PENDING"}, "TDH.MEM.PAGE.DEMOTE", "TDX_GPA_RANGE_NOT_BLOCKED", "=", A6},
          {{"BLOCKED", "PENDING_BLOCKED"},
           "TDH.MEM.PAGE.DEMOTE",
           "TDX_TLB_TRACKING_NOT_DONE",
           "=",
           A6},
          {{"MAPPED", "BLOCKED", "PENDING", "PENDING_BLOCKED"},
           "TDH.MEM.PAGE.DEMOTE",
           "TDX_OPERAND_BUSY",
           "=",
           A5},
          {{"MAPPED", "BLOCKED", "PENDING", "PENDING_BLOCKED"},
           "TDH.MEM.PAGE.DEMOTE",
           "TDX_PAGE_METADATA_INCORRECT",
           "=",
           A7},
          {{"FREE", "REMOVED", "NL_MAPPED", "NL_BLOCKED", "BLOCKEDW", "PENDING_BLOCKEDW"},
           "TDH.MEM.PAGE.DEMOTE",
           "TDX_EPT_ENTRY_STATE_INCORRECT",
           "=",
           A23},
          // TDH.MEM.PAGE.PROMOTE: 512 MAPPED children -> MAPPED; 512 PENDING children -> PENDING
          // (recorded as the operation "TDH.MEM.PAGE.PROMOTE(PENDING)", so that the next state
          // stays a function of (state, operation, outcome)).
          {nl, "TDH.MEM.PAGE.PROMOTE", kSuccess, "MAPPED", A23},
          {nl, "TDH.MEM.PAGE.PROMOTE(PENDING)", kSuccess, "PENDING", A23},
          {{"NL_MAPPED"}, "TDH.MEM.PAGE.PROMOTE", "TDX_GPA_RANGE_NOT_BLOCKED", "=", A6},
          {{"NL_BLOCKED"}, "TDH.MEM.PAGE.PROMOTE", "TDX_TLB_TRACKING_NOT_DONE", "=", A6},
          {nl, "TDH.MEM.PAGE.PROMOTE", "TDX_EPT_INVALID_PROMOTE_CONDITIONS", "=", A23},
          {nl, "TDH.MEM.PAGE.PROMOTE", "TDX_OPERAND_BUSY", "=", A5},
          {{"FREE", "REMOVED", "MAPPED", "BLOCKED", "BLOCKEDW", "PENDING", "PENDING_BLOCKED",
            "PENDING_BLOCKEDW"},
           "TDH.MEM.PAGE.PROMOTE",
           "TDX_EPT_ENTRY_STATE_INCORRECT",
           "=",
           A23},
          // TDG.MEM.PAGE.ACCEPT (the entry at the requested level).
          {{"PENDING"}, "TDG.MEM.PAGE.ACCEPT", kSuccess, "MAPPED", A8},
          {{"PENDING"},
           "TDG.MEM.PAGE.ACCEPT",
           "INTERRUPTED",
           "=",
           "tdx-snp.md A8 (2 MiB: ACCEPT_COUNTER progress)"},
          {{"MAPPED", "BLOCKEDW"}, "TDG.MEM.PAGE.ACCEPT", "TDX_PAGE_ALREADY_ACCEPTED", "=", A8},
          {nl, "TDG.MEM.PAGE.ACCEPT", "TDX_PAGE_SIZE_MISMATCH", "=", A8},
          {{"FREE", "REMOVED", "BLOCKED", "PENDING_BLOCKED", "PENDING_BLOCKEDW"},
           "TDG.MEM.PAGE.ACCEPT",
           "TD_EXIT",
           "=",
           "tdx-snp.md A8 (EPT-violation TD exit; FREE is the lazy-AUG path)"},
          // The guest takes the entry lock before it looks at the state (A8 "lock failure"), so
          // a held lock or a host-priority mark refuses ACCEPT whatever the state.
          {modelled, "TDG.MEM.PAGE.ACCEPT", "TDX_OPERAND_BUSY", "=", A5},
          {modelled, "TDG.MEM.PAGE.ACCEPT", "TDX_OPERAND_BUSY_HOST_PRIORITY", "=", A5},
          // The module's EPT-violation dispatch (the entry the walk ended at).
          {{"PENDING"},
           "EPT_VIOLATION",
           "INJECT_VE",
           "=",
           "tdx-snp.md A8 (#VE unless SEPT_VE_DISABLE)"},
          {{"PENDING"},
           "EPT_VIOLATION",
           "TD_EXIT",
           "=",
           "tdx-snp.md A8 (SEPT_VE_DISABLE: PENDING_EPT_VIOLATION exit)"},
          {{"FREE", "REMOVED", "NL_BLOCKED", "BLOCKED", "PENDING_BLOCKED", "PENDING_BLOCKEDW"},
           "EPT_VIOLATION",
           "TD_EXIT",
           "=",
           "tdx-snp.md A8 (any other state: TD exit to the VMM)"},
      });
  return m;
}

// ---------------------------------------------------------------------------------------------
// tdx.td: a TD's lifecycle and op state. Recorded for the leaves listed here, by the TD they
// named (TDR operand, or the vCPU's TD); TDH.PHYMEM.PAGE.RECLAIM only when the page is the TDR.

sm::Machine& td_machine() {
  using V = std::vector<std::string_view>;
  const V configured{"KEYS_CONFIGURED/UNINITIALIZED", "KEYS_CONFIGURED/INITIALIZED",
                     "KEYS_CONFIGURED/RUNNABLE"};
  const V live{"HKID_ASSIGNED", "KEYS_CONFIGURED/UNINITIALIZED", "KEYS_CONFIGURED/INITIALIZED",
               "KEYS_CONFIGURED/RUNNABLE", "KEYS_CONFIGURED/FATAL"};
  const V kc_all{"KEYS_CONFIGURED/UNINITIALIZED", "KEYS_CONFIGURED/INITIALIZED",
                 "KEYS_CONFIGURED/RUNNABLE", "KEYS_CONFIGURED/FATAL"};
  const char* A9 = "tdx-snp.md A9";
  const char* A23 = "tdx-snp.md A2.3 (op-state gating)";
  const char* A5 = "tdx-snp.md A5 (busy on contention)";
  static sm::Machine m(
      "tdx.td", "TD lifecycle and op state (tdx-snp.md A9, A2.3)", "tdx",
      {"NO_TD", "HKID_ASSIGNED", "KEYS_CONFIGURED/UNINITIALIZED", "KEYS_CONFIGURED/INITIALIZED",
       "KEYS_CONFIGURED/RUNNABLE", "KEYS_CONFIGURED/FATAL", "BLOCKED", "TEARDOWN"},
      {"TDH.MNG.CREATE", "TDH.MNG.KEY.CONFIG", "TDH.MNG.KEY.CONFIG(PARTIAL)", "TDH.MNG.ADDCX",
       "TDH.MNG.INIT", "TDH.VP.CREATE", "TDH.VP.ADDCX", "TDH.VP.INIT", "TDH.MR.FINALIZE",
       "TDH.VP.ENTER", "ASYNC_TD_EXIT", "TDH.VP.FLUSH", "TDH.MNG.VPFLUSHDONE", "TDH.MNG.KEY.FREEID",
       "TDH.PHYMEM.PAGE.RECLAIM"},
      {kSuccess,
       "TD_EXIT",
       "TDX_NON_RECOVERABLE_TD_NON_ACCESSIBLE",
       "TDX_OPERAND_BUSY",
       "TDX_HKID_NOT_FREE",
       "TDX_TD_FATAL",
       "TDX_TD_KEYS_NOT_CONFIGURED",
       "TDX_LIFECYCLE_STATE_INCORRECT",
       "TDX_OP_STATE_INCORRECT",
       "TDX_TDCS_NOT_ALLOCATED",
       "TDX_TDCX_NUM_INCORRECT",
       "TDX_KEY_CONFIGURED",
       "TDX_MAX_VCPUS_EXCEEDED",
       "TDX_VCPU_STATE_INCORRECT",
       "TDX_VCPU_ASSOCIATED",
       "TDX_VCPU_NOT_ASSOCIATED",
       "TDX_FLUSHVP_NOT_DONE",
       "TDX_WBCACHE_NOT_COMPLETE",
       "TDX_TD_ASSOCIATED_PAGES_EXIST",
       "TDX_OPERAND_INVALID",
       "TDX_PAGE_METADATA_INCORRECT"},
      {
          // Build (A9 create/key, A2.3).
          {{"NO_TD"}, "TDH.MNG.CREATE", kSuccess, "HKID_ASSIGNED", A9},
          {{"NO_TD"}, "TDH.MNG.CREATE", "TDX_HKID_NOT_FREE", "=", A9},
          {{"NO_TD"}, "TDH.MNG.CREATE", "TDX_OPERAND_BUSY", "=", A5},
          {{"HKID_ASSIGNED"},
           "TDH.MNG.KEY.CONFIG",
           kSuccess,
           "KEYS_CONFIGURED/UNINITIALIZED",
           "tdx-snp.md A9 (the last package configured)"},
          {{"HKID_ASSIGNED"},
           "TDH.MNG.KEY.CONFIG(PARTIAL)",
           kSuccess,
           "=",
           "tdx-snp.md A9 (packages still to configure)"},
          {{"HKID_ASSIGNED"}, "TDH.MNG.KEY.CONFIG", "TDX_KEY_CONFIGURED", "=", A9},
          {configured, "TDH.MNG.KEY.CONFIG", "TDX_LIFECYCLE_STATE_INCORRECT", "=", A9},
          {{"KEYS_CONFIGURED/FATAL"}, "TDH.MNG.KEY.CONFIG", "TDX_TD_FATAL", "=", A9},
          {{"KEYS_CONFIGURED/UNINITIALIZED"}, "TDH.MNG.ADDCX", kSuccess, "=", A23},
          {{"KEYS_CONFIGURED/UNINITIALIZED"}, "TDH.MNG.ADDCX", "TDX_TDCX_NUM_INCORRECT", "=", A23},
          {{"HKID_ASSIGNED"}, "TDH.MNG.ADDCX", "TDX_TD_KEYS_NOT_CONFIGURED", "=", A9},
          {{"KEYS_CONFIGURED/UNINITIALIZED"},
           "TDH.MNG.INIT",
           kSuccess,
           "KEYS_CONFIGURED/INITIALIZED",
           A23},
          {{"KEYS_CONFIGURED/UNINITIALIZED"}, "TDH.MNG.INIT", "TDX_TDCS_NOT_ALLOCATED", "=", A23},
          {{"KEYS_CONFIGURED/UNINITIALIZED"},
           "TDH.MNG.INIT",
           "TDX_OPERAND_INVALID",
           "=",
           "tdx-snp.md A2.3 (TD_PARAMS)"},
          {{"KEYS_CONFIGURED/INITIALIZED", "KEYS_CONFIGURED/RUNNABLE"},
           "TDH.MNG.INIT",
           "TDX_OP_STATE_INCORRECT",
           "=",
           A23},
          {{"HKID_ASSIGNED"}, "TDH.MNG.INIT", "TDX_TD_KEYS_NOT_CONFIGURED", "=", A9},
          // vCPUs are created and initialised while INITIALIZED.
          {{"KEYS_CONFIGURED/INITIALIZED"}, "TDH.VP.CREATE", kSuccess, "=", A23},
          {{"KEYS_CONFIGURED/INITIALIZED"}, "TDH.VP.CREATE", "TDX_MAX_VCPUS_EXCEEDED", "=", A23},
          {{"KEYS_CONFIGURED/UNINITIALIZED", "KEYS_CONFIGURED/RUNNABLE"},
           "TDH.VP.CREATE",
           "TDX_OP_STATE_INCORRECT",
           "=",
           A23},
          {{"KEYS_CONFIGURED/INITIALIZED"}, "TDH.VP.ADDCX", kSuccess, "=", A23},
          {{"KEYS_CONFIGURED/INITIALIZED"}, "TDH.VP.ADDCX", "TDX_TDCX_NUM_INCORRECT", "=", A23},
          {{"KEYS_CONFIGURED/RUNNABLE"}, "TDH.VP.ADDCX", "TDX_OP_STATE_INCORRECT", "=", A23},
          {{"KEYS_CONFIGURED/INITIALIZED"}, "TDH.VP.INIT", kSuccess, "=", A23},
          {{"KEYS_CONFIGURED/INITIALIZED"}, "TDH.VP.INIT", "TDX_VCPU_STATE_INCORRECT", "=", A23},
          {{"KEYS_CONFIGURED/INITIALIZED"}, "TDH.VP.INIT", "TDX_TDCX_NUM_INCORRECT", "=", A23},
          {{"KEYS_CONFIGURED/RUNNABLE"}, "TDH.VP.INIT", "TDX_OP_STATE_INCORRECT", "=", A23},
          {{"KEYS_CONFIGURED/INITIALIZED"},
           "TDH.MR.FINALIZE",
           kSuccess,
           "KEYS_CONFIGURED/RUNNABLE",
           A23},
          {{"KEYS_CONFIGURED/UNINITIALIZED", "KEYS_CONFIGURED/RUNNABLE"},
           "TDH.MR.FINALIZE",
           "TDX_OP_STATE_INCORRECT",
           "=",
           A23},
          {{"HKID_ASSIGNED", "BLOCKED", "TEARDOWN"},
           "TDH.MR.FINALIZE",
           "TDX_TD_KEYS_NOT_CONFIGURED",
           "=",
           A9},
          // Running (A6, A9).
          {{"KEYS_CONFIGURED/RUNNABLE"}, "TDH.VP.ENTER", kSuccess, "=", A23},
          {{"KEYS_CONFIGURED/RUNNABLE"}, "TDH.VP.ENTER", "TDX_OPERAND_BUSY", "=", A5},
          {{"KEYS_CONFIGURED/RUNNABLE"}, "TDH.VP.ENTER", "TDX_VCPU_ASSOCIATED", "=", A9},
          {{"KEYS_CONFIGURED/UNINITIALIZED", "KEYS_CONFIGURED/INITIALIZED"},
           "TDH.VP.ENTER",
           "TDX_OP_STATE_INCORRECT",
           "=",
           A23},
          {{"KEYS_CONFIGURED/FATAL"},
           "TDH.VP.ENTER",
           "TDX_TD_FATAL",
           "=",
           "tdx-snp.md A9 (a FATAL TD cannot be entered)"},
          {{"HKID_ASSIGNED", "BLOCKED", "TEARDOWN"},
           "TDH.VP.ENTER",
           "TDX_TD_KEYS_NOT_CONFIGURED",
           "=",
           A9},
          {{"KEYS_CONFIGURED/RUNNABLE", "KEYS_CONFIGURED/FATAL"},
           "ASYNC_TD_EXIT",
           "TD_EXIT",
           "=",
           "tdx-snp.md A6 (asynchronous TD exit)"},
          {{"KEYS_CONFIGURED/RUNNABLE", "KEYS_CONFIGURED/FATAL"},
           "ASYNC_TD_EXIT",
           "TDX_NON_RECOVERABLE_TD_NON_ACCESSIBLE",
           "KEYS_CONFIGURED/FATAL",
           "tdx-snp.md A9 (poison consumed in the TD: FATAL)"},
          // Teardown (A9 stop, flush, free, reclaim).
          {kc_all, "TDH.VP.FLUSH", kSuccess, "=", A9},
          {kc_all, "TDH.VP.FLUSH", "TDX_VCPU_NOT_ASSOCIATED", "=", "tdx-snp.md A10.4"},
          {kc_all, "TDH.VP.FLUSH", "TDX_OPERAND_BUSY", "=", A5},
          {kc_all, "TDH.VP.FLUSH", "TDX_VCPU_ASSOCIATED", "=",
           "tdx-snp.md A9 (VP.FLUSH runs on the LP the vCPU is associated with) [status assumed, "
           "docs/tdx-model.md]"},
          {{"HKID_ASSIGNED", "BLOCKED", "TEARDOWN"},
           "TDH.VP.FLUSH",
           "TDX_LIFECYCLE_STATE_INCORRECT",
           "=",
           A9},
          {live, "TDH.MNG.VPFLUSHDONE", kSuccess, "BLOCKED", A9},
          {live, "TDH.MNG.VPFLUSHDONE", "TDX_FLUSHVP_NOT_DONE", "=", A9},
          {live, "TDH.MNG.VPFLUSHDONE", "TDX_OPERAND_BUSY", "=", A5},
          {{"BLOCKED", "TEARDOWN"},
           "TDH.MNG.VPFLUSHDONE",
           "TDX_LIFECYCLE_STATE_INCORRECT",
           "=",
           A9},
          {{"BLOCKED"}, "TDH.MNG.KEY.FREEID", kSuccess, "TEARDOWN", A9},
          {{"BLOCKED"}, "TDH.MNG.KEY.FREEID", "TDX_WBCACHE_NOT_COMPLETE", "=", A9},
          {{"BLOCKED"}, "TDH.MNG.KEY.FREEID", "TDX_OPERAND_BUSY", "=", A5},
          {live, "TDH.MNG.KEY.FREEID", "TDX_LIFECYCLE_STATE_INCORRECT", "=", A9},
          {{"TEARDOWN"},
           "TDH.MNG.KEY.FREEID",
           "TDX_LIFECYCLE_STATE_INCORRECT",
           "=",
           "tdx-snp.md A9 (already freed)"},
          {{"TEARDOWN"},
           "TDH.PHYMEM.PAGE.RECLAIM",
           kSuccess,
           "NO_TD",
           "tdx-snp.md A9 (the TDR is reclaimed last), A7"},
          {{"TEARDOWN"}, "TDH.PHYMEM.PAGE.RECLAIM", "TDX_TD_ASSOCIATED_PAGES_EXIST", "=", A9},
          {live, "TDH.PHYMEM.PAGE.RECLAIM", "TDX_LIFECYCLE_STATE_INCORRECT", "=", A9},
          {{"BLOCKED"}, "TDH.PHYMEM.PAGE.RECLAIM", "TDX_LIFECYCLE_STATE_INCORRECT", "=", A9},
      });
  return m;
}

// ---------------------------------------------------------------------------------------------
// tdx.hkid: one KeyID's KOT entry (A9), states by HkidState value. Recorded for MNG.CREATE (the
// KeyID operand, once the TDR page passed its checks) and for every leaf of tdx.td that names a
// TD (its KeyID); CACHE.WB, which works on every FLUSHED KeyID at once, is not recorded.

sm::Machine& kot_machine() {
  const char* A9 = "tdx-snp.md A9";
  const char* A5 = "tdx-snp.md A5 (KOT lock: busy on contention)";
  static sm::Machine m(
      "tdx.hkid", "TDX KeyID (KOT entry) states (tdx-snp.md A9)", "tdx",
      {"HKID_FREE", "HKID_ASSIGNED", "HKID_FLUSHED", "HKID_RESERVED"},
      {"TDH.MNG.CREATE", "TDH.MNG.VPFLUSHDONE", "TDH.MNG.KEY.FREEID"},
      {kSuccess, "TDX_OPERAND_BUSY", "TDX_HKID_NOT_FREE", "TDX_FLUSHVP_NOT_DONE",
       "TDX_LIFECYCLE_STATE_INCORRECT", "TDX_WBCACHE_NOT_COMPLETE"},
      {
          {{"HKID_FREE"}, "TDH.MNG.CREATE", kSuccess, "HKID_ASSIGNED", A9},
          {{"HKID_ASSIGNED", "HKID_FLUSHED", "HKID_RESERVED"},
           "TDH.MNG.CREATE",
           "TDX_HKID_NOT_FREE",
           "=",
           "tdx-snp.md A9, A1 (the global KeyID is RESERVED)"},
          {{"*"}, "TDH.MNG.CREATE", "TDX_OPERAND_BUSY", "=", A5},
          {{"HKID_ASSIGNED"}, "TDH.MNG.VPFLUSHDONE", kSuccess, "HKID_FLUSHED", A9},
          {{"HKID_ASSIGNED"}, "TDH.MNG.VPFLUSHDONE", "TDX_FLUSHVP_NOT_DONE", "=", A9},
          {{"HKID_ASSIGNED"}, "TDH.MNG.VPFLUSHDONE", "TDX_OPERAND_BUSY", "=", A5},
          {{"HKID_FLUSHED", "HKID_FREE", "HKID_ASSIGNED"},
           "TDH.MNG.VPFLUSHDONE",
           "TDX_LIFECYCLE_STATE_INCORRECT",
           "=",
           "tdx-snp.md A9 (the TD is already BLOCKED or torn down; a freed KeyID may belong to a "
           "new TD)"},
          {{"HKID_FLUSHED"}, "TDH.MNG.KEY.FREEID", kSuccess, "HKID_FREE", A9},
          {{"HKID_FLUSHED"},
           "TDH.MNG.KEY.FREEID",
           "TDX_WBCACHE_NOT_COMPLETE",
           "=",
           "tdx-snp.md A9 (CACHE.WB still to run on a package)"},
          {{"HKID_FLUSHED"}, "TDH.MNG.KEY.FREEID", "TDX_OPERAND_BUSY", "=", A5},
          {{"HKID_ASSIGNED", "HKID_FREE"},
           "TDH.MNG.KEY.FREEID",
           "TDX_LIFECYCLE_STATE_INCORRECT",
           "=",
           "tdx-snp.md A9 (the TD is not BLOCKED; a freed KeyID may belong to a new TD)"},
      });
  return m;
}

namespace {

std::vector<int> leaf_ops(const sm::Machine& m) {
  std::vector<int> v(kNumLeaves, sm::Machine::kNone);
  for (unsigned i = 0; i < kNumLeaves; ++i) v[i] = m.op_index(name_of(static_cast<Leaf>(i)));
  return v;
}

}  // namespace

int sept_op_of(Leaf l) {
  static const std::vector<int> ops = leaf_ops(sept_machine());
  return static_cast<unsigned>(l) < ops.size() ? ops[static_cast<unsigned>(l)] : sm::Machine::kNone;
}

int td_op_of(Leaf l) {
  static const std::vector<int> ops = leaf_ops(td_machine());
  return static_cast<unsigned>(l) < ops.size() ? ops[static_cast<unsigned>(l)] : sm::Machine::kNone;
}

int kot_op_of(Leaf l) {
  static const std::vector<int> ops = leaf_ops(kot_machine());
  return static_cast<unsigned>(l) < ops.size() ? ops[static_cast<unsigned>(l)] : sm::Machine::kNone;
}

int outcome_of(const sm::Machine& m, uint64_t status) {
  if (status_code(status) == 0) return 0;
  // The outcome names are status names: match the code's name (a handful of compares; only
  // refusals get here).
  return m.outcome_index(status_name(status));
}

}  // namespace cvmsim::tdx
