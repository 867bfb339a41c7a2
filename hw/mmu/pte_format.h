// Stage-2 page-table entry formats: Intel EPT, AMD NPT (nested paging reuses the x86 long-mode
// PTE) and Arm VMSAv8-64 stage 2 with a 4 KiB granule. Entries use the real bit layouts, as
// far as isolation needs them: output frame, R/W/X, leaf size, memory type, software bits.
//
// Level numbering is the same for every format and matches hw/base/page_size.h and the TDX
// module's S-EPT level (tdx-snp.md A2.2, "level in [2:0]"): level 0 is the table whose entries
// map 4 KiB pages, level 1 maps 2 MiB, level 2 maps 1 GiB, and the root is level levels()-1.
// arch_level() converts to each architecture's own numbering for traces.
//
// Arm stage 2 is modelled with a 48-bit IPA and a 4 KiB granule starting at architectural
// level 0 (VTCR_EL2.T0SZ=16, SL0=2): four levels, no concatenated root tables and no LPA2, so
// output addresses are 48 bits (pkvm-iommu-cca.md §1.3: the host stage-2 takes T0SZ from
// PARange; 48 bits is the common case).
//
// The hot path (walks) uses the per-family codecs (EptCodec, NptCodec, ArmS2Codec): static
// inline functions, so a walk picks its codec once and pays no switch or call per level.
// PteCodec wraps them behind a runtime format for the colder table-management code.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "hw/base/addr.h"
#include "hw/base/page_size.h"
#include "hw/mmu/perms.h"

namespace cvmsim {

enum class Stage2Format : uint8_t { kEpt4, kEpt5, kNpt4, kNpt5, kArmS2 };

inline constexpr Stage2Format kAllStage2Formats[] = {Stage2Format::kEpt4, Stage2Format::kEpt5,
                                                     Stage2Format::kNpt4, Stage2Format::kNpt5,
                                                     Stage2Format::kArmS2};

// Formats sharing one entry encoding.
enum class PteFamily : uint8_t { kEpt, kNpt, kArm };

// The deepest tree any format builds (5-level EPT/NPT).
inline constexpr unsigned kMaxStage2Levels = 5;

constexpr PteFamily family_of(Stage2Format f) {
  switch (f) {
    case Stage2Format::kEpt4:
    case Stage2Format::kEpt5:
      return PteFamily::kEpt;
    case Stage2Format::kNpt4:
    case Stage2Format::kNpt5:
      return PteFamily::kNpt;
    case Stage2Format::kArmS2:
      return PteFamily::kArm;
  }
  return PteFamily::kEpt;
}

// Number of table levels a walk reads for a 4 KiB leaf.
constexpr unsigned levels_of(Stage2Format f) {
  return (f == Stage2Format::kEpt5 || f == Stage2Format::kNpt5) ? 5 : 4;
}

// Width of the input (guest-physical / IPA) address: 9 bits per level above the page offset.
constexpr unsigned input_bits_of(Stage2Format f) {
  return kPageShift + kBitsPerLevel * levels_of(f);
}

// Width of the output (host-physical) address: x86 entries hold bits 51:12 (MAXPHYADDR 52);
// Arm stage 2 without LPA2 holds bits 47:12.
constexpr unsigned output_bits_of(Stage2Format f) {
  return family_of(f) == PteFamily::kArm ? 48 : 52;
}

// Every modelled format maps 4 KiB, 2 MiB and 1 GiB leaves (EPT 1 GiB pages need
// IA32_VMX_EPT_VPID_CAP bit 17, assumed present). 512 GiB leaves exist in no format.
constexpr bool supports_leaf(Stage2Format, PageSize s) {
  return s == PageSize::k4K || s == PageSize::k2M || s == PageSize::k1G;
}

// The architecture's own level number for our `level`: x86 counts 1 (PT) .. 5 (PML5),
// Arm counts 3 (page) .. 0 (root).
constexpr unsigned arch_level(Stage2Format f, unsigned level) {
  return family_of(f) == PteFamily::kArm ? 3 - level : level + 1;
}

std::string_view name_of(Stage2Format f);
// Parses "ept4", "ept5", "npt4", "npt5", "arm_s2".
std::optional<Stage2Format> parse_stage2_format(std::string_view s);

// What software (the owner of the table) sees in an entry; independent of whether hardware
// would use it (see the codecs' valid()).
enum class EntryKind : uint8_t {
  kEmpty,       // nothing here
  kTable,       // points to a next-level table
  kLeaf,        // maps a page/block (possibly with no permissions, so invalid to hardware)
  kAnnotation,  // Arm only: an invalid descriptor carrying an owner annotation (pKVM)
};

std::string_view name_of(EntryKind k);

// A fully decoded entry, for table management, checkers and tests (the walk decodes lazily).
struct Pte {
  EntryKind kind = EntryKind::kEmpty;
  bool valid = false;        // hardware would follow/use it
  Pfn pfn;                   // table: next table frame; leaf: base frame of the page/block
  Perms perms;               // leaf only
  uint16_t sw = 0;           // leaf only: the format's software-available bits, packed
  bool suppress_ve = false;  // EPT leaf bit 63
  uint64_t annotation = 0;   // kAnnotation only
};

// ---------------------------------------------------------------------------------------------
// Intel EPT (Intel SDM Vol. 3C, "EPT Translation Mechanism", formats of EPT paging-structure
// entries; tdx-snp.md A2.1 for the S-EPT use of the same bits).
//   bits 2:0   R, W, X (an entry is present iff any is set; W without R is a misconfiguration)
//   bits 5:3   memory type of a leaf (WB = 6)
//   bit  7     PS: this entry at level 1/2 maps a 2 MiB / 1 GiB page (ignored at level 0)
//   bits 51:12 output address
//   bits 62:52 ignored by hardware: our software bits (11 bits; S-EPT keeps state bits here)
//   bit  63    suppress #VE (TDX sets it so EPT violations exit to the host, not #VE)
// Software view: an entry is empty iff no bit other than SVE is set, so an S-EPT-style FREE
// entry holding only SVE reads as empty. A leaf with RWX=000 stays a leaf to software (TDX
// PENDING/BLOCKED keep the frame) but is not present to hardware.
struct EptCodec {
  static constexpr uint64_t kRead = 1ull << 0;
  static constexpr uint64_t kWrite = 1ull << 1;
  static constexpr uint64_t kExec = 1ull << 2;
  static constexpr uint64_t kPermMask = 0x7;
  static constexpr unsigned kMemTypeShift = 3;
  static constexpr uint64_t kMemTypeMask = 0x7ull << kMemTypeShift;
  static constexpr uint64_t kMemTypeWb = 6;
  static constexpr uint64_t kIgnorePat = 1ull << 6;
  static constexpr uint64_t kPageSize = 1ull << 7;
  static constexpr uint64_t kAddrMask = 0x000F'FFFF'FFFF'F000ull;
  static constexpr unsigned kSwShift = 52;
  static constexpr unsigned kSwWidth = 11;
  static constexpr uint64_t kSwMask = ((1ull << kSwWidth) - 1) << kSwShift;
  static constexpr uint64_t kSuppressVe = 1ull << 63;

