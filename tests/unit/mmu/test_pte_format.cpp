#include <catch2/catch.hpp>

#include "hw/mmu/pte_format.h"

using namespace cvmsim;

TEST_CASE("stage-2 formats: names, levels and widths") {
  for (Stage2Format f : kAllStage2Formats) {
    REQUIRE(parse_stage2_format(name_of(f)) == f);
  }
  CHECK(name_of(Stage2Format::kArmS2) == "arm_s2");
  CHECK_FALSE(parse_stage2_format("ept3").has_value());
  CHECK_FALSE(parse_stage2_format("").has_value());

  CHECK(levels_of(Stage2Format::kEpt4) == 4);
  CHECK(levels_of(Stage2Format::kEpt5) == 5);
  CHECK(levels_of(Stage2Format::kNpt4) == 4);
  CHECK(levels_of(Stage2Format::kNpt5) == 5);
  CHECK(levels_of(Stage2Format::kArmS2) == 4);
  CHECK(input_bits_of(Stage2Format::kEpt4) == 48);
  CHECK(input_bits_of(Stage2Format::kNpt5) == 57);
  CHECK(input_bits_of(Stage2Format::kArmS2) == 48);
  CHECK(output_bits_of(Stage2Format::kArmS2) == 48);
  CHECK(output_bits_of(Stage2Format::kEpt4) == 52);

  // x86 counts PT=1 .. PML4=4; Arm counts the page level as 3 and the root as 0.
  CHECK(arch_level(Stage2Format::kEpt4, 0) == 1);
  CHECK(arch_level(Stage2Format::kEpt5, 4) == 5);
  CHECK(arch_level(Stage2Format::kArmS2, 0) == 3);
  CHECK(arch_level(Stage2Format::kArmS2, 3) == 0);

  CHECK(PteCodec(Stage2Format::kEpt4).sw_width() == 11);
  CHECK(PteCodec(Stage2Format::kNpt4).sw_width() == 10);
  CHECK(PteCodec(Stage2Format::kArmS2).sw_width() == 4);
  CHECK(PteCodec(Stage2Format::kArmS2).max_pfn() == (1ull << 36) - 1);
}

TEST_CASE("EPT entries use the SDM bit layout") {
  const PteCodec c(Stage2Format::kEpt4);
  // 4 KiB leaf, RW: address | R W | memtype WB (6) in bits 5:3, no PS.
  const uint64_t rw = c.encode_leaf(Pfn(0x1234), 0, kPermsRW, 0);
  CHECK(rw == (0x1234000ull | 0b011 | (6ull << 3)));
  CHECK(c.encode_leaf(Pfn(0x1234), 0, kPermsRWX, 0) == 0x1234037ull);
  CHECK(c.encode_leaf(Pfn(0x1234), 0, kPermsX, 0) == 0x1234034ull);  // execute-only allowed
  // 2 MiB leaf: PS (bit 7).
  const uint64_t big = c.encode_leaf(Pfn(0x200), 1, kPermsR, 0);
  CHECK(big == (0x200000ull | 0x1 | 0x30 | 0x80));
  // Software bits 62:52, suppress-#VE bit 63.
  CHECK(c.encode_leaf(Pfn(0), 0, kPermsR, 0x7FF) == (0x7FFull << 52 | 0x31));
  CHECK(c.encode_leaf(Pfn(0), 0, kPermsR, 0, true) == (1ull << 63 | 0x31));
  // Non-leaf: address | RWX.
  CHECK(c.encode_table(Pfn(0x55)) == 0x55007ull);

  CHECK(c.kind(0, 0) == EntryKind::kEmpty);
  CHECK(c.kind(EptCodec::kSuppressVe, 1) == EntryKind::kEmpty);  // S-EPT FREE|SVE
  CHECK(c.kind(0x55007, 1) == EntryKind::kTable);
  CHECK(c.kind(big, 1) == EntryKind::kLeaf);
  CHECK(c.kind(rw, 0) == EntryKind::kLeaf);
  // RWX=000 leaf (TDX PENDING/BLOCKED): a leaf to software, not present to hardware.
  const uint64_t blocked = c.encode_leaf(Pfn(0x1234), 0, kPermsNone, 0x10);
  CHECK(c.kind(blocked, 0) == EntryKind::kLeaf);
  CHECK_FALSE(c.valid(blocked, 0));
  CHECK(c.valid(rw, 0));

  CHECK_FALSE(c.can_encode(kPermsW));  // W without R: EPT misconfiguration
  CHECK(c.can_encode(kPermsRW));
  CHECK_FALSE(c.supports_annotations());
}

TEST_CASE("NPT entries are x86-64 long-mode PTEs") {
  const PteCodec c(Stage2Format::kNpt4);
  // 4 KiB RW, no execute: P | RW | US | NX.
  CHECK(c.encode_leaf(Pfn(0x1234), 0, kPermsRW, 0) == (0x1234000ull | 0x7 | 1ull << 63));
  // RX: P | US, NX clear.
  CHECK(c.encode_leaf(Pfn(0x1234), 0, kPermsRX, 0) == 0x1234005ull);
  // 2 MiB: PS bit 7.
  CHECK(c.encode_leaf(Pfn(0x400), 1, kPermsRWX, 0) == 0x400087ull);
  // Software bits: low 3 in AVL 11:9, the next 7 in 58:52.
  CHECK(c.encode_leaf(Pfn(0), 0, kPermsRWX, 0x3FF) == (0x7ull << 9 | 0x7Full << 52 | 0x5 | 0x2));
  CHECK(c.sw(c.encode_leaf(Pfn(0), 0, kPermsR, 0x2A5)) == 0x2A5);
  CHECK(c.encode_table(Pfn(0x55)) == 0x55007ull);
  // No permissions: P clear, frame kept; still a leaf to software.
  const uint64_t none = c.encode_leaf(Pfn(0x1234), 1, kPermsNone, 0);
  CHECK((none & 1) == 0);
  CHECK(c.kind(none, 1) == EntryKind::kLeaf);
  CHECK(c.pfn(none) == Pfn(0x1234));
  CHECK_FALSE(c.valid(none, 1));
  CHECK(c.perms(none) == kPermsNone);
  CHECK_FALSE(c.can_encode(kPermsW));
  CHECK_FALSE(c.can_encode(kPermsX));
  CHECK(c.can_encode(kPermsR));
}

