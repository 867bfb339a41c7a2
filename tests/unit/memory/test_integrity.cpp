// Key ids and TDX memory integrity in the functional core (hw/memory/key_config.h, PhysMem's
// keyed accesses; tdx-snp.md A1, A9; docs/memory-integrity.md).
#include <catch2/catch.hpp>
#include <stdexcept>
#include <vector>

#include "hw/memory/phys_mem.h"

using namespace cvmsim;

namespace {
constexpr uint64_t kMiB = 1ull << 20;
constexpr KeyId kHost = 0;   // the host's key (shared)
constexpr KeyId kMktme = 3;  // another shared (MKTME) key
constexpr KeyId kTdA = 17;   // a TD's private HKID
constexpr KeyId kTdB = 18;   // another TD's private HKID
constexpr Principal kTd = vm_principal(0);
constexpr Principal kOtherTd = vm_principal(1);

KeyConfig tdx(IntegrityMode mode, bool erratum = false) {
  return KeyConfig::tdx(64, 16, mode, erratum);
}

std::vector<uint8_t> pattern(size_t n, uint8_t start) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(start + i * 7);
  return v;
}

// The TDX module's page initialisation: MOVDIR64B zeroing of a whole frame under the TD's key
// (TDG.MEM.PAGE.ACCEPT, TDH.MEM.PAGE.ADD), then the TD's data.
void td_page(PhysMem& mem, Pfn f, KeyId key = kTdA, Principal who = kTd) {
  const IntegrityResult r = mem.fill_keyed(pfn_to_hpa(f), kPageBytes, 0, {key, who, true});
  REQUIRE_FALSE(r.new_poison);
}

std::vector<uint8_t> read(PhysMem& mem, uint64_t hpa, size_t n, KeyId key,
                          IntegrityResult* out = nullptr) {
  std::vector<uint8_t> v(n, 0xee);
  const IntegrityResult r = mem.read_keyed(Hpa(hpa), v, key);
  if (out) *out = r;
  return v;
}

bool all_zero(const std::vector<uint8_t>& v) {
  for (uint8_t b : v)
    if (b) return false;
  return true;
}
}  // namespace

// ---- KeyConfig ----

TEST_CASE("key config: the default has no private keys and validates") {
  const KeyConfig k;
  CHECK(k.validate().ok());
  CHECK_FALSE(k.has_private_keys());
  CHECK(k.num_private_keys() == 0);
  for (KeyId id : {KeyId{0}, KeyId{1}, KeyId{17}, KeyId{0xffff}}) {
    CHECK(k.valid_key(id));
    CHECK_FALSE(k.is_private(id));
  }
  PhysMem mem(4 * kMiB, MemMode::kData);
  CHECK(mem.keys() == KeyConfig{});
}

TEST_CASE("key config: the private HKID range") {
  const KeyConfig k = KeyConfig::tdx(64, 16);
  REQUIRE(k.validate().ok());
  CHECK(k.has_private_keys());
  CHECK(k.num_private_keys() == 48);
  CHECK(k.global_private_key() == 16);
  CHECK_FALSE(k.is_private(0));
  CHECK_FALSE(k.is_private(15));
  CHECK(k.is_private(16));
  CHECK(k.is_private(63));
  CHECK(k.valid_key(63));
  CHECK_FALSE(k.valid_key(64));
  CHECK_FALSE(k.is_private(64));  // not a key at all
  // Every key private but key 0.
  const KeyConfig all = KeyConfig::tdx(8, 1, IntegrityMode::kLi);
  CHECK(all.validate().ok());
  CHECK(all.is_private(1));
  CHECK_FALSE(all.is_private(0));
  CHECK(name_of(IntegrityMode::kCi) == "ci");
  CHECK(parse_integrity_mode("li") == IntegrityMode::kLi);
  CHECK_FALSE(parse_integrity_mode("LI").has_value());
}