  static constexpr EntryKind kind(uint64_t raw, unsigned level) {
    if ((raw & ~kSuppressVe) == 0) return EntryKind::kEmpty;
    if (level == 0 || (raw & kPageSize)) return EntryKind::kLeaf;
    return EntryKind::kTable;
  }
  static constexpr bool valid(uint64_t raw, unsigned /*level*/) { return raw & kPermMask; }
  static constexpr Pfn pfn(uint64_t raw) { return Pfn((raw & kAddrMask) >> kPageShift); }
  // R/W/X sit in bits 0..2, the same order as Perms.
  static constexpr Perms perms(uint64_t raw) { return Perms(static_cast<uint8_t>(raw & 7)); }
  static constexpr uint16_t sw(uint64_t raw) {
    return static_cast<uint16_t>((raw & kSwMask) >> kSwShift);
  }
  static constexpr bool suppress_ve(uint64_t raw) { return raw & kSuppressVe; }
  static constexpr uint64_t annotation(uint64_t) { return 0; }

  // Non-leaf entries grant RWX; the leaf alone restricts (as KVM's EPT MMU does).
  static constexpr uint64_t encode_table(Pfn next) {
    return ((next.value() << kPageShift) & kAddrMask) | kPermMask;
  }
  static constexpr uint64_t encode_leaf(Pfn base, unsigned level, Perms p, uint16_t sw_bits,
                                        bool sve) {
    return ((base.value() << kPageShift) & kAddrMask) | p.bits | (kMemTypeWb << kMemTypeShift) |
           (level > 0 ? kPageSize : 0) | ((uint64_t{sw_bits} << kSwShift) & kSwMask) |
           (sve ? kSuppressVe : 0);
  }
  static constexpr bool can_encode(Perms p) { return !(p.write() && !p.read()); }
};

// ---------------------------------------------------------------------------------------------
// AMD NPT: nested page tables use the x86-64 long-mode PTE (AMD APM Vol. 2 §15.25 "Nested
// Paging" and §5.3 "Long-Mode Page Translation"; guest accesses are treated as user accesses,
// so U/S is set at every level).
//   bit 0 P, bit 1 R/W, bit 2 U/S, bit 7 PS (2 MiB / 1 GiB leaf), bits 11:9 AVL,
//   bits 51:12 address (bit 12 is PAT in a large leaf; we leave PAT=0, i.e. WB),
//   bits 58:52 available, bit 63 NX.
// Software bits are 10: the low 3 in AVL 11:9, the next 7 in 58:52. Read is P itself, so a leaf
// "with no permissions" is stored with P=0 and its frame kept, like a PROT_NONE PTE; write or
// execute without read cannot be encoded. Accessed/dirty bits are not modelled.
struct NptCodec {
  static constexpr uint64_t kPresent = 1ull << 0;
  static constexpr uint64_t kWritable = 1ull << 1;
  static constexpr uint64_t kUser = 1ull << 2;
  static constexpr uint64_t kPageSize = 1ull << 7;
  static constexpr unsigned kAvlLoShift = 9;
  static constexpr uint64_t kAvlLoMask = 0x7ull << kAvlLoShift;
  static constexpr unsigned kAvlHiShift = 52;
  static constexpr uint64_t kAvlHiMask = 0x7Full << kAvlHiShift;
  static constexpr unsigned kSwWidth = 10;
  static constexpr uint64_t kAddrMask = 0x000F'FFFF'FFFF'F000ull;
  static constexpr uint64_t kNoExec = 1ull << 63;

