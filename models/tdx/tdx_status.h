// TDX module status codes and operand ids (tdx-snp.md A4; M
// include/auto_gen/tdx_error_codes_defs.h).
//
// A status is RAX after a SEAMCALL/TDCALL: the class and code in the high 32 bits, the id of the
// operand that failed in the low 32 bits (api_error_with_operand_id). Bit 63 set means error;
// 0x8000... codes are busy/retryable, 0xC000... hard errors for that input; a clear bit 63 with a
// non-zero code is a warning (TDX_GPA_RANGE_ALREADY_BLOCKED, TDX_PAGE_ALREADY_ACCEPTED, ...).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "hw/base/result.h"

namespace cvmsim::tdx {

namespace status {
inline constexpr uint64_t kSuccess = 0x0000000000000000ull;
inline constexpr uint64_t kNonRecoverableTdNonAccessible = 0x6000000500000000ull;
inline constexpr uint64_t kInterruptedResumable = 0x8000000300000000ull;
inline constexpr uint64_t kOperandInvalid = 0xC000010000000000ull;
inline constexpr uint64_t kOperandAddrRangeError = 0xC000010100000000ull;
inline constexpr uint64_t kOperandBusy = 0x8000020000000000ull;
inline constexpr uint64_t kPreviousTlbEpochBusy = 0x8000020100000000ull;
inline constexpr uint64_t kOperandBusyHostPriority = 0x8000020400000000ull;
inline constexpr uint64_t kPageMetadataIncorrect = 0xC000030000000000ull;
inline constexpr uint64_t kTdAssociatedPagesExist = 0xC000040000000000ull;
inline constexpr uint64_t kTdFatal = 0xE000060400000000ull;
inline constexpr uint64_t kTdcsNotAllocated = 0xC000060600000000ull;
inline constexpr uint64_t kLifecycleStateIncorrect = 0xC000060700000000ull;
inline constexpr uint64_t kOpStateIncorrect = 0xC000060800000000ull;
inline constexpr uint64_t kTdcxNumIncorrect = 0xC000061000000000ull;
inline constexpr uint64_t kVcpuStateIncorrect = 0xC000070000000000ull;
inline constexpr uint64_t kVcpuAssociated = 0x8000070100000000ull;
inline constexpr uint64_t kVcpuNotAssociated = 0x8000070200000000ull;
inline constexpr uint64_t kMaxVcpusExceeded = 0xC000070500000000ull;
inline constexpr uint64_t kKeyGenerationFailed = 0x8000080000000000ull;
inline constexpr uint64_t kTdKeysNotConfigured = 0x8000081000000000ull;
inline constexpr uint64_t kKeyConfigured = 0x0000081500000000ull;
inline constexpr uint64_t kWbcacheNotComplete = 0x8000081700000000ull;
inline constexpr uint64_t kHkidNotFree = 0xC000082000000000ull;
inline constexpr uint64_t kNoHkidReadyToWbcache = 0x0000082100000000ull;
inline constexpr uint64_t kWbcacheResumeError = 0xC000082300000000ull;
inline constexpr uint64_t kFlushvpNotDone = 0x8000082400000000ull;
inline constexpr uint64_t kEptWalkFailed = 0xC0000B0000000000ull;
inline constexpr uint64_t kEptEntryFree = 0xC0000B0100000000ull;
inline constexpr uint64_t kEptEntryNotFree = 0xC0000B0200000000ull;
inline constexpr uint64_t kEptEntryNotPresent = 0xC0000B0300000000ull;
inline constexpr uint64_t kEptEntryNotLeaf = 0xC0000B0400000000ull;
inline constexpr uint64_t kEptEntryLeaf = 0xC0000B0500000000ull;
inline constexpr uint64_t kGpaRangeNotBlocked = 0xC0000B0600000000ull;
inline constexpr uint64_t kGpaRangeAlreadyBlocked = 0x00000B0700000000ull;
inline constexpr uint64_t kTlbTrackingNotDone = 0xC0000B0800000000ull;
inline constexpr uint64_t kEptInvalidPromoteConditions = 0xC0000B0900000000ull;
inline constexpr uint64_t kPageAlreadyAccepted = 0x00000B0A00000000ull;
inline constexpr uint64_t kPageSizeMismatch = 0xC0000B0B00000000ull;
inline constexpr uint64_t kGpaRangeBlocked = 0xC0000B0C00000000ull;
inline constexpr uint64_t kEptEntryStateIncorrect = 0xC0000B0D00000000ull;
inline constexpr uint64_t kEptPageNotFree = 0xC0000B0E00000000ull;
}  // namespace status

// Operand ids (low 32 bits of a status).
namespace operand {
inline constexpr uint32_t kRax = 0;
inline constexpr uint32_t kRcx = 1;
inline constexpr uint32_t kRdx = 2;
inline constexpr uint32_t kR8 = 8;
inline constexpr uint32_t kR9 = 9;
inline constexpr uint32_t kAttributes = 64;
inline constexpr uint32_t kEptpControls = 67;
inline constexpr uint32_t kMaxVcpus = 68;
inline constexpr uint32_t kTdr = 128;
inline constexpr uint32_t kTdcx = 129;
inline constexpr uint32_t kTdvpr = 130;
inline constexpr uint32_t kTdcs = 144;
inline constexpr uint32_t kTdvps = 145;
inline constexpr uint32_t kSeptTree = 146;
inline constexpr uint32_t kSeptEntry = 147;
inline constexpr uint32_t kTdEpoch = 169;
inline constexpr uint32_t kOpState = 172;
inline constexpr uint32_t kKot = 186;
inline constexpr uint32_t kWbcache = 188;
}  // namespace operand

constexpr uint64_t with_operand(uint64_t code, uint64_t op) {
  return code | (op & 0xFFFFFFFFull);
}
constexpr uint64_t status_code(uint64_t s) {
  return s & 0xFFFFFFFF00000000ull;
}
constexpr uint32_t status_operand(uint64_t s) {
  return static_cast<uint32_t>(s);
}
constexpr bool is_error(uint64_t s) {
  return (s >> 63) != 0;
}
// Busy/retryable class (0x8...): the same call may succeed later.
constexpr bool is_busy_class(uint64_t s) {
  return (s >> 60) == 0x8;
}

// "TDX_OPERAND_BUSY" etc. for the code part of s; "TDX_UNKNOWN_STATUS" if the model never
// produces that code.
std::string_view status_name(uint64_t s);
// Every code the model produces, for statistics (status counters are indexed by this list).
std::span<const uint64_t> known_status_codes();

// The status as a cvmsim error value (hw/base/result.h).
inline ArchStatus arch_status(uint64_t s) {
  return ArchStatus{StatusDomain::kTdx, s};
}
// Success and warnings are ok; an error status becomes ArchStatus{kTdx, s}.
inline Status to_status(uint64_t s) {
  if (is_error(s)) return arch_status(s);
  return {};
}

}  // namespace cvmsim::tdx