TEST_CASE("key config: nonsense key-id ranges are EINVAL") {
  auto einval = [](KeyConfig k) {
    return !k.validate().ok() && k.validate().error() == Errno::kEINVAL;
  };
  CHECK(einval(KeyConfig::tdx(0, 0)));                           // no key ids at all
  CHECK(einval(KeyConfig::tdx(KeyConfig::kMaxKeyIds + 1, 16)));  // more than a 16-bit KeyId
  CHECK(einval(KeyConfig::tdx(64, 0)));   // key 0 (the host's) cannot be private
  CHECK(einval(KeyConfig::tdx(64, 65)));  // private range beyond the key ids
  KeyConfig bad_mode = KeyConfig::tdx(64, 16);
  bad_mode.integrity = static_cast<IntegrityMode>(7);
  CHECK(einval(bad_mode));
  CHECK(KeyConfig::tdx(64, 64).validate().ok());  // an empty private range is allowed
  CHECK(KeyConfig::tdx(KeyConfig::kMaxKeyIds, 1).validate().ok());

  PhysMem mem(4 * kMiB, MemMode::kData);
  REQUIRE(mem.set_key_config(KeyConfig::tdx(64, 16)).ok());
  const Status st = mem.set_key_config(KeyConfig::tdx(64, 0));
  REQUIRE_FALSE(st.ok());
  CHECK(st.error() == Errno::kEINVAL);
  CHECK(mem.keys() == KeyConfig::tdx(64, 16));  // unchanged
  CHECK_THROWS_AS(PhysMem(4 * kMiB, MemMode::kData, KeyConfig::tdx(8, 9)), std::invalid_argument);
}

// ---- Line masks ----

TEST_CASE("line masks: lines touched and lines covered") {
  CHECK(lines_touched(0, 1) == 1);
  CHECK(lines_touched(0, 64) == 1);
  CHECK(lines_touched(60, 8) == 0b11);
  CHECK(lines_touched(64, 64) == 0b10);
  CHECK(lines_touched(0, kPageBytes) == kAllLines);
  CHECK(lines_touched(kPageBytes - 1, 1) == uint64_t{1} << 63);
  CHECK(lines_covered(0, 64) == 1);
  CHECK(lines_covered(0, 63) == 0);
  CHECK(lines_covered(8, 64) == 0);
  CHECK(lines_covered(32, 128) == 0b10);
  CHECK(lines_covered(0, kPageBytes) == kAllLines);
  CHECK(lines_covered(kPageBytes - 64, 64) == uint64_t{1} << 63);
}

// ---- Read and write semantics ----

TEST_CASE("no private range: keyed accesses keep the key-0 behaviour and make no line state") {
  PhysMem mem(4 * kMiB, MemMode::kData);
  const auto in = pattern(16, 1);
  const IntegrityResult w =
      mem.write_keyed(Hpa(0x3000), in, {kTdA, kTd, false});  // 17 is shared here
  CHECK_FALSE(w.new_poison);
  CHECK(mem.meta(Pfn(3)).key_id == kTdA);
  CHECK(mem.meta(Pfn(3)).label == kTd);
  CHECK_FALSE(mem.meta(Pfn(3)).flags & (kFrameTdOwner | kFramePoison));
  IntegrityResult r;
  CHECK(read(mem, 0x3000, 16, kTdA, &r) == in);
  CHECK_FALSE(r.poisoned);
  CHECK_FALSE(r.key_mismatch);
  // Read under another key: ciphertext (scrambled), as before.
  const auto other = read(mem, 0x3000, 16, kHost, &r);
  CHECK(r.key_mismatch);
  CHECK(other != in);
  // A read of a never-written frame under any key: zeros, nothing generated.
  CHECK(all_zero(read(mem, 0x5000, 64, kTdA, &r)));
  CHECK_FALSE(r.poisoned);
  CHECK(mem.stats().line_state_chunks == 0);
}

TEST_CASE("a private-key write makes the lines it writes TD-owned") {
  for (IntegrityMode mode : {IntegrityMode::kCi, IntegrityMode::kLi}) {
    PhysMem mem(4 * kMiB, MemMode::kData, tdx(mode));
    const auto in = pattern(8, 3);
    mem.write_keyed(Hpa(0x2000 + 60), in, {kTdA, kTd, false});  // lines 0 and 1
    const LineState s = mem.line_state(Pfn(2));
    CHECK(s.td_owner == 0b11);
    CHECK(s.poison == 0);
    CHECK(s.private_key == kTdA);
    CHECK(mem.meta(Pfn(2)).flags & kFrameTdOwner);
    CHECK(mem.meta(Pfn(2)).key_id == kTdA);
    IntegrityResult r;
    CHECK(read(mem, 0x2000 + 60, 8, kTdA, &r) == in);
    CHECK_FALSE(r.poisoned);
    CHECK_FALSE(r.key_mismatch);
  }
}

