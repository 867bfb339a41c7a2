#include "models/tdx/tdx_status.h"

#include <array>
#include <utility>

#include "models/tdx/tdx_leaf.h"

namespace cvmsim::tdx {

namespace {

struct NamedStatus {
  uint64_t code;
  std::string_view name;
};

constexpr std::array<NamedStatus, 43> kNames = {{
    {status::kSuccess, "TDX_SUCCESS"},
    {status::kNonRecoverableTdNonAccessible, "TDX_NON_RECOVERABLE_TD_NON_ACCESSIBLE"},
    {status::kInterruptedResumable, "TDX_INTERRUPTED_RESUMABLE"},
    {status::kOperandInvalid, "TDX_OPERAND_INVALID"},
    {status::kOperandAddrRangeError, "TDX_OPERAND_ADDR_RANGE_ERROR"},
    {status::kOperandBusy, "TDX_OPERAND_BUSY"},
    {status::kPreviousTlbEpochBusy, "TDX_PREVIOUS_TLB_EPOCH_BUSY"},
    {status::kOperandBusyHostPriority, "TDX_OPERAND_BUSY_HOST_PRIORITY"},
    {status::kPageMetadataIncorrect, "TDX_PAGE_METADATA_INCORRECT"},
    {status::kTdAssociatedPagesExist, "TDX_TD_ASSOCIATED_PAGES_EXIST"},
    {status::kTdFatal, "TDX_TD_FATAL"},
    {status::kTdcsNotAllocated, "TDX_TDCS_NOT_ALLOCATED"},
    {status::kLifecycleStateIncorrect, "TDX_LIFECYCLE_STATE_INCORRECT"},
    {status::kOpStateIncorrect, "TDX_OP_STATE_INCORRECT"},
    {status::kTdcxNumIncorrect, "TDX_TDCX_NUM_INCORRECT"},
    {status::kVcpuStateIncorrect, "TDX_VCPU_STATE_INCORRECT"},
    {status::kVcpuAssociated, "TDX_VCPU_ASSOCIATED"},
    {status::kVcpuNotAssociated, "TDX_VCPU_NOT_ASSOCIATED"},
    {status::kMaxVcpusExceeded, "TDX_MAX_VCPUS_EXCEEDED"},
    {status::kKeyGenerationFailed, "TDX_KEY_GENERATION_FAILED"},
    {status::kTdKeysNotConfigured, "TDX_TD_KEYS_NOT_CONFIGURED"},
    {status::kKeyConfigured, "TDX_KEY_CONFIGURED"},
    {status::kWbcacheNotComplete, "TDX_WBCACHE_NOT_COMPLETE"},
    {status::kHkidNotFree, "TDX_HKID_NOT_FREE"},
    {status::kNoHkidReadyToWbcache, "TDX_NO_HKID_READY_TO_WBCACHE"},
    {status::kWbcacheResumeError, "TDX_WBCACHE_RESUME_ERROR"},
    {status::kFlushvpNotDone, "TDX_FLUSHVP_NOT_DONE"},
    {status::kEptWalkFailed, "TDX_EPT_WALK_FAILED"},
    {status::kEptEntryFree, "TDX_EPT_ENTRY_FREE"},
    {status::kEptEntryNotFree, "TDX_EPT_ENTRY_NOT_FREE"},
    {status::kEptEntryNotPresent, "TDX_EPT_ENTRY_NOT_PRESENT"},
    {status::kEptEntryNotLeaf, "TDX_EPT_ENTRY_NOT_LEAF"},
    {status::kEptEntryLeaf, "TDX_EPT_ENTRY_LEAF"},
    {status::kGpaRangeNotBlocked, "TDX_GPA_RANGE_NOT_BLOCKED"},
    {status::kGpaRangeAlreadyBlocked, "TDX_GPA_RANGE_ALREADY_BLOCKED"},
    {status::kTlbTrackingNotDone, "TDX_TLB_TRACKING_NOT_DONE"},
    {status::kEptInvalidPromoteConditions, "TDX_EPT_INVALID_PROMOTE_CONDITIONS"},
    {status::kPageAlreadyAccepted, "TDX_PAGE_ALREADY_ACCEPTED"},
    {status::kPageSizeMismatch, "TDX_PAGE_SIZE_MISMATCH"},
    {status::kGpaRangeBlocked, "TDX_GPA_RANGE_BLOCKED"},
    {status::kEptEntryStateIncorrect, "TDX_EPT_ENTRY_STATE_INCORRECT"},
    {status::kEptPageNotFree, "TDX_EPT_PAGE_NOT_FREE"},
    {0xFFFFFFFFFFFFFFFFull, "TDX_UNKNOWN_STATUS"},
}};

constexpr std::array<uint64_t, kNames.size() - 1> make_codes() {
  std::array<uint64_t, kNames.size() - 1> c{};
  for (size_t i = 0; i + 1 < kNames.size(); ++i) c[i] = kNames[i].code;
  return c;
}
constexpr std::array<uint64_t, kNames.size() - 1> kCodes = make_codes();

constexpr std::array<LeafInfo, kNumLeaves> kLeaves = {{
    {Leaf::kVpEnter, LeafKind::kSeamcall, 0, "TDH.VP.ENTER", "vp_enter"},
    {Leaf::kMngAddcx, LeafKind::kSeamcall, 1, "TDH.MNG.ADDCX", "mng_addcx"},
    {Leaf::kMemPageAdd, LeafKind::kSeamcall, 2, "TDH.MEM.PAGE.ADD", "mem_page_add"},
    {Leaf::kMemSeptAdd, LeafKind::kSeamcall, 3, "TDH.MEM.SEPT.ADD", "mem_sept_add"},
    {Leaf::kVpAddcx, LeafKind::kSeamcall, 4, "TDH.VP.ADDCX", "vp_addcx"},
    {Leaf::kMemPageAug, LeafKind::kSeamcall, 6, "TDH.MEM.PAGE.AUG", "mem_page_aug"},
    {Leaf::kMemRangeBlock, LeafKind::kSeamcall, 7, "TDH.MEM.RANGE.BLOCK", "mem_range_block"},
    {Leaf::kMngKeyConfig, LeafKind::kSeamcall, 8, "TDH.MNG.KEY.CONFIG", "mng_key_config"},
    {Leaf::kMngCreate, LeafKind::kSeamcall, 9, "TDH.MNG.CREATE", "mng_create"},
    {Leaf::kVpCreate, LeafKind::kSeamcall, 10, "TDH.VP.CREATE", "vp_create"},
    {Leaf::kMemPageDemote, LeafKind::kSeamcall, 15, "TDH.MEM.PAGE.DEMOTE", "mem_page_demote"},
    {Leaf::kMrExtend, LeafKind::kSeamcall, 16, "TDH.MR.EXTEND", "mr_extend"},
    {Leaf::kMrFinalize, LeafKind::kSeamcall, 17, "TDH.MR.FINALIZE", "mr_finalize"},
    {Leaf::kVpFlush, LeafKind::kSeamcall, 18, "TDH.VP.FLUSH", "vp_flush"},
    {Leaf::kMngVpflushdone, LeafKind::kSeamcall, 19, "TDH.MNG.VPFLUSHDONE", "mng_vpflushdone"},
    {Leaf::kMngKeyFreeid, LeafKind::kSeamcall, 20, "TDH.MNG.KEY.FREEID", "mng_key_freeid"},
    {Leaf::kMngInit, LeafKind::kSeamcall, 21, "TDH.MNG.INIT", "mng_init"},
    {Leaf::kVpInit, LeafKind::kSeamcall, 22, "TDH.VP.INIT", "vp_init"},
    {Leaf::kMemPagePromote, LeafKind::kSeamcall, 23, "TDH.MEM.PAGE.PROMOTE", "mem_page_promote"},
    {Leaf::kPhymemPageRdmd, LeafKind::kSeamcall, 24, "TDH.PHYMEM.PAGE.RDMD", "phymem_page_rdmd"},
    {Leaf::kMemSeptRd, LeafKind::kSeamcall, 25, "TDH.MEM.SEPT.RD", "mem_sept_rd"},
    {Leaf::kMngKeyReclaimid, LeafKind::kSeamcall, 27, "TDH.MNG.KEY.RECLAIMID", "mng_key_reclaimid"},
    {Leaf::kPhymemPageReclaim, LeafKind::kSeamcall, 28, "TDH.PHYMEM.PAGE.RECLAIM",
     "phymem_page_reclaim"},
    {Leaf::kMemPageRemove, LeafKind::kSeamcall, 29, "TDH.MEM.PAGE.REMOVE", "mem_page_remove"},
    {Leaf::kMemSeptRemove, LeafKind::kSeamcall, 30, "TDH.MEM.SEPT.REMOVE", "mem_sept_remove"},
    {Leaf::kMemTrack, LeafKind::kSeamcall, 38, "TDH.MEM.TRACK", "mem_track"},
    {Leaf::kMemRangeUnblock, LeafKind::kSeamcall, 39, "TDH.MEM.RANGE.UNBLOCK", "mem_range_unblock"},
    {Leaf::kPhymemCacheWb, LeafKind::kSeamcall, 40, "TDH.PHYMEM.CACHE.WB", "phymem_cache_wb"},
    {Leaf::kPhymemPageWbinvd, LeafKind::kSeamcall, 41, "TDH.PHYMEM.PAGE.WBINVD",
     "phymem_page_wbinvd"},
    {Leaf::kTdgVpVmcall, LeafKind::kTdcall, 0, "TDG.VP.VMCALL", "tdg_vp_vmcall"},
    {Leaf::kTdgMemPageAccept, LeafKind::kTdcall, 6, "TDG.MEM.PAGE.ACCEPT", "tdg_mem_page_accept"},
    {Leaf::kEptViolation, LeafKind::kInternal, -1, "EPT_VIOLATION", "ept_violation"},
    {Leaf::kAsyncExit, LeafKind::kInternal, -1, "ASYNC_TD_EXIT", "async_exit"},
}};

constexpr bool leaves_in_order() {
  for (unsigned i = 0; i < kNumLeaves; ++i) {
    if (static_cast<unsigned>(kLeaves[i].leaf) != i) return false;
  }
  return true;
}
static_assert(leaves_in_order(), "kLeaves must follow the order of enum Leaf");

}  // namespace

std::string_view status_name(uint64_t s) {
  const uint64_t c = status_code(s);
  for (const NamedStatus& n : kNames) {
    if (n.code == c) return n.name;
  }
  return kNames.back().name;
}

std::span<const uint64_t> known_status_codes() {
  return kCodes;
}

const LeafInfo& info_of(Leaf l) {
  const unsigned i = static_cast<unsigned>(l);
  return kLeaves[i < kNumLeaves ? i : 0];
}

}  // namespace cvmsim::tdx
