// SEAMCALL and TDCALL leaves the model implements, with their ABI numbers (tdx-snp.md A3;
// M include/tdx_api_defs.h), plus the module's own entry points that are not calls (the
// EPT-violation and asynchronous TD-exit paths), so that statistics count them alike.
#pragma once

#include <cstdint>
#include <string_view>

namespace cvmsim::tdx {

enum class Leaf : uint8_t {
  // SEAMCALL (host VMM -> module)
  kVpEnter,
  kMngAddcx,
  kMemPageAdd,
  kMemSeptAdd,
  kVpAddcx,
  kMemPageAug,
  kMemRangeBlock,
  kMngKeyConfig,
  kMngCreate,
  kVpCreate,
  kMemPageDemote,
  kMrExtend,
  kMrFinalize,
  kVpFlush,
  kMngVpflushdone,
  kMngKeyFreeid,
  kMngInit,
  kVpInit,
  kMemPagePromote,
  kPhymemPageRdmd,
  kMemSeptRd,
  kMngKeyReclaimid,
  kPhymemPageReclaim,
  kMemPageRemove,
  kMemSeptRemove,
  kMemTrack,
  kMemRangeUnblock,
  kPhymemCacheWb,
  kPhymemPageWbinvd,
  // TDCALL (guest TD -> module)
  kTdgVpVmcall,
  kTdgMemPageAccept,
  // Module paths entered without a call
  kEptViolation,  // EPT violation in the TD (A8)
  kAsyncExit,     // external interrupt / IPI / #MC: TD exit to the host
  kCount,
};

inline constexpr unsigned kNumLeaves = static_cast<unsigned>(Leaf::kCount);

enum class LeafKind : uint8_t { kSeamcall, kTdcall, kInternal };

struct LeafInfo {
  Leaf leaf;
  LeafKind kind;
  int number;             // ABI leaf number (A3); -1 for internal paths
  std::string_view name;  // "TDH.MEM.PAGE.AUG"
  std::string_view stat;  // "mem_page_aug" (statistics names)
};

const LeafInfo& info_of(Leaf l);
inline std::string_view name_of(Leaf l) {
  return info_of(l).name;
}

}  // namespace cvmsim::tdx
