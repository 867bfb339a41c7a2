// Private state of TdxModule, shared by its implementation files (tdx_module_core.cpp,
// tdx_mem_leaves.cpp, tdx_guest.cpp). Not part of the API.
#pragma once

#include <vector>

#include "models/tdx/tdx_module_core.h"

namespace cvmsim::tdx {

// TDR + TDCS state of one TD (A9 TDR fields, A6 epoch tracking, A2.3 op state).
struct TdxModule::Td {
  Pfn tdr;
  Principal principal;
  KeyId hkid = 0;
  TdLifecycle lifecycle = TdLifecycle::kHkidAssigned;
  bool fatal = false;
  uint64_t pkg_config_bitmap = 0;
  std::vector<Pfn> tdcx;  // TDCS pages in ADDCX order; [sept_root_tdcs_index] is the S-EPT root
  uint64_t chldcnt = 0;   // 4 KiB-equivalents owned (A7)
  OpState op_state = OpState::kUninitialized;
  uint64_t attributes = 0;
  unsigned sept_levels = 0;  // 0 until TDH.MNG.INIT
  bool gpaw52 = false;
  unsigned max_vcpus = 0;
  unsigned vcpus_created = 0;
  unsigned num_vcpus = 0;        // initialised (TDH.VP.INIT)
  unsigned num_assoc_vcpus = 0;  // associated with an LP
  SharexLock sept_lock;          // TDCS.secure_ept_lock (A5)
  SharexLock epoch_lock;         // TDCS.epoch_lock (A5, A6)
  uint64_t td_epoch = 0;
  uint16_t refcount[2] = {0, 0};
  Sha384 mrtd_ctx;
  Sha384::Digest mrtd{};
  bool finalized = false;

  bool sept_ve_disable() const { return attributes & kTdAttrSeptVeDisable; }
};

struct TdxModule::Vcpu {
  Pfn tdvpr;
  Pfn tdr;
  unsigned num_pages = 1;  // TDVPR + TDVPX pages added
  bool initialized = false;
  bool in_td = false;  // between VP.ENTER and a TD exit; holds its TDVPR PAMT lock exclusively
  int lp = -1;
  uint64_t vcpu_epoch = 0;
};

// Where a module S-EPT walk stopped (secure_ept_walk, M sept_manager.c).
struct TdxModule::Walk {
  unsigned requested = 0;
  unsigned level = 0;  // level of the last entry read
  uint64_t raw = kSepteInitValue;
  Hpa entry;  // its address
  unsigned levels_read = 0;
  bool reached() const { return level == requested; }
};

// A2.3 op-state gating (M include/auto_gen/op_state_lookup.c, columns UNINITIALIZED,
// INITIALIZED, RUNNABLE).
inline bool op_state_allows(Leaf leaf, OpState s) {
  const bool u = s == OpState::kUninitialized;
  const bool i = s == OpState::kInitialized;
  const bool r = s == OpState::kRunnable;
  switch (leaf) {
    case Leaf::kVpEnter:
      return r;
    case Leaf::kMngAddcx:
    case Leaf::kMngInit:
      return u;
    case Leaf::kMemPageAdd:
    case Leaf::kVpAddcx:
    case Leaf::kVpCreate:
    case Leaf::kMrExtend:
    case Leaf::kMrFinalize:
    case Leaf::kVpInit:
      return i;
    case Leaf::kMemSeptAdd:
    case Leaf::kMemPageAug:
    case Leaf::kMemRangeBlock:
    case Leaf::kMemPageDemote:
    case Leaf::kMemPagePromote:
    case Leaf::kMemSeptRd:
    case Leaf::kMemPageRemove:
    case Leaf::kMemSeptRemove:
    case Leaf::kMemTrack:
    case Leaf::kMemRangeUnblock:
      return i || r;
    case Leaf::kVpFlush:
      return u || i || r;
    default:
      return true;
  }
}

// state_flags_lookup.tlb_tracking_required: only once the TD can run (A2.3).
inline bool op_state_tracking_required(OpState s) {
  return s == OpState::kRunnable;
}

}  // namespace cvmsim::tdx
