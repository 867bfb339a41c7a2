// The TDX guest kernel's acceptance logic (models/guest/tdx_guest_kernel.h) against a scripted
// guest ABI: 2 MiB first where aligned, 4 KiB after TDX_PAGE_SIZE_MISMATCH, ALREADY_ACCEPTED as
// success, errors counted, the #VE handler's 2 MiB attempt remembered per chunk, and MapGPA
// completions (tdx-snp.md A8).
#include <catch2/catch.hpp>

#include <functional>
#include <map>
#include <utility>
#include <vector>

#include "models/guest/tdx_guest_kernel.h"

namespace cvmsim::guest {
namespace {

constexpr uint64_t k2M = uint64_t{1} << 21;

struct ScriptedAbi final : tdx::TdxGuestAbi {
  // The module's answer to ACCEPT(gpa, size); default: success.
  std::function<uint64_t(Gpa, PageSize)> status = [](Gpa, PageSize) {
    return tdx::status::kSuccess;
  };
  std::vector<std::pair<uint64_t, PageSize>> calls;
  tdx::TdxResult guest_accept(unsigned, Gpa gpa, PageSize size) override {
    calls.emplace_back(gpa.value(), size);
    tdx::TdxResult r;
    r.status = status(gpa, size);
    r.outcome = tdx::GuestOutcome::kReturn;
    return r;
  }
  size_t count(PageSize s) const {
    size_t n = 0;
    for (const auto& c : calls) n += c.second == s;
    return n;
  }
};

TdxGuestKernelConfig private_16m(AcceptPolicy p) {
  TdxGuestKernelConfig c;
  c.accept = p;
  c.private_ranges.push_back(GpaRange{Gpa(0), 16 * (uint64_t{1} << 20)});
  return c;
}

TEST_CASE("TDX guest: boot accepts 2 MiB where aligned, 4 KiB for ragged ends", "[tdx_guest]") {
  TdxGuestKernelConfig c;
  c.accept = AcceptPolicy::kBoot;
  // 4 KiB head, two whole 2 MiB chunks, 8 KiB tail.
  c.private_ranges.push_back(GpaRange{Gpa(k2M - 0x1000), 0x1000 + 2 * k2M + 0x2000});
  TdxGuestKernel k(c);
  ScriptedAbi abi;
  CHECK(k.boot(abi, 0).empty());
  REQUIRE(abi.calls.size() == 5);
  CHECK(abi.calls[0] == std::make_pair(k2M - 0x1000, PageSize::k4K));
  CHECK(abi.calls[1] == std::make_pair(k2M, PageSize::k2M));
  CHECK(abi.calls[2] == std::make_pair(2 * k2M, PageSize::k2M));
  CHECK(abi.calls[3] == std::make_pair(3 * k2M, PageSize::k4K));
  CHECK(abi.calls[4] == std::make_pair(3 * k2M + 0x1000, PageSize::k4K));
  CHECK(k.stats().accepts_2m == 2);
  CHECK(k.stats().accepts_4k == 3);
  CHECK(k.stats().boot_bytes_accepted == 0x3000 + 2 * k2M);
}

TEST_CASE("TDX guest: PAGE_SIZE_MISMATCH falls back to 512 4 KiB accepts of that chunk only",
          "[tdx_guest]") {
  TdxGuestKernel k(private_16m(AcceptPolicy::kBoot));
  ScriptedAbi abi;
  // The second chunk is mapped with 4 KiB leaves.
  abi.status = [](Gpa g, PageSize s) {
    return s == PageSize::k2M && g.value() == k2M
               ? tdx::with_operand(tdx::status::kPageSizeMismatch, 1)
               : tdx::status::kSuccess;
  };
  CHECK(k.accept_range(abi, 0, Gpa(0), 3 * k2M) == 0);
  CHECK(abi.count(PageSize::k2M) == 3);
  CHECK(abi.count(PageSize::k4K) == 512);
  CHECK(k.stats().size_mismatch == 1);
  CHECK(k.stats().accepts_2m == 2);
  CHECK(k.stats().accepts_4k == 512);
  for (const auto& c : abi.calls)
    if (c.second == PageSize::k4K) CHECK((c.first >= k2M && c.first < 2 * k2M));
}

TEST_CASE("TDX guest: ALREADY_ACCEPTED is success, other errors are counted as failed pages",
          "[tdx_guest]") {
  TdxGuestKernel k(private_16m(AcceptPolicy::kBoot));
  ScriptedAbi abi;
  abi.status = [](Gpa g, PageSize) {
    if (g.value() == 0x1000) return tdx::with_operand(tdx::status::kPageAlreadyAccepted, 0);
    if (g.value() == 0x2000)
      return tdx::with_operand(tdx::status::kOperandInvalid, tdx::operand::kRcx);
    return tdx::status::kSuccess;
  };
  CHECK(k.accept_range(abi, 0, Gpa(0), 0x4000) == 1);  // only 0x2000 failed
  CHECK(k.stats().already_accepted == 1);
  CHECK(k.stats().accept_errors == 1);
  CHECK(k.stats().accepts_4k == 2);
  // A 2 MiB chunk whose ACCEPT(2M) fails with a real error is not retried at 4 KiB.
  ScriptedAbi bad;
  bad.status = [](Gpa, PageSize) {
    return tdx::with_operand(tdx::status::kOperandInvalid, tdx::operand::kRcx);
  };
  CHECK(k.accept_range(bad, 0, Gpa(k2M), k2M) == 512);
  CHECK(bad.calls.size() == 1);
}

TEST_CASE("TDX guest: the #VE handler tries 2 MiB once per chunk, then 4 KiB", "[tdx_guest]") {
  TdxGuestKernel k(private_16m(AcceptPolicy::kLazy));
  ScriptedAbi abi;
  abi.status = [](Gpa, PageSize s) {
    return s == PageSize::k2M ? tdx::with_operand(tdx::status::kPageSizeMismatch, 1)
                              : tdx::status::kSuccess;
  };
  CHECK(k.boot(abi, 0).empty());
  CHECK(abi.calls.empty());  // lazy: nothing at boot
  CHECK(k.on_ve(abi, 0, Gpa(0x5000)));
  CHECK(abi.calls.size() == 2);  // 2M at 0 (mismatch), 4K at 0x5000
  CHECK(abi.calls[0] == std::make_pair(uint64_t{0}, PageSize::k2M));
  CHECK(abi.calls[1] == std::make_pair(uint64_t{0x5000}, PageSize::k4K));
  CHECK(k.on_ve(abi, 0, Gpa(0x6000)));
  CHECK(abi.calls.size() == 3);  // the chunk is known to hold 4 KiB leaves: 4K only
  CHECK(k.stats().ves_handled == 2);
  // A chunk mapped at 2 MiB: one ACCEPT(2M) answers the #VE.
  ScriptedAbi huge;
  CHECK(k.on_ve(huge, 0, Gpa(3 * k2M + 0x7000)));
  REQUIRE(huge.calls.size() == 1);
  CHECK(huge.calls[0] == std::make_pair(3 * k2M, PageSize::k2M));
  // A failing accept leaves the #VE unhandled (the vCPU stops).
  ScriptedAbi failing;
  failing.status = [](Gpa, PageSize) {
    return tdx::with_operand(tdx::status::kOperandInvalid, tdx::operand::kRcx);
  };
  CHECK_FALSE(k.on_ve(failing, 0, Gpa(5 * k2M)));
}

TEST_CASE("TDX guest: MapGPA to shared tracks the range, back to private accepts it",
          "[tdx_guest]") {
  TdxGuestKernel k(private_16m(AcceptPolicy::kLazy));
  ScriptedAbi abi;
  k.on_map_gpa_done(abi, 0, Gpa(k2M + 0x3000), 0x1000, /*to_private=*/false, 0);
  CHECK(k.is_shared(gpa_to_gfn(Gpa(k2M + 0x3000))));
  CHECK(abi.calls.empty());  // private->shared is MapGPA only
  // The chunk holding a shared page is not whole private: the #VE handler goes 4 KiB at once.
  CHECK(k.on_ve(abi, 0, Gpa(k2M + 0x8000)));
  REQUIRE(abi.calls.size() == 1);
  CHECK(abi.calls[0].second == PageSize::k4K);
  // A failed MapGPA changes nothing and accepts nothing.
  abi.calls.clear();
  k.on_map_gpa_done(abi, 0, Gpa(k2M + 0x3000), 0x1000, /*to_private=*/true, 0x8000000000000000ull);
  CHECK(abi.calls.empty());
  CHECK(k.is_shared(gpa_to_gfn(Gpa(k2M + 0x3000))));
  CHECK(k.stats().map_gpa_failed == 1);
  // Back to private: ACCEPT of every page (a whole aligned chunk: 2 MiB).
  k.on_map_gpa_done(abi, 0, Gpa(k2M + 0x3000), 0x1000, /*to_private=*/true, 0);
  CHECK_FALSE(k.is_shared(gpa_to_gfn(Gpa(k2M + 0x3000))));
  REQUIRE(abi.calls.size() == 1);
  CHECK(abi.calls[0] == std::make_pair(k2M + 0x3000, PageSize::k4K));
  abi.calls.clear();
  k.on_map_gpa_done(abi, 0, Gpa(4 * k2M), k2M, /*to_private=*/true, 0);
  REQUIRE(abi.calls.size() == 1);
  CHECK(abi.calls[0] == std::make_pair(4 * k2M, PageSize::k2M));
  CHECK(k.stats().map_gpa_to_shared == 1);
  CHECK(k.stats().map_gpa_to_private == 2);
}

}  // namespace
}  // namespace cvmsim::guest