TEST_CASE("host read of a TD-private line returns zeros and no poison") {
  for (MemMode mm : {MemMode::kData, MemMode::kMetadataOnly}) {
    for (IntegrityMode mode : {IntegrityMode::kCi, IntegrityMode::kLi}) {
      PhysMem mem(4 * kMiB, mm, tdx(mode));
      td_page(mem, Pfn(4));
      const auto secret = pattern(64, 9);
      mem.write_keyed(Hpa(0x4040), secret, {kTdA, kTd, false});
      for (KeyId shared : {kHost, kMktme}) {
        IntegrityResult r;
        CHECK(all_zero(read(mem, 0x4000, 256, shared, &r)));
        CHECK(r.zeroed);
        CHECK_FALSE(r.poisoned);
        CHECK_FALSE(r.new_poison);
      }
      CHECK(mem.line_state(Pfn(4)).poison == 0);
      CHECK(mem.stats().lines_poisoned == 0);
      CHECK(mem.stats().zeroed_line_reads == 8);
      // The TD still reads its data.
      IntegrityResult r;
      const auto back = read(mem, 0x4040, 64, kTdA, &r);
      CHECK_FALSE(r.poisoned);
      if (mm == MemMode::kData) CHECK(back == secret);
    }
  }
}

TEST_CASE("host write then TD read poisons the line, and every later read of it returns poison") {
  for (IntegrityMode mode : {IntegrityMode::kCi, IntegrityMode::kLi}) {
    PhysMem mem(4 * kMiB, MemMode::kData, tdx(mode));
    td_page(mem, Pfn(6));
    const auto td_data = pattern(kPageBytes, 1);
    mem.write_keyed(pfn_to_hpa(Pfn(6)), td_data, {kTdA, kTd, false});
    // The host writes 8 bytes into line 5 (writes are never checked).
    const auto host_data = pattern(8, 200);
    const IntegrityResult w =
        mem.write_keyed(Hpa(0x6000 + 5 * 64 + 16), host_data, {kHost, kHostKernel, false});
    CHECK_FALSE(w.new_poison);  // no erratum: no poison yet
    CHECK(mem.line_state(Pfn(6)).td_owner == (kAllLines & ~(uint64_t{1} << 5)));
    // The host reads its own write back: line 5 is no longer TD-owned.
    IntegrityResult r;
    CHECK(read(mem, 0x6000 + 5 * 64 + 16, 8, kHost, &r) == host_data);
    CHECK_FALSE(r.poisoned);
    // Another line of the TD's page is unaffected (per-line, not per-frame).
    CHECK(read(mem, 0x6000 + 64, 64, kTdA, &r) ==
          std::vector<uint8_t>(td_data.begin() + 64, td_data.begin() + 128));
    CHECK_FALSE(r.poisoned);
    // The TD reads line 5: owner mismatch, poison, zeros.
    const auto got = read(mem, 0x6000 + 5 * 64, 32, kTdA, &r);
    CHECK(r.poisoned);
    CHECK(r.new_poison);
    CHECK(r.poison_address == Hpa(0x6000 + 5 * 64));
    CHECK(all_zero(got));
    CHECK(mem.line_state(Pfn(6)).poison == uint64_t{1} << 5);
    CHECK(mem.meta(Pfn(6)).flags & kFramePoison);
    CHECK(mem.stats().lines_poisoned == 1);
    // Sticky: every later read of that line, by any key, returns poison; none generates more.
    for (KeyId k : {kTdA, kHost, kMktme, kTdB}) {
      const auto again = read(mem, 0x6000 + 5 * 64 + 16, 8, k, &r);
      CHECK(r.poisoned);
      CHECK_FALSE(r.new_poison);
      CHECK(r.poison_address == Hpa(0x6000 + 5 * 64 + 16));  // the first byte read as poison
      CHECK(all_zero(again));
    }
    CHECK(mem.stats().lines_poisoned == 1);
    // Writes (not full-line) do not clear it.
    mem.write_keyed(Hpa(0x6000 + 5 * 64), pattern(8, 1), {kTdA, kTd, false});
    read(mem, 0x6000 + 5 * 64, 8, kTdA, &r);
    CHECK(r.poisoned);
    // A read spanning lines 4..6: the poisoned line reads as zeros, the others as data.
    const auto span = read(mem, 0x6000 + 4 * 64, 192, kTdA, &r);
    CHECK(r.poisoned);
    CHECK(std::vector<uint8_t>(span.begin(), span.begin() + 64) ==
          std::vector<uint8_t>(td_data.begin() + 256, td_data.begin() + 320));
    CHECK(all_zero(std::vector<uint8_t>(span.begin() + 64, span.begin() + 128)));
    CHECK(r.poison_address == Hpa(0x6000 + 5 * 64));
  }
}

