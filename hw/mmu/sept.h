// The Intel TDX Secure-EPT entry format: bit layout (tdx-snp.md A2.1) and the 7-bit state
// encoding (A2.2), as the TDX module writes them into S-EPT pages in memory.
//
// An S-EPT entry is an EPT entry to the hardware walker: it sees only R/W/X (bits 2:0), the memory
// type, PS (bit 7) and the address bits 51:12 (EptCodec in pte_format.h). The module keeps its
// state in bits the walker ignores or reinterprets: D (bit 9), IPAT (bit 6), PS (bit 7) and
// TDEX/TDBW/TDB/TDP (bits 53..56), plus the entry lock TDEL (bit 11) and its host-priority flag
// TDHP (bit 52). Only MAPPED leaves and NL_MAPPED non-leaf entries have RWX set; every other state
// has RWX=000, so a walk that meets it faults (EPT violation) and the module decides what happens
// (A8).
//
// PS is part of the state encoding: every leaf state has PS=1, also in a 4 KiB PTE where hardware
// ignores bit 7, and FREE/REMOVED/NL_* have PS=0. Hence "is a leaf" is simply PS (M
// is_secure_ept_leaf_entry). FREE is not all-zero: enc 0x0E sets TDEX|TDBW|TDB, and a fresh entry
// is SEPTE_INIT_VALUE = FREE|SVE. A FREE entry above level 0 therefore decodes as a (not present)
// table to EptCodec's software view; hardware walks stop there because RWX=000.
//
// Levels as in pte_format.h and the module: 0 = 4 KiB PTE, 1 = 2 MiB PDE, 2 = 1 GiB PDPTE, 3/4
// root.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "hw/base/addr.h"
#include "hw/base/page_size.h"