  static constexpr EntryKind kind(uint64_t raw, unsigned level) {
    if (raw == 0) return EntryKind::kEmpty;
    if (level == 0 || (raw & kPageSize)) return EntryKind::kLeaf;
    return EntryKind::kTable;
  }
  static constexpr bool valid(uint64_t raw, unsigned /*level*/) { return raw & kPresent; }
  static constexpr Pfn pfn(uint64_t raw) { return Pfn((raw & kAddrMask) >> kPageShift); }
  static constexpr Perms perms(uint64_t raw) {
    if (!(raw & kPresent)) return kPermsNone;
    return Perms::make(true, raw & kWritable, !(raw & kNoExec));
  }
  static constexpr uint16_t sw(uint64_t raw) {
    return static_cast<uint16_t>(((raw & kAvlLoMask) >> kAvlLoShift) |
                                 (((raw & kAvlHiMask) >> kAvlHiShift) << 3));
  }
  static constexpr bool suppress_ve(uint64_t) { return false; }
  static constexpr uint64_t annotation(uint64_t) { return 0; }

  static constexpr uint64_t encode_table(Pfn next) {
    return ((next.value() << kPageShift) & kAddrMask) | kPresent | kWritable | kUser;
  }
  static constexpr uint64_t encode_leaf(Pfn base, unsigned level, Perms p, uint16_t sw_bits,
                                        bool /*sve*/) {
    uint64_t e = ((base.value() << kPageShift) & kAddrMask) | kUser;
    if (p.read()) e |= kPresent;
    if (p.write()) e |= kWritable;
    if (!p.exec()) e |= kNoExec;
    if (level > 0) e |= kPageSize;
    e |= (uint64_t{sw_bits} & 0x7) << kAvlLoShift;
    e |= ((uint64_t{sw_bits} >> 3) << kAvlHiShift) & kAvlHiMask;
    return e;
  }
  static constexpr bool can_encode(Perms p) { return p.read() || p.none(); }
};

// ---------------------------------------------------------------------------------------------
// Arm VMSAv8-64 stage 2, 4 KiB granule (Arm ARM D8.3 "Translation table descriptor formats",
// D8.5 stage 2 attributes; Linux arch/arm64/include/asm/kvm_pgtable.h; pkvm-iommu-cca.md §1.2).
//   bits 1:0   0b11 table (levels 1-3 here) or page (level 0 here = architectural level 3);
//              0b01 block (2 MiB / 1 GiB); bit 0 clear = invalid
//   bits 5:2   MemAttr (0b1111 Normal, inner+outer write-back)
//   bits 7:6   S2AP: bit 6 read, bit 7 write (01 R, 10 W, 11 RW)
//   bits 9:8   SH (0b11 inner shareable)
//   bit  10    AF (set: access-flag faults are not modelled)
//   bits 47:12 output address
//   bit  54    XN (the FEAT_XNX pair 54:53 is treated as one bit)
//   bits 58:55 software bits (KVM_PGTABLE_PROT_SW0..3; pKVM keeps page state in SW0/SW1)
// Invalid descriptors are ignored by hardware except bit 0, so pKVM stores owner annotations in
// them (pkvm-iommu-cca.md §1.2 "Invalid-PTE annotations"). We store a 63-bit annotation value v
// as raw = v << 1: pKVM's layout (type 63:60, metadata 59:4, owner 3:1) is v's bits 62:59,
// 58:3 and 2:0 respectively.
struct ArmS2Codec {
  static constexpr uint64_t kValid = 1ull << 0;
  static constexpr uint64_t kTableOrPage = 1ull << 1;
  static constexpr uint64_t kTypeMask = 0x3;
  static constexpr unsigned kMemAttrShift = 2;
  static constexpr uint64_t kMemAttrNormalWb = 0xF;
  static constexpr uint64_t kS2apRead = 1ull << 6;
  static constexpr uint64_t kS2apWrite = 1ull << 7;
  static constexpr uint64_t kShInner = 0x3ull << 8;
  static constexpr uint64_t kAccessFlag = 1ull << 10;
  static constexpr uint64_t kAddrMask = 0x0000'FFFF'FFFF'F000ull;
  static constexpr uint64_t kExecNever = 1ull << 54;
  static constexpr unsigned kSwShift = 55;
  static constexpr unsigned kSwWidth = 4;
  static constexpr uint64_t kSwMask = 0xFull << kSwShift;
  static constexpr uint64_t kMaxAnnotation = (1ull << 63) - 1;