TEST_CASE("TD read of a never-written line under its private key poisons, in Ci and Li") {
  for (MemMode mm : {MemMode::kData, MemMode::kMetadataOnly}) {
    for (IntegrityMode mode : {IntegrityMode::kCi, IntegrityMode::kLi}) {
      PhysMem mem(4 * kMiB, mm, tdx(mode));
      IntegrityResult r;
      CHECK(all_zero(read(mem, 0x9000 + 128, 8, kTdA, &r)));  // untouched frame: owner 0
      CHECK(r.poisoned);
      CHECK(r.new_poison);
      CHECK(mem.line_state(Pfn(9)).poison == 0b100);
      // A frame the host wrote (owner 0) likewise.
      mem.write_keyed(Hpa(0xa000), pattern(64, 1), {kHost, kHostKernel, false});
      read(mem, 0xa000, 8, kTdA, &r);
      CHECK(r.new_poison);
      // A read under a shared key of a never-written line: zeros, no poison.
      read(mem, 0xb000, 8, kHost, &r);
      CHECK_FALSE(r.poisoned);
      CHECK(mem.line_state(Pfn(0xb)).poison == 0);
    }
  }
}

TEST_CASE("MOVDIR64B-style full-line writes clear poison and set the owner per the key") {
  PhysMem mem(4 * kMiB, MemMode::kData, tdx(IntegrityMode::kCi));
  IntegrityResult r;
  read(mem, 0x7000, kPageBytes, kTdA, &r);  // poisons every line
  REQUIRE(mem.line_state(Pfn(7)).poison == kAllLines);

  SECTION("under the TD's key: lines become TD-owned, readable by the TD") {
    const auto line = pattern(64, 5);
    r = mem.write_keyed(Hpa(0x7000 + 128), line, {kTdA, kTd, true});
    CHECK_FALSE(r.new_poison);
    CHECK(mem.line_state(Pfn(7)).poison == (kAllLines & ~uint64_t{0b100}));
    CHECK(mem.line_state(Pfn(7)).td_owner == 0b100);
    CHECK(read(mem, 0x7000 + 128, 64, kTdA, &r) == line);
    CHECK_FALSE(r.poisoned);
    CHECK(mem.stats().lines_poison_cleared == 1);
  }
  SECTION("a whole page, as TDG.MEM.PAGE.ACCEPT zeroes it") {
    td_page(mem, Pfn(7));
    CHECK(mem.line_state(Pfn(7)).poison == 0);
    CHECK(mem.line_state(Pfn(7)).td_owner == kAllLines);
    CHECK_FALSE(mem.meta(Pfn(7)).flags & kFramePoison);
    CHECK(all_zero(read(mem, 0x7000, kPageBytes, kTdA, &r)));
    CHECK_FALSE(r.poisoned);
  }
  SECTION(
      "under the host key: lines are cleared and not TD-owned, as the host clears reclaimed "
      "pages") {
    mem.fill_keyed(pfn_to_hpa(Pfn(7)), kPageBytes, 0, {kHost, kNobody, true});
    CHECK(mem.line_state(Pfn(7)).poison == 0);
    CHECK(mem.line_state(Pfn(7)).td_owner == 0);
    CHECK_FALSE(mem.meta(Pfn(7)).flags & (kFramePoison | kFrameTdOwner));
    read(mem, 0x7000, kPageBytes, kHost, &r);
    CHECK_FALSE(r.poisoned);
    CHECK_FALSE(r.zeroed);
  }
  SECTION("only lines covered completely are cleared") {
    mem.write_keyed(Hpa(0x7000 + 32), pattern(128, 1), {kTdA, kTd, true});  // covers line 1 only
    CHECK(mem.line_state(Pfn(7)).poison == (kAllLines & ~uint64_t{0b10}));
  }
  SECTION("a non-full-line write does not clear poison") {
    mem.write_keyed(Hpa(0x7000), pattern(64, 1), {kTdA, kTd, false});
    CHECK(mem.line_state(Pfn(7)).poison == kAllLines);
  }
}

