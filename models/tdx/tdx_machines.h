// The TDX module's state machines as data (hw/base/state_machine.h, docs/coverage.md):
//   tdx.sept  the state of one Secure-EPT entry (tdx-snp.md A2.2 states, A2.3 leaf x state table,
//             A8 ACCEPT and the EPT-violation dispatch);
//   tdx.hkid  one KeyID's KOT entry (A9: FREE, ASSIGNED, FLUSHED, RESERVED);
//   tdx.td    a TD's lifecycle (TDR.LIFECYCLE_STATE, A9) combined with its op state (TDCS.OP_STATE,
//             A2.3) and the FATAL flag (A9).
// The module records every call that reached an S-EPT entry or a TD into them, in one place:
// TdxModule::complete() (tdx_module_core.cpp).
#pragma once

#include <string_view>

#include "hw/base/state_machine.h"
#include "models/tdx/tdx_leaf.h"

namespace cvmsim::tdx {

sm::Machine& sept_machine();
sm::Machine& td_machine();
sm::Machine& kot_machine();

// Machine op index of a leaf, or sm::Machine::kNone if the machine has no such operation.
int sept_op_of(Leaf l);
int td_op_of(Leaf l);
int kot_op_of(Leaf l);
// Outcome index of a status (code part) in `m`, or kNone if `m` does not list it.
int outcome_of(const sm::Machine& m, uint64_t status);

// TD machine state names by index (tdx.td): the order of td_machine().states().
enum class TdCovState : uint8_t {
  kNoTd,
  kHkidAssigned,
  kUninitialized,  // KEYS_CONFIGURED, op state UNINITIALIZED
  kInitialized,
  kRunnable,
  kFatal,  // KEYS_CONFIGURED with TDR.FATAL set
  kBlocked,
  kTeardown,
};

}  // namespace cvmsim::tdx