TEST_CASE("Arm stage-2 descriptors") {
  const PteCodec c(Stage2Format::kArmS2);
  // Page (architectural level 3): 0b11, MemAttr 0b1111, S2AP RW, SH inner, AF; XN for non-exec.
  const uint64_t page = c.encode_leaf(Pfn(0x1234), 0, kPermsRW, 0);
  CHECK(page == (0x1234000ull | 0x3 | 0xF << 2 | 0x3 << 6 | 0x3 << 8 | 1 << 10 | 1ull << 54));
  CHECK((page & 0x3) == 0b11);
  // Block (2 MiB): low bits 0b01; S2AP=01 for read-only; executable.
  const uint64_t block = c.encode_leaf(Pfn(0x200), 1, kPermsRX, 0);
  CHECK((block & 0x3) == 0b01);
  CHECK(((block >> 6) & 0x3) == 0b01);
  CHECK((block & (1ull << 54)) == 0);
  CHECK(((c.encode_leaf(Pfn(0x200), 1, kPermsW, 0) >> 6) & 0x3) == 0b10);
  // SW bits 58:55.
  CHECK(((c.encode_leaf(Pfn(0), 0, kPermsR, 0xA, false) >> 55) & 0xF) == 0xA);
  // Table: 0b11 at a non-leaf level.
  CHECK(c.encode_table(Pfn(0x55)) == 0x55003ull);
  CHECK(c.kind(0x55003, 2) == EntryKind::kTable);
  CHECK(c.kind(page, 0) == EntryKind::kLeaf);
  CHECK(c.kind(block, 1) == EntryKind::kLeaf);
  // 0b01 at architectural level 3 is reserved: not valid.
  CHECK_FALSE(c.valid(block, 0));
  CHECK(c.valid(block, 1));
  // S2AP=00 is still a valid descriptor (permission faults, not translation faults).
  const uint64_t none = c.encode_leaf(Pfn(1), 0, kPermsNone, 0);
  CHECK(c.valid(none, 0));
  CHECK(c.perms(none) == kPermsNone);
}

TEST_CASE("Arm invalid descriptors carry pKVM owner annotations") {
  const PteCodec c(Stage2Format::kArmS2);
  REQUIRE(c.supports_annotations());
  // pkvm-iommu-cca.md §1.2: host DONATION annotation, type 2 in 63:60, owner GUEST (2) in 3:1,
  // handle 0x1234 in meta bits 15:0 (PTE bits 19:4).
  const uint64_t pkvm_raw = (2ull << 60) | (0x1234ull << 4) | (2ull << 1);
  const uint64_t value = pkvm_raw >> 1;
  const uint64_t raw = c.encode_annotation(value);
  CHECK(raw == pkvm_raw);
  CHECK((raw & 1) == 0);
  CHECK(c.kind(raw, 0) == EntryKind::kAnnotation);
  CHECK(c.kind(raw, 2) == EntryKind::kAnnotation);
  CHECK_FALSE(c.valid(raw, 0));
  CHECK(c.annotation(raw) == value);
  const Pte p = c.decode(raw, 0);
  CHECK(p.kind == EntryKind::kAnnotation);
  CHECK(p.annotation == value);
}

TEST_CASE("leaf encode/decode round-trips for every format, size, perms and sw value") {
  for (Stage2Format f : kAllStage2Formats) {
    const PteCodec c(f);
    for (PageSize s : kAllPageSizes) {
      const unsigned level = level_of(s);
      for (uint8_t pb = 0; pb <= Perms::kAll; ++pb) {
        const Perms perms(pb);
        if (!c.can_encode(perms)) continue;
        for (uint16_t sw : {uint16_t{0}, uint16_t{1}, uint16_t{5}, c.sw_max()}) {
          const Pfn pfn = Pfn(0xABC * frames_of(s));
          const uint64_t raw = c.encode_leaf(pfn, level, perms, sw);
          INFO(name_of(f) << " " << name_of(s) << " " << to_string(perms) << " sw=" << sw);
          const Pte p = c.decode(raw, level);
          REQUIRE(p.kind == EntryKind::kLeaf);
          CHECK(p.pfn == pfn);
          CHECK(p.perms == perms);
          CHECK(p.sw == sw);
          CHECK_FALSE(p.suppress_ve);
          // Hardware-valid unless the format can only say "no access" by being not present.
          const bool expect_valid = !(perms.none() && f != Stage2Format::kArmS2);
          CHECK(p.valid == expect_valid);
        }
      }
      const uint64_t t = c.encode_table(Pfn(0x777));
      if (level > 0) {
        CHECK(c.kind(t, level) == EntryKind::kTable);
        CHECK(c.pfn(t) == Pfn(0x777));
        CHECK(c.valid(t, level));
      }
    }
  }
}
