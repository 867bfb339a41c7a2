#include <catch2/catch.hpp>
#include <vector>

#include "hw/memory/phys_mem.h"

using namespace cvmsim;

namespace {
constexpr uint64_t kMiB = 1ull << 20;
std::vector<uint8_t> bytes(size_t n, uint8_t start) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(start + i);
  return v;
}
}  // namespace

TEST_CASE("frames are sparse and materialise on first touch") {
  PhysMem mem(64 * kMiB, MemMode::kData);
  CHECK(mem.num_frames() == 16384);
  std::vector<uint8_t> out(16, 0xff);
  mem.read(Hpa(0x5000), out);
  CHECK(out == std::vector<uint8_t>(16, 0));
  CHECK(mem.stats().frames_touched == 0);
  CHECK(mem.host_bytes() < 4096);  // nothing but the chunk directory
  auto in = bytes(16, 1);
  mem.write(Hpa(0x5008), in);
  CHECK(mem.stats().frames_touched == 1);
  CHECK(mem.stats().data_pages == 1);
  mem.read(Hpa(0x5008), out);
  CHECK(out == in);
  CHECK(mem.meta(Pfn(5)).flags & kFrameTouched);
  CHECK_FALSE(mem.meta(Pfn(6)).flags & kFrameTouched);
}

TEST_CASE("accesses spanning frames land in both") {
  PhysMem mem(4 * kMiB, MemMode::kData);
  auto in = bytes(64, 10);
  mem.write(Hpa(0x1fe0), in);  // 32 bytes in frame 1, 32 in frame 2
  CHECK(mem.stats().frames_touched == 2);
  std::vector<uint8_t> out(64);
  mem.read(Hpa(0x1fe0), out);
  CHECK(out == in);
  std::vector<uint8_t> tail(32);
  mem.read(Hpa(0x2000), tail);
  CHECK(tail == std::vector<uint8_t>(in.begin() + 32, in.end()));
}

TEST_CASE("fingerprint is zero exactly for zero frames, in both modes") {
  for (MemMode mode : {MemMode::kData, MemMode::kMetadataOnly}) {
    PhysMem mem(4 * kMiB, mode);
    CHECK(mem.is_zero(Pfn(3)));
    std::vector<uint8_t> zeros(8, 0);
    mem.write(Hpa(0x3000), zeros);
    CHECK(mem.is_zero(Pfn(3)));
    auto in = bytes(8, 1);
    mem.write(Hpa(0x3010), in);
    CHECK_FALSE(mem.is_zero(Pfn(3)));
    const uint64_t fp1 = mem.fingerprint(Pfn(3));
    auto in2 = bytes(8, 2);
    mem.write(Hpa(0x3010), in2);
    CHECK(mem.fingerprint(Pfn(3)) != fp1);
    mem.fill(Hpa(0x3000), kPageBytes, 0);  // scrub
    CHECK(mem.is_zero(Pfn(3)));
  }
}

TEST_CASE("metadata-only mode stores no bytes except for page tables") {
  PhysMem mem(4 * kMiB, MemMode::kMetadataOnly);
  auto in = bytes(32, 7);
  mem.write(Hpa(0x4000), in);
  CHECK(mem.stats().data_pages == 0);
  std::vector<uint8_t> out(32, 0xaa);
  mem.read(Hpa(0x4000), out);
  CHECK(out == std::vector<uint8_t>(32, 0));  // documented: reads return zeros
  mem.mark_table(Pfn(9), true);
  CHECK(mem.stats().data_pages == 1);
  mem.write_u64(Hpa(0x9008), 0xdeadbeefcafef00dull);
  CHECK(mem.read_u64(Hpa(0x9008)) == 0xdeadbeefcafef00dull);
  CHECK(mem.grant_dmi(Pfn(4)) == nullptr);  // no bytes to point at
}

TEST_CASE("metadata-only mode costs at most 64 host bytes per touched page") {
  PhysMem mem(1024 * kMiB, MemMode::kMetadataOnly);
  const uint64_t base = mem.host_bytes();
  const uint64_t pages = 64 * 1024;  // 256 MiB touched densely
  uint8_t b[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  for (uint64_t p = 0; p < pages; ++p) mem.write(Hpa(p << kPageShift), b);
  const double per_page = double(mem.host_bytes() - base) / double(pages);
  CHECK(per_page <= 64.0);
}

TEST_CASE("metadata changes revoke outstanding DMI pointers and only those") {
  PhysMem mem(4 * kMiB, MemMode::kData);
  std::vector<std::pair<uint64_t, uint64_t>> revoked;
  mem.set_dmi_listener([&](Hpa s, Hpa e) { revoked.emplace_back(s.value(), e.value()); });
  uint8_t* p = mem.grant_dmi(Pfn(2));
  REQUIRE(p != nullptr);
  p[5] = 0x42;  // a DMI write lands in the frame
  std::vector<uint8_t> out(1);
  mem.read(Hpa(0x2005), out);
  CHECK(out[0] == 0x42);
  CHECK(mem.stats().dmi_grants == 1);

  mem.set_key(Pfn(3), 5);  // no grant on frame 3: no revocation
  CHECK(revoked.empty());
  mem.set_key(Pfn(2), 0);  // unchanged key: nothing to revoke
  CHECK(revoked.empty());
  mem.set_key(Pfn(2), 7);
  REQUIRE(revoked.size() == 1);
  CHECK(revoked[0] == std::make_pair<uint64_t, uint64_t>(0x2000, 0x2fff));
  mem.set_key(Pfn(2), 8);  // already revoked: no second callback until granted again
  CHECK(revoked.size() == 1);

  SECTION("owner bit") {
    (void)mem.grant_dmi(Pfn(2));
    mem.set_td_owner(Pfn(2), true);
    CHECK(revoked.size() == 2);
  }
  SECTION("label") {
    (void)mem.grant_dmi(Pfn(2));
    mem.set_label(Pfn(2), vm_principal(0));
    CHECK(revoked.size() == 2);
  }
  SECTION("poison") {
    (void)mem.grant_dmi(Pfn(2));
    mem.set_poison(Pfn(2), true);
    CHECK(revoked.size() == 2);
    CHECK(mem.meta(Pfn(2)).flags & kFramePoison);
  }
  SECTION("explicit revocation on a mapping change") {
    (void)mem.grant_dmi(Pfn(2));
    mem.revoke_dmi(Pfn(2));
    CHECK(revoked.size() == 2);
    CHECK(mem.stats().dmi_revocations == 2);
  }
}