TEST_CASE("partial-write erratum off: a host partial write clears TD-owner without poison") {
  PhysMem mem(4 * kMiB, MemMode::kData, tdx(IntegrityMode::kCi, false));
  td_page(mem, Pfn(8));
  const IntegrityResult w =
      mem.write_keyed(Hpa(0x8000 + 8), pattern(8, 1), {kHost, kHostKernel, false});
  CHECK_FALSE(w.new_poison);
  CHECK(mem.line_state(Pfn(8)).poison == 0);
  CHECK(mem.line_state(Pfn(8)).td_owner == (kAllLines & ~uint64_t{1}));
  IntegrityResult r;
  CHECK(read(mem, 0x8000 + 8, 8, kHost, &r) == pattern(8, 1));  // host reads its write back
  CHECK_FALSE(r.poisoned);
}

TEST_CASE("partial-write erratum on: a host partial write to a TD-owned line poisons it at once") {
  PhysMem mem(4 * kMiB, MemMode::kData, tdx(IntegrityMode::kCi, true));
  td_page(mem, Pfn(8));
  // A partial host write (8 bytes) to line 0: poisoned immediately.
  IntegrityResult w = mem.write_keyed(Hpa(0x8000 + 8), pattern(8, 1), {kHost, kHostKernel, false});
  CHECK(w.new_poison);
  CHECK(mem.line_state(Pfn(8)).poison == 1);
  CHECK(mem.line_state(Pfn(8)).td_owner == (kAllLines & ~uint64_t{1}));
  // The host's own later read consumes it.
  IntegrityResult r;
  CHECK(all_zero(read(mem, 0x8000 + 8, 8, kHost, &r)));
  CHECK(r.poisoned);
  CHECK_FALSE(r.new_poison);
  // A full 64-byte host write to line 1 is not partial: no poison.
  w = mem.write_keyed(Hpa(0x8000 + 64), pattern(64, 1), {kHost, kHostKernel, false});
  CHECK_FALSE(w.new_poison);
  CHECK(mem.line_state(Pfn(8)).poison == 1);
  // A partial host write to a line that is not TD-owned: no poison.
  w = mem.write_keyed(Hpa(0x8000 + 64), pattern(8, 1), {kHost, kHostKernel, false});
  CHECK_FALSE(w.new_poison);
  // The TD's own stores (write-back of cached lines) are not partial writes in the erratum's sense.
  w = mem.write_keyed(Hpa(0x8000 + 256), pattern(8, 1), {kTdA, kTd, false});
  CHECK_FALSE(w.new_poison);
  // Device DMA under a shared key is (another shared key).
  w = mem.write_keyed(Hpa(0x8000 + 512 + 4), pattern(16, 1), {kMktme, kDevice, false});
  CHECK(w.new_poison);
  CHECK(mem.line_state(Pfn(8)).poison == (1 | (uint64_t{1} << 8)));
  // MOVDIR64B clears it again.
  mem.write_keyed(Hpa(0x8000), pattern(64, 1), {kHost, kHostKernel, true});
  CHECK(mem.line_state(Pfn(8)).poison == uint64_t{1} << 8);
}

