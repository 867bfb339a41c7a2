// SHA-384 against FIPS 180-4 vectors; the PAMT on its own (tdx-snp.md A7).
#include <catch2/catch.hpp>

#include <cstring>
#include <string>

#include "models/tdx/pamt.h"
#include "models/tdx/sha384.h"

using namespace cvmsim;
using namespace cvmsim::tdx;

namespace {

std::string hex(const Sha384::Digest& d) {
  static const char* k = "0123456789abcdef";
  std::string s;
  for (uint8_t b : d) {
    s += k[b >> 4];
    s += k[b & 15];
  }
  return s;
}

Sha384::Digest hash_str(const std::string& s) {
  return Sha384::hash(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
}

}  // namespace

TEST_CASE("sha384: FIPS 180-4 example vectors") {
  CHECK(hex(hash_str("")) ==
        "38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f148"
        "98b95b");
  CHECK(hex(hash_str("abc")) ==
        "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134"
        "c825a7");
  CHECK(hex(hash_str("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmn"
                     "opqklmnopqrlmnopqrsmnopqrstnopqrstu")) ==
        "09330c33f71147e83d192fc782cd1b4753111b173b3b05d22fa08086e3b0f712fcc7c71a557e2db966c3e9fa91"
        "746039");
  // Split updates give the same digest; the block counter counts compressions.
  const std::string m(1000, 'a');
  Sha384 s;
  s.update(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(m.data()), 3));
  s.update(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(m.data()) + 3, 997));
  CHECK(s.finalize() == hash_str(m));
  CHECK(s.blocks() == 8);  // 1000 bytes + padding = 8 blocks of 128
}

TEST_CASE("pamt: entries are 16 bytes and sparse, the leaf moves with the page level") {
  Pamt p({Tdmr{Hpa(0), 1ull << 30, {HpaRange{Hpa(0x200000), 0x1000}}}});
  CHECK(sizeof(PamtEntry) == 16);
  CHECK(p.entries_stored() == 0);
  CHECK(p.modelled_bytes() == 16 * (262144 + 512 + 1));
  CHECK(p.covers(Pfn(0x3FFFF)));
  CHECK_FALSE(p.covers(Pfn(0x40000)));
  CHECK(p.leaf(Pfn(0x200)).entry.type() == PageType::kRsvd);
  CHECK(p.pages(PageType::kRsvd) == 1);

  p.assign(Pfn(0x400), PageSize::k2M, PageType::kReg, Pfn(7));
  const PamtLeaf l = p.leaf(Pfn(0x401));
  CHECK(l.level == PageSize::k2M);
  CHECK(l.base == Pfn(0x400));
  CHECK(l.entry.owner() == Pfn(7));
  CHECK(p.pages(PageType::kReg) == 512);
  CHECK(p.entries_stored() == 1);
  CHECK_FALSE(p.range_2m_free(Pfn(0x400)));
  CHECK_FALSE(p.range_2m_free(Pfn(0x200)));  // holds a reserved frame
  CHECK(p.range_2m_free(Pfn(0x600)));
  p.assign(Pfn(0x601), PageSize::k4K, PageType::kEpt, Pfn(7));
  CHECK_FALSE(p.range_2m_free(Pfn(0x600)));
  CHECK(p.assigned_4k_in_2m(Pfn(0x600)) == 1);
  p.make_nda(Pfn(0x601), PageSize::k4K);
  CHECK(p.range_2m_free(Pfn(0x600)));
  p.make_nda(Pfn(0x400), PageSize::k2M);
  CHECK(p.entries_stored() == 0);  // host memory shrinks back
  CHECK(p.pages(PageType::kReg) == 0);
}

TEST_CASE("pamt: walks take shared locks above and the requested lock on the leaf") {
  Pamt p({Tdmr{Hpa(0), 1ull << 30, {}}});
  std::vector<Pamt::LockRef> a, b;
  PageSize reached{};
  REQUIRE(p.walk_and_lock(Pfn(0x401), PageSize::k4K, LockMode::kExclusive, a, &reached));
  CHECK(reached == PageSize::k4K);
  CHECK(a.size() == 3);
  // A 2 MiB exclusive walk over the same range conflicts with the shared 2 MiB lock.
  CHECK_FALSE(p.walk_and_lock(Pfn(0x400), PageSize::k2M, LockMode::kExclusive, b, &reached));
  CHECK(b.empty());  // all or nothing
  // Another 4 KiB page in the same 2 MiB: fine.
  REQUIRE(p.walk_and_lock(Pfn(0x402), PageSize::k4K, LockMode::kExclusive, b, &reached));
  // The same 4 KiB page: busy.
  std::vector<Pamt::LockRef> c;
  CHECK_FALSE(p.walk_and_lock(Pfn(0x401), PageSize::k4K, LockMode::kShared, c, &reached));
  for (const auto& r : a) p.unlock(r);
  for (const auto& r : b) p.unlock(r);
  CHECK(p.entries_stored() == 0);
  REQUIRE(p.walk_and_lock(Pfn(0x400), PageSize::k2M, LockMode::kExclusive, c, &reached));
  // A walk stops at an assigned 2 MiB entry.
  p.assign(Pfn(0x800), PageSize::k2M, PageType::kReg, Pfn(1));
  std::vector<Pamt::LockRef> d;
  REQUIRE(p.walk_and_lock(Pfn(0x805), PageSize::k4K, LockMode::kShared, d, &reached));
  CHECK(reached == PageSize::k2M);
  CHECK(d.size() == 2);
}
