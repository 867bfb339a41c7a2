#include <catch2/catch.hpp>
#include <type_traits>

#include "hw/base/addr.h"
#include "hw/base/cycles.h"
#include "hw/base/result.h"

using namespace cvmsim;

// Principle 4: no implicit (or even explicit) conversion between address spaces.
static_assert(!std::is_convertible_v<Gfn, Pfn>);
static_assert(!std::is_convertible_v<Pfn, Gfn>);
static_assert(!std::is_constructible_v<Pfn, Gfn>);
static_assert(!std::is_constructible_v<Gpa, Hpa>);
static_assert(!std::is_convertible_v<Gpa, Gfn>);
static_assert(!std::is_convertible_v<uint64_t, Gpa>);
static_assert(!std::is_convertible_v<Gpa, uint64_t>);
static_assert(!std::is_convertible_v<Hva, Hpa>);
static_assert(!std::is_convertible_v<Iova, Gpa>);
static_assert(!std::is_constructible_v<GmemOffset, Gpa>);
// Comparison across spaces must not compile either.
template <class A, class B>
concept EqualityComparableWith = requires(A a, B b) {
  a == b;
};
static_assert(!EqualityComparableWith<Gfn, Pfn>);
static_assert(!EqualityComparableWith<Gpa, Hpa>);
static_assert(EqualityComparableWith<Gfn, Gfn>);

TEST_CASE("address conversions within one side are exact") {
  Gpa g(0x12345678);
  CHECK(gpa_to_gfn(g) == Gfn(0x12345));
  CHECK(gfn_to_gpa(Gfn(0x12345)) == Gpa(0x12345000));
  CHECK(hpa_to_pfn(Hpa(0xfff)) == Pfn(0));
  CHECK(pfn_to_hpa(Pfn(3)) == Hpa(0x3000));
  CHECK(g.page_offset() == 0x678);
  CHECK(g.align_down(PageSize::k2M) == Gpa(0x12200000));
  CHECK(Gpa(0x40000000).is_aligned(PageSize::k1G));
  CHECK_FALSE(Gpa(0x40001000).is_aligned(PageSize::k2M));
  CHECK(Gfn(0x201).align_down(PageSize::k2M) == Gfn(0x200));
  CHECK((Gpa(0x2000) - Gpa(0x1000)) == 0x1000u);
  CHECK(to_string(Gfn(0x10)) == "gfn:0x10");
}

TEST_CASE("page sizes") {
  CHECK(bytes_of(PageSize::k4K) == 4096);
  CHECK(bytes_of(PageSize::k2M) == 2u << 20);
  CHECK(bytes_of(PageSize::k1G) == 1u << 30);
  CHECK(frames_of(PageSize::k2M) == 512);
  CHECK(parse_page_size("2M") == PageSize::k2M);
  CHECK_FALSE(parse_page_size("3M").has_value());
}

TEST_CASE("Result carries Linux errno names and numbers or an arch status") {
  Result<int> ok = 5;
  REQUIRE(ok.ok());
  CHECK(*ok == 5);
  Result<int> bad = Errno::kEINVAL;
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error() == Errno::kEINVAL);
  CHECK(static_cast<int>(bad.error().errno_value()) == 22);
  CHECK(bad.error().to_string() == "EINVAL");
  Status st = ArchStatus{StatusDomain::kTdx, 0xC000030000000000ull};
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().to_string() == "tdx:0xc000030000000000");
  Errno e;
  CHECK(parse_errno("EEXIST", &e));
  CHECK(e == Errno::kEEXIST);
  CHECK_FALSE(parse_errno("EWHAT", &e));
}

TEST_CASE("cycles convert to picoseconds at the configured frequency") {
  Clock c(2'000'000'000);  // 2 GHz: 500 ps per cycle
  CHECK(c.to_ps(Cycles(1)) == 500);
  CHECK(c.to_ps(Cycles(2500)) == 1'250'000);
  CHECK(c.from_ps(1'250'000) == Cycles(2500));
  Clock odd(3'000'000'000);  // 333.33 ps: rounded to nearest
  CHECK(odd.to_ps(Cycles(1)) == 333);
  CHECK(odd.to_ps(Cycles(3)) == 1000);
}

TEST_CASE("the whole-picosecond fast path gives what the general formula gives") {
  auto general_to_ps = [](uint64_t hz, uint64_t c) {
    const unsigned __int128 ps = static_cast<unsigned __int128>(c) * 1'000'000'000'000ull;
    return static_cast<uint64_t>((ps + hz / 2) / hz);
  };
  auto general_from_ps = [](uint64_t hz, uint64_t ps) {
    return static_cast<uint64_t>(static_cast<unsigned __int128>(ps) * hz / 1'000'000'000'000ull);
  };
  for (uint64_t hz : {1'000'000'000ull, 2'000'000'000ull, 2'500'000'000ull, 4'000'000'000ull,
                      1'000'000ull, 3'000'000'000ull, 2'100'000'000ull}) {
    const Clock c(hz);
    for (uint64_t v : {0ull, 1ull, 3ull, 499ull, 500ull, 501ull, 123'456'789ull, 1ull << 40,
                       1ull << 60, ~0ull / 400, ~0ull}) {
      INFO("hz " << hz << " value " << v);
      if (static_cast<unsigned __int128>(v) * 1'000'000'000'000ull / hz <
          (static_cast<unsigned __int128>(1) << 64))
        CHECK(c.to_ps(Cycles(v)) == general_to_ps(hz, v));  // beyond that, both wrap
      CHECK(c.from_ps(v).count() == general_from_ps(hz, v));
    }
  }
}