TEST_CASE("Ci detects a write under another private key, Li does not") {
  const auto a_data = pattern(64, 1);
  const auto b_data = pattern(64, 100);
  for (IntegrityMode mode : {IntegrityMode::kCi, IntegrityMode::kLi}) {
    PhysMem mem(4 * kMiB, MemMode::kData, tdx(mode));
    td_page(mem, Pfn(0xc));
    mem.write_keyed(Hpa(0xc000), a_data, {kTdA, kTd, false});
    // Another TD's key writes the line (impossible while the PAMT is intact, A9).
    mem.write_keyed(Hpa(0xc000), b_data, {kTdB, kOtherTd, false});
    CHECK(mem.line_state(Pfn(0xc)).td_owner == kAllLines);  // still TD-owned: a private key wrote
    CHECK(mem.line_state(Pfn(0xc)).private_key == kTdB);
    IntegrityResult r;
    const auto got = read(mem, 0xc000, 64, kTdA, &r);
    if (mode == IntegrityMode::kCi) {
      CHECK(r.poisoned);  // MAC computed under another key
      CHECK(r.new_poison);
      CHECK(all_zero(got));
    } else {
      CHECK_FALSE(r.poisoned);  // not detected: the TD reads B's ciphertext decrypted with its key
      CHECK(r.key_mismatch);
      CHECK(got != b_data);
      CHECK(got != a_data);
      CHECK(mem.line_state(Pfn(0xc)).poison == 0);
    }
    // The writer itself reads its data in both modes.
    const auto b_view = read(mem, 0xc000, 64, kTdB, &r);
    if (mode == IntegrityMode::kLi) {
      CHECK(b_view == b_data);
      CHECK_FALSE(r.poisoned);
    } else {
      CHECK(r.poisoned);  // Ci: the line was poisoned by A's read, sticky
    }
  }
}

TEST_CASE("the host key on other lines survives TD writes to the same frame") {
  PhysMem mem(4 * kMiB, MemMode::kData, tdx(IntegrityMode::kCi));
  td_page(mem, Pfn(0xd));
  mem.write_keyed(Hpa(0xd000 + 64 * 3), pattern(64, 1), {kHost, kHostKernel, false});
  mem.write_keyed(Hpa(0xd000), pattern(8, 1), {kTdA, kTd, false});  // last writer: the TD
  IntegrityResult r;
  CHECK(read(mem, 0xd000 + 64 * 3, 64, kHost, &r) == pattern(64, 1));
  CHECK_FALSE(r.key_mismatch);
  CHECK(read(mem, 0xd000, 8, kTdA, &r) == pattern(8, 1));
  CHECK_FALSE(r.key_mismatch);
  CHECK_FALSE(r.poisoned);
}

TEST_CASE("line state through the metadata API") {
  PhysMem mem(4 * kMiB, MemMode::kData, tdx(IntegrityMode::kCi));
  CHECK(mem.line_state(Pfn(1)).td_owner == 0);
  mem.set_key(Pfn(1), kTdA);
  mem.set_td_owner(Pfn(1), true);
  CHECK(mem.td_owner_lines(Pfn(1)) == kAllLines);
  CHECK(mem.line_state(Pfn(1)).private_key == kTdA);
  mem.set_poison_lines(Pfn(1), 0b1010, true);
  CHECK(mem.poison_lines(Pfn(1)) == 0b1010);
  CHECK(mem.meta(Pfn(1)).flags & kFramePoison);
  mem.set_poison_lines(Pfn(1), 0b10, false);
  CHECK(mem.poison_lines(Pfn(1)) == 0b1000);
  mem.set_poison(Pfn(1), false);
  CHECK_FALSE(mem.meta(Pfn(1)).flags & kFramePoison);
  mem.set_td_owner_lines(Pfn(1), ~uint64_t{1}, false);
  CHECK(mem.td_owner_lines(Pfn(1)) == 1);
  mem.set_td_owner(Pfn(1), false);
  CHECK_FALSE(mem.meta(Pfn(1)).flags & kFrameTdOwner);
  // Clearing state a frame does not have allocates nothing.
  const uint64_t chunks = mem.stats().line_state_chunks;
  mem.set_td_owner(Pfn(1000), false);
  mem.set_poison(Pfn(1000), false);
  CHECK(mem.stats().line_state_chunks == chunks);
}

TEST_CASE("integrity changes revoke DMI") {
  PhysMem mem(4 * kMiB, MemMode::kData, tdx(IntegrityMode::kCi));
  int revoked = 0;
  mem.set_dmi_listener([&](Hpa, Hpa) { ++revoked; });
  td_page(mem, Pfn(2));
  (void)mem.grant_dmi(Pfn(2));
  // A host write clears TD-owner on a line: revoked.
  mem.write_keyed(Hpa(0x2000), pattern(8, 1), {kHost, kHostKernel, false});
  CHECK(revoked == 1);
  (void)mem.grant_dmi(Pfn(2));
  // A shared-key read changes nothing: no revocation.
  IntegrityResult r;
  read(mem, 0x2040, 8, kHost, &r);
  CHECK(revoked == 1);
  // A private read that poisons: revoked.
  read(mem, 0x2000, 8, kTdA, &r);
  CHECK(r.new_poison);
  CHECK(revoked == 2);
  (void)mem.grant_dmi(Pfn(2));
  // Reading stored poison again changes nothing.
  read(mem, 0x2000, 8, kTdA, &r);
  CHECK(revoked == 2);
  // A full-line write clearing poison: revoked.
  mem.write_keyed(Hpa(0x2000), pattern(64, 1), {kTdA, kTd, true});
  CHECK(revoked == 3);
}

