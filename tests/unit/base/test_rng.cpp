#include <catch2/catch.hpp>
#include <vector>

#include "hw/base/pattern.h"
#include "hw/base/rng.h"

using namespace cvmsim;

TEST_CASE("rng streams depend on seed and hierarchical name only") {
  Rng a(42, "platform.cpu0"), b(42, "platform.cpu0"), c(42, "platform.cpu1"),
      d(43, "platform.cpu0");
  std::vector<uint64_t> va, vb, vc, vd;
  for (int i = 0; i < 16; ++i) {
    va.push_back(a.next());
    vb.push_back(b.next());
    vc.push_back(c.next());
    vd.push_back(d.next());
  }
  CHECK(va == vb);
  CHECK(va != vc);
  CHECK(va != vd);
}

TEST_CASE("rng below() stays in range and covers it") {
  Rng r(7, "x");
  std::vector<int> hist(10, 0);
  for (int i = 0; i < 100000; ++i) {
    uint64_t v = r.below(10);
    REQUIRE(v < 10);
    hist[v]++;
  }
  for (int h : hist) CHECK((h > 9000 && h < 11000));
  for (int i = 0; i < 1000; ++i) {
    double u = r.uniform01();
    REQUIRE((u >= 0.0 && u < 1.0));
  }
}

TEST_CASE("patterns are position dependent and checkable") {
  std::vector<uint8_t> buf(64);
  fill_pattern(PatternKind::kValue, 0x0807060504030201ull, 0x1000, buf);
  CHECK(buf[0] == 0x01);
  CHECK(buf[7] == 0x08);
  CHECK(buf[8] == 0x01);
  // Address-aligned: starting mid-word continues the same sequence.
  std::vector<uint8_t> mid(4);
  fill_pattern(PatternKind::kValue, 0x0807060504030201ull, 0x1003, mid);
  CHECK(mid[0] == 0x04);
  CHECK_FALSE(check_pattern(PatternKind::kValue, 0x0807060504030201ull, 0x1000, buf).has_value());
  buf[13] ^= 1;
  CHECK(check_pattern(PatternKind::kValue, 0x0807060504030201ull, 0x1000, buf) == size_t{13});
  std::vector<uint8_t> s1(256), s2(256);
  fill_pattern(PatternKind::kSeeded, 1, 0, s1);
  fill_pattern(PatternKind::kSeeded, 2, 0, s2);
  CHECK(s1 != s2);
  CHECK_FALSE(check_pattern(PatternKind::kSeeded, 1, 0, s1).has_value());
  CHECK(check_pattern(PatternKind::kZero, 0, 0, s1).has_value());
}

TEST_CASE("fill_pattern writes pattern_byte at every address, for every kind") {
  for (PatternKind k : {PatternKind::kValue, PatternKind::kSeeded, PatternKind::kZero}) {
    for (uint64_t addr :
         {uint64_t{0}, uint64_t{0x1003}, uint64_t{0x7fff'ffff'fff0}, ~uint64_t{0} - 5}) {
      std::vector<uint8_t> buf(37, 0xaa);  // crosses 2^64 for the last address
      fill_pattern(k, 0x5eed'1234'abcd'0001ull, addr, buf);
      for (size_t i = 0; i < buf.size(); ++i) {
        INFO("kind " << static_cast<int>(k) << " addr " << addr << " byte " << i);
        REQUIRE(buf[i] == pattern_byte(k, 0x5eed'1234'abcd'0001ull, addr + i));
      }
    }
  }
}