  static constexpr EntryKind kind(uint64_t raw, unsigned level) {
    if (raw == 0) return EntryKind::kEmpty;
    if (!(raw & kValid)) return EntryKind::kAnnotation;
    if (level == 0 || !(raw & kTableOrPage)) return EntryKind::kLeaf;
    return EntryKind::kTable;
  }
  // At architectural level 3 (our level 0) the 0b01 encoding is reserved, hence invalid.
  static constexpr bool valid(uint64_t raw, unsigned level) {
    return level == 0 ? (raw & kTypeMask) == kTypeMask : (raw & kValid);
  }
  static constexpr Pfn pfn(uint64_t raw) { return Pfn((raw & kAddrMask) >> kPageShift); }
  static constexpr Perms perms(uint64_t raw) {
    return Perms::make(raw & kS2apRead, raw & kS2apWrite, !(raw & kExecNever));
  }
  static constexpr uint16_t sw(uint64_t raw) {
    return static_cast<uint16_t>((raw & kSwMask) >> kSwShift);
  }
  static constexpr bool suppress_ve(uint64_t) { return false; }
  static constexpr uint64_t annotation(uint64_t raw) { return raw >> 1; }

  static constexpr uint64_t encode_table(Pfn next) {
    return ((next.value() << kPageShift) & kAddrMask) | kTableOrPage | kValid;
  }
  static constexpr uint64_t encode_leaf(Pfn base, unsigned level, Perms p, uint16_t sw_bits,
                                        bool /*sve*/) {
    uint64_t e = ((base.value() << kPageShift) & kAddrMask) | kValid |
                 (level == 0 ? kTableOrPage : 0) | (kMemAttrNormalWb << kMemAttrShift) | kShInner |
                 kAccessFlag | ((uint64_t{sw_bits} << kSwShift) & kSwMask);
    if (p.read()) e |= kS2apRead;
    if (p.write()) e |= kS2apWrite;
    if (!p.exec()) e |= kExecNever;
    return e;
  }
  static constexpr uint64_t encode_annotation(uint64_t value) { return value << 1; }
  static constexpr bool can_encode(Perms) { return true; }
};

// ---------------------------------------------------------------------------------------------
// Runtime-format wrapper over the codecs above.
class PteCodec {
 private:
  // Defined before its users: a deduced return type must be seen before use.
  template <class F>
  constexpr decltype(auto) with_codec(F&& fn) const {
    switch (family_) {
      case PteFamily::kEpt:
        return fn(EptCodec{});
      case PteFamily::kNpt:
        return fn(NptCodec{});
      case PteFamily::kArm:
        break;
    }
    return fn(ArmS2Codec{});
  }