TEST_CASE("metadata-only mode with TD-private pages costs at most 64 host bytes per touched page") {
  PhysMem mem(1024 * kMiB, MemMode::kMetadataOnly, tdx(IntegrityMode::kCi));
  const uint64_t base = mem.host_bytes();
  const uint64_t pages = 64 * 1024;  // 256 MiB of TD-private pages, touched densely
  uint8_t b[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  for (uint64_t p = 0; p < pages; ++p) {
    if (p % 2)
      mem.fill_keyed(Hpa(p << kPageShift), kPageBytes, 0, {kTdA, kTd, true});
    else
      mem.write_keyed(Hpa(p << kPageShift), b, {kTdA, kTd, false});
  }
  const double per_page = double(mem.host_bytes() - base) / double(pages);
  CHECK(per_page <= 64.0);
  CHECK(mem.stats().data_pages == 0);
  CHECK(mem.td_owner_lines(Pfn(1)) == kAllLines);
  CHECK(mem.td_owner_lines(Pfn(2)) == 1);
}

TEST_CASE("cached lines: tagged with the private key and writer until written back (ISO-8)",
          "[memory][integrity]") {
  PhysMem mem(16 * kMiB, MemMode::kData, tdx(IntegrityMode::kCi));
  const Pfn f(5), g(6);
  // Shared-key traffic leaves no cached-line record.
  (void)mem.write_keyed(pfn_to_hpa(f), pattern(128, 1), {kHost, kHostUser, false});
  CHECK(mem.line_state(f).cached == 0);
  // A private-key write: the lines it touched are cached, tagged with the key and the writer.
  (void)mem.write_keyed(pfn_to_hpa(f) + 64, pattern(128, 2), {kTdA, kTd, false});
  LineState s = mem.line_state(f);
  CHECK(s.cached == 0b110);
  CHECK(s.cached_key == kTdA);
  CHECK(s.cached_owner == kTd);
  // The host clears the page with MOVDIR64B under key 0: another tag, the lines stay cached.
  (void)mem.fill_keyed(pfn_to_hpa(f), kPageBytes, 0, {kHost, kNobody, true});
  s = mem.line_state(f);
  CHECK(s.td_owner == 0);
  CHECK(s.cached == 0b110);
  // A write under another private key does not replace the older record.
  (void)mem.write_keyed(pfn_to_hpa(f), pattern(64, 3), {kTdB, kOtherTd, true});
  CHECK(mem.line_state(f).cached_key == kTdA);
  // Same key, another writer (a full-line store replaces the cached line): the record follows.
  td_page(mem, g, kTdB, kTd);
  td_page(mem, g, kTdB, kOtherTd);
  CHECK(mem.line_state(g).cached_owner == kOtherTd);
  int seen = 0;
  mem.for_each_line_state(
      [&](Pfn p, const LineState& ls) { seen += (p == f || p == g) && ls.cached; });
  CHECK(seen == 2);
  // Write-backs: of another key or frame, nothing; of the frame's key, its lines.
  CHECK(mem.writeback_frame(f, kTdB) == 0);
  CHECK(mem.writeback_key(kTdA) == 2);
  CHECK(mem.line_state(f).cached == 0);
  CHECK(mem.line_state(g).cached == kAllLines);
  CHECK(mem.writeback_frame(g, kTdB) == 64);
  CHECK(mem.line_state(g).cached == 0);
  CHECK(mem.stats().lines_written_back == 66);
  // Module-style writers that set the key and owner bits directly mark lines through note_cached.
  mem.set_key(Pfn(7), kTdA);
  mem.set_td_owner(Pfn(7), true);
  mem.note_cached(Pfn(7), kAllLines, kTd);
  CHECK(mem.line_state(Pfn(7)).cached == kAllLines);
}