namespace cvmsim {

// Bit positions (tdx-snp.md A2.1; M src/common/x86_defs/x86_defs.h).
struct SeptBits {
  static constexpr uint64_t kR = 1ull << 0;
  static constexpr uint64_t kW = 1ull << 1;
  static constexpr uint64_t kX = 1ull << 2;  // X / XS
  static constexpr uint64_t kRwx = kR | kW | kX;
  static constexpr unsigned kMtShift = 3;
  static constexpr uint64_t kMtMask = 0x7ull << kMtShift;
  static constexpr uint64_t kMtWb = 6;
  static constexpr uint64_t kIpat = 1ull << 6;
  static constexpr uint64_t kPs = 1ull << 7;
  static constexpr uint64_t kTdgl = 1ull << 8;  // A / guest-side lock
  static constexpr uint64_t kD = 1ull << 9;
  static constexpr uint64_t kXu = 1ull << 10;
  static constexpr uint64_t kTdel = 1ull << 11;  // entry lock (A5)
  static constexpr uint64_t kHpaMask = 0x000F'FFFF'FFFF'F000ull;
  static constexpr uint64_t kTdhp = 1ull << 52;  // host priority (A5)
  static constexpr uint64_t kTdex = 1ull << 53;
  static constexpr uint64_t kTdbw = 1ull << 54;
  static constexpr uint64_t kTdb = 1ull << 55;
  static constexpr uint64_t kTdp = 1ull << 56;
  static constexpr uint64_t kVpw = 1ull << 57;
  static constexpr uint64_t kPw = 1ull << 58;
  static constexpr uint64_t kTdwr = 1ull << 59;
  static constexpr uint64_t kSss = 1ull << 60;
  static constexpr uint64_t kTdio = 1ull << 62;
  static constexpr uint64_t kSve = 1ull << 63;
  // A PENDING 2 MiB leaf keeps TDG.MEM.PAGE.ACCEPT progress in HPA bits 20:12 (A2.1, A8).
  static constexpr unsigned kAcceptCounterShift = 12;
  static constexpr uint64_t kAcceptCounterMask = 0x1FFull << kAcceptCounterShift;
  // SEPT_PERMISSIONS_MASK (M sept_manager.h): R, W, XS, XU.
  static constexpr uint64_t kPermsMask = kRwx | kXu;
  // SEPT_STATE_ENCODING_MASK: the bits that hold the 7-bit state.
  static constexpr uint64_t kStateMask = kD | kTdex | kTdbw | kTdb | kTdp | kIpat | kPs;
  // The architectural view returned in RCX (SEPT_ARCH_ENTRY_LEAF_MASK / _NON_LEAF_MASK).
  static constexpr uint64_t kArchLeafMask = kPermsMask | kMtMask | kHpaMask | kIpat | kPs | kSve;
  static constexpr uint64_t kArchNonLeafMask = kPermsMask | kPs;
};

// The states of A2.2, numbered by their "idx" column (the module's lookup-table index).
enum class SeptState : uint8_t {
  kFree = 0,
  kRemoved = 1,
  kNlMapped = 2,
  kNlBlocked = 3,
  kMapped = 4,
  kBlocked = 5,
  kBlockedW = 6,
  kExportedBlockedW = 7,
  kExportedDirty = 8,
  kExportedDirtyBlockedW = 9,
  kPending = 10,
  kPendingBlocked = 11,
  kPendingBlockedW = 12,
  kPendingExportedBlockedW = 13,
  kPendingExportedDirty = 14,
  kPendingExportedDirtyBlockedW = 15,
  kInvalid = 16,  // bits that encode no A2.2 state (a corrupted entry)
};
inline constexpr unsigned kNumSeptStates = 16;

// One row of A2.2 (M include/auto_gen/sept_state_lookup.{h,c}, sept_special_flags_lookup).
struct SeptStateInfo {
  SeptState state;
  std::string_view name;
  uint8_t enc;  // D | TDEX<<1 | TDBW<<2 | TDB<<3 | TDP<<4 | IPAT<<5 | PS<<6
  uint8_t pub;  // architectural state returned in RDX[15:8]
  bool guest_accessible_leaf;
  bool tlb_tracking_required;  // "TLBtrk": BLOCK+TRACK needed before removal once the TD runs
  bool any_blocked;
  bool any_pending;
  bool pending_guest_acceptable;  // PENDING, PENDING_EXPORTED_DIRTY: ACCEPT allowed, access -> #VE
};

inline constexpr std::array<SeptStateInfo, kNumSeptStates> kSeptStateInfo = {{
    {SeptState::kFree, "FREE", 0x0E, 0, false, false, false, false, false},
    {SeptState::kRemoved, "REMOVED", 0x0C, 5, false, false, false, false, false},
    {SeptState::kNlMapped, "NL_MAPPED", 0x00, 0x84, false, true, false, false, false},
    {SeptState::kNlBlocked, "NL_BLOCKED", 0x08, 0x81, false, true, true, false, false},
    {SeptState::kMapped, "MAPPED", 0x60, 4, true, true, false, false, false},
    {SeptState::kBlocked, "BLOCKED", 0x68, 1, false, true, true, false, false},
    {SeptState::kBlockedW, "BLOCKEDW", 0x64, 8, true, true, false, false, false},
    {SeptState::kExportedBlockedW, "EXPORTED_BLOCKEDW", 0x66, 9, true, false, false, false, false},
    {SeptState::kExportedDirty, "EXPORTED_DIRTY", 0x63, 11, true, true, false, false, false},
    {SeptState::kExportedDirtyBlockedW, "EXPORTED_DIRTY_BLOCKEDW", 0x67, 12, true, true, false,
     false, false},
    {SeptState::kPending, "PENDING", 0x70, 2, false, true, false, true, true},
    {SeptState::kPendingBlocked, "PENDING_BLOCKED", 0x78, 3, false, true, true, true, false},
    {SeptState::kPendingBlockedW, "PENDING_BLOCKEDW", 0x74, 16, false, true, false, true, false},
    {SeptState::kPendingExportedBlockedW, "PENDING_EXPORTED_BLOCKEDW", 0x76, 17, false, false,
     false, true, false},
    {SeptState::kPendingExportedDirty, "PENDING_EXPORTED_DIRTY", 0x73, 19, false, true, false, true,
     true},
    {SeptState::kPendingExportedDirtyBlockedW, "PENDING_EXPORTED_DIRTY_BLOCKEDW", 0x77, 20, false,
     true, false, true, false},
}};

constexpr const SeptStateInfo& info_of(SeptState s) {
  return kSeptStateInfo[static_cast<unsigned>(s) < kNumSeptStates ? static_cast<unsigned>(s) : 0];
}
constexpr std::string_view name_of(SeptState s) {
  return s == SeptState::kInvalid ? std::string_view("INVALID") : info_of(s).name;
}

// SEPT_STATE_ENC_TO_MASK (M sept_manager.h): enc bit 0 -> D (9), bits 4:1 -> TDEX..TDP (53..56),
// bits 6:5 -> IPAT, PS (6, 7).
constexpr uint64_t sept_state_mask(uint8_t enc) {
  return (uint64_t{enc & 1u} << 9) | (uint64_t{(enc >> 1) & 0xFu} << 53) |
         (uint64_t{(enc >> 5) & 0x3u} << 6);
}
// SEPT_CONVERT_TO_ENCODING: the 7-bit state of a raw entry.
constexpr uint8_t sept_state_enc(uint64_t raw) {
  return static_cast<uint8_t>(((raw >> 9) & 1) | (((raw >> 53) & 0xF) << 1) |
                              (((raw >> 6) & 3) << 5));
}
constexpr SeptState sept_state_of(uint64_t raw) {
  const uint8_t e = sept_state_enc(raw);
  for (const SeptStateInfo& i : kSeptStateInfo) {
    if (i.enc == e) return i.state;
  }
  return SeptState::kInvalid;
}

// A freshly initialised entry (A2.1: SEPTE_INIT_VALUE = FREE_MASK | SVE).
inline constexpr uint64_t kSepteInitValue = sept_state_mask(0x0E) | SeptBits::kSve;

// A decoded entry.
struct SeptEntry {
  uint64_t raw = kSepteInitValue;
  unsigned level = 0;
  SeptState state = SeptState::kFree;
  bool leaf = false;            // PS
  Pfn pfn;                      // next table (non-leaf) or base frame (leaf); 0 for FREE
  bool locked = false;          // TDEL
  bool host_priority = false;   // TDHP
  unsigned accept_counter = 0;  // PENDING 2 MiB leaf: 4 KiB chunks already accepted
  bool present() const { return (raw & SeptBits::kRwx) != 0; }  // what the hardware walker sees
  Hpa hpa() const { return pfn_to_hpa(pfn); }
};

struct SeptCodec {
  static constexpr uint64_t free_entry() { return kSepteInitValue; }