 public:
  constexpr explicit PteCodec(Stage2Format f) : format_(f), family_(family_of(f)) {}

  constexpr Stage2Format format() const { return format_; }
  constexpr PteFamily family() const { return family_; }
  constexpr unsigned levels() const { return levels_of(format_); }
  constexpr unsigned sw_width() const {
    switch (family_) {
      case PteFamily::kEpt:
        return EptCodec::kSwWidth;
      case PteFamily::kNpt:
        return NptCodec::kSwWidth;
      case PteFamily::kArm:
        return ArmS2Codec::kSwWidth;
    }
    return 0;
  }
  constexpr uint16_t sw_max() const { return static_cast<uint16_t>((1u << sw_width()) - 1); }
  constexpr uint64_t max_pfn() const {
    return (uint64_t{1} << (output_bits_of(format_) - kPageShift)) - 1;
  }
  constexpr bool supports_annotations() const { return family_ == PteFamily::kArm; }
  // Largest annotation value encode_annotation accepts.
  constexpr uint64_t max_annotation() const {
    return supports_annotations() ? ArmS2Codec::kMaxAnnotation : 0;
  }

  constexpr EntryKind kind(uint64_t raw, unsigned level) const {
    return with_codec([&](auto c) { return decltype(c)::kind(raw, level); });
  }
  constexpr bool valid(uint64_t raw, unsigned level) const {
    return with_codec([&](auto c) { return decltype(c)::valid(raw, level); });
  }
  constexpr Pfn pfn(uint64_t raw) const {
    return with_codec([&](auto c) { return decltype(c)::pfn(raw); });
  }
  constexpr Perms perms(uint64_t raw) const {
    return with_codec([&](auto c) { return decltype(c)::perms(raw); });
  }
  constexpr uint16_t sw(uint64_t raw) const {
    return with_codec([&](auto c) { return decltype(c)::sw(raw); });
  }
  constexpr bool suppress_ve(uint64_t raw) const {
    return with_codec([&](auto c) { return decltype(c)::suppress_ve(raw); });
  }
  constexpr uint64_t encode_table(Pfn next) const {
    return with_codec([&](auto c) { return decltype(c)::encode_table(next); });
  }
  // Preconditions (checked by Stage2Table): base aligned to the leaf size at `level`,
  // base <= max_pfn(), sw_bits <= sw_max(), can_encode(p), level <= 2.
  constexpr uint64_t encode_leaf(Pfn base, unsigned level, Perms p, uint16_t sw_bits,
                                 bool suppress_ve = false) const {
    return with_codec(
        [&](auto c) { return decltype(c)::encode_leaf(base, level, p, sw_bits, suppress_ve); });
  }
  constexpr bool can_encode(Perms p) const {
    return with_codec([&](auto c) { return decltype(c)::can_encode(p); });
  }

  // Arm only (returns 0, i.e. an empty entry, elsewhere). Precondition:
  // 0 < value <= max_annotation().
  constexpr uint64_t encode_annotation(uint64_t value) const {
    return supports_annotations() ? ArmS2Codec::encode_annotation(value) : 0;
  }
  constexpr uint64_t annotation(uint64_t raw) const {
    return supports_annotations() ? ArmS2Codec::annotation(raw) : 0;
  }

  // Everything at once; the leaf's pfn is its base frame (address bits below the leaf size,
  // such as a large NPT leaf's PAT bit, are dropped).
  constexpr Pte decode(uint64_t raw, unsigned level) const {
    Pte p;
    p.kind = kind(raw, level);
    switch (p.kind) {
      case EntryKind::kEmpty:
        break;
      case EntryKind::kAnnotation:
        p.annotation = annotation(raw);
        break;
      case EntryKind::kTable:
        p.valid = valid(raw, level);
        p.pfn = pfn(raw);
        break;
      case EntryKind::kLeaf:
        p.valid = valid(raw, level);
        p.pfn = Pfn(pfn(raw).value() & ~((uint64_t{1} << (kBitsPerLevel * level)) - 1));
        p.perms = perms(raw);
        p.sw = sw(raw);
        p.suppress_ve = suppress_ve(raw);
        break;
    }
    return p;
  }

 private:
  Stage2Format format_;
  PteFamily family_;
};

}  // namespace cvmsim