  // Non-leaf entry: NL_MAPPED (RWX=111 plus XU, so the walker follows it) or NL_BLOCKED (RWX=0).
  static constexpr uint64_t non_leaf(Pfn table, bool blocked) {
    const uint64_t perms = blocked ? 0 : SeptBits::kPermsMask;
    return ((table.value() << kPageShift) & SeptBits::kHpaMask) | perms |
           sept_state_mask(blocked ? 0x08 : 0x00) | SeptBits::kSve;
  }

  // Leaf entry in state s (MAPPED and the other guest-accessible states get RWX and MT=WB; every
  // other state RWX=000). SVE stays set in every state: the model's module decides about #VE in
  // its EPT-violation handler (A8) rather than letting hardware convert the violation.
  static constexpr uint64_t leaf(Pfn page, SeptState s) {
    uint64_t e = ((page.value() << kPageShift) & SeptBits::kHpaMask) |
                 sept_state_mask(info_of(s).enc) | SeptBits::kSve |
                 (SeptBits::kMtWb << SeptBits::kMtShift);
    if (s == SeptState::kMapped || s == SeptState::kExportedDirty) e |= SeptBits::kPermsMask;
    return e;
  }

  // Replaces the state (keeping frame, lock bits and ACCEPT_COUNTER) and sets the RWX the new
  // state implies: all of R/W/X/XU for MAPPED, EXPORTED_DIRTY and NL_MAPPED, none otherwise.
  static constexpr uint64_t with_state(uint64_t raw, SeptState s) {
    uint64_t e =
        (raw & ~(SeptBits::kStateMask | SeptBits::kPermsMask)) | sept_state_mask(info_of(s).enc);
    if (s == SeptState::kMapped || s == SeptState::kExportedDirty || s == SeptState::kNlMapped) {
      e |= SeptBits::kPermsMask;
    }
    return e;
  }

  static constexpr bool is_leaf(uint64_t raw) { return raw & SeptBits::kPs; }
  static constexpr Pfn pfn(uint64_t raw) { return Pfn((raw & SeptBits::kHpaMask) >> kPageShift); }
  static constexpr unsigned accept_counter(uint64_t raw) {
    return static_cast<unsigned>((raw & SeptBits::kAcceptCounterMask) >>
                                 SeptBits::kAcceptCounterShift);
  }
  static constexpr uint64_t with_accept_counter(uint64_t raw, unsigned n) {
    return (raw & ~SeptBits::kAcceptCounterMask) |
           ((uint64_t{n} << SeptBits::kAcceptCounterShift) & SeptBits::kAcceptCounterMask);
  }

  // RCX on S-EPT errors and TDH.MEM.SEPT.RD: the architectural view of the entry (A2.2).
  static constexpr uint64_t arch_entry(uint64_t raw) {
    return raw & (is_leaf(raw) ? SeptBits::kArchLeafMask : SeptBits::kArchNonLeafMask);
  }
  // RDX: sept_entry_arch_info_t, level in [2:0], state ("pub") in [15:8] (A2.2).
  static constexpr uint64_t arch_info(SeptState s, unsigned level) {
    return (level & 7u) | (uint64_t{s == SeptState::kInvalid ? 0xFFu : info_of(s).pub} << 8);
  }

  static constexpr SeptEntry decode(uint64_t raw, unsigned level) {
    SeptEntry d;
    d.raw = raw;
    d.level = level;
    d.state = sept_state_of(raw);
    d.leaf = is_leaf(raw);
    d.locked = raw & SeptBits::kTdel;
    d.host_priority = raw & SeptBits::kTdhp;
    if (d.state != SeptState::kFree) {
      uint64_t f = pfn(raw).value();
      if (d.leaf && level > 0) {
        // Address bits below the leaf size: ACCEPT_COUNTER for a PENDING 2 MiB leaf.
        if (level == 1) d.accept_counter = accept_counter(raw);
        f &= ~((uint64_t{1} << (kBitsPerLevel * level)) - 1);
      }
      d.pfn = Pfn(f);
    }
    return d;
  }
};

}  // namespace cvmsim
