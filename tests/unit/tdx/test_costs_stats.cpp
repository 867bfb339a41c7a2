// Costs from named parameters (TdxCosts) and the statistics the module describes.
#include <map>
#include <string>

#include "tdx_test_util.h"

using namespace cvmsim;
using namespace cvmsim::tdx;
using namespace cvmsim::tdx::test;

namespace {

struct Recorder : StatVisitor {
  std::map<std::string, const uint64_t*> counters;
  std::map<std::string, const double*> values;
  std::map<std::string, std::string> units;
  void counter(std::string_view n, const uint64_t& v, std::string_view u,
               std::string_view d) override {
    REQUIRE_FALSE(d.empty());
    REQUIRE(counters.emplace(std::string(n), &v).second);
    units[std::string(n)] = std::string(u);
  }
  void value(std::string_view n, const double& v, std::string_view u, std::string_view d) override {
    REQUIRE_FALSE(d.empty());
    REQUIRE(values.emplace(std::string(n), &v).second);
    units[std::string(n)] = std::string(u);
  }
};

}  // namespace

TEST_CASE("tdx costs: each leaf charges SEAMCALL entry plus its work, from TdxCosts") {
  TdxConfig cfg = default_config();
  cfg.costs = TdxCosts{};
  cfg.costs.seamcall = 1000;
  cfg.costs.tdcall = 700;
  cfg.costs.sept_level = 10;
  cfg.costs.pamt_level = 5;
  cfg.costs.lock = 1;
  cfg.costs.zero_4k = 300;
  Env e(cfg);
  Td td = e.build_td(20, 1);
  const Gpa g(0x200000);
  e.ensure_sept(td, g);
  const TdxResult aug = e.m.mem_page_aug(td.tdr, g, PageSize::k4K, e.page());
  // SEAMCALL + TDR (3 PAMT levels + lock) + tree lock + 4-level walk + entry lock + page
  // (3 PAMT levels + lock).
  CHECK(aug.cost.count() == 1000 + (15 + 1) + 1 + 40 + 1 + (15 + 1));
  e.enter(td);
  const TdxResult acc = e.m.tdg_mem_page_accept(td.vcpus[0], g, PageSize::k4K);
  CHECK(acc.cost.count() == 700 + 40 + 1 + 300);
  // A failure costs only what ran before it.
  const TdxResult bad = e.m.mem_page_aug(td.tdr, Gpa(0x1234), PageSize::k4K, e.page());
  CHECK(bad.cost.count() == 1000 + 16);
  // Same inputs, same costs: deterministic.
  Env e2(cfg);
  Td td2 = e2.build_td(20, 1);
  e2.ensure_sept(td2, g);
  CHECK(e2.m.mem_page_aug(td2.tdr, g, PageSize::k4K, e2.page()).cost == aug.cost);
}

TEST_CASE("tdx costs: ACCEPT 2 MiB charges 512 page zeroings, MR.EXTEND three SHA blocks") {
  TdxConfig cfg = default_config();
  Env e(cfg);
  Td td = e.build_td(20, 1, false);
  const Gpa g(0x200000);
  e.ensure_sept(td, g);
  REQUIRE_OK(e.m.mem_page_add(td.tdr, g, e.page(), e.page()));
  const TdxResult ext = e.m.mr_extend(td.tdr, g);
  const TdxCosts& c = cfg.costs;
  CHECK(ext.cost.count() ==
        c.seamcall + 3 * c.pamt_level + c.lock + 4 * c.sept_level + 3 * c.sha384_block);
  REQUIRE_OK(e.m.mr_finalize(td.tdr));
  const Gpa big(0x400000);
  e.ensure_sept(td, big, 1);
  REQUIRE_OK(e.m.mem_page_aug(td.tdr, big, PageSize::k2M, e.page_2m()));
  e.enter(td);
  const TdxResult acc = e.m.tdg_mem_page_accept(td.vcpus[0], big, PageSize::k2M);
  CHECK(acc.cost.count() == c.tdcall + 3 * c.sept_level + c.lock + 512 * c.zero_4k);
}

TEST_CASE("tdx stats: per-leaf calls and errors, statuses, PAMT pages by type") {
  Env e;
  Td td = e.build_td(20, 1);
  const Gpa g(0x200000);
  e.fault_in(td, g);
  CHECK_STATUS(e.m.mem_page_aug(td.tdr, g, PageSize::k4K, e.page()),
               with_operand(status::kEptEntryStateIncorrect, operand::kRcx));
  Recorder r;
  e.m.describe_stats(r);
  REQUIRE(r.counters.count("mem_page_aug.calls"));
  CHECK(*r.counters["mem_page_aug.calls"] == 2);
  CHECK(*r.counters["mem_page_aug.errors"] == 1);
  CHECK(*r.counters["mem_page_aug.cycles"] > 0);
  CHECK(*r.counters["tdg_mem_page_accept.calls"] == 1);
  CHECK(*r.counters["mng_addcx.calls"] == e.m.config().num_tdcs_pages);
  CHECK(*r.counters["status.TDX_EPT_ENTRY_STATE_INCORRECT"] == 1);
  CHECK(*r.counters["status.TDX_SUCCESS"] > 10);
  CHECK(r.units["mem_page_aug.cycles"] == "cycles");
  // PAMT: 1 data page, 3 S-EPT pages, 6 TDCS + 5 TDVPX pages typed PT_TDCX, 1 TDVPR, 1 TDR.
  CHECK(*r.values["pamt.pages.PT_REG"] == 1);
  CHECK(*r.values["pamt.pages.PT_EPT"] == 3);
  CHECK(*r.values["pamt.pages.PT_TDCX"] == 11);
  CHECK(*r.values["pamt.pages.PT_TDVPR"] == 1);
  CHECK(*r.values["pamt.pages.PT_TDR"] == 1);
  CHECK(*r.values["pamt.pages.PT_NDA"] == kMemBytes / kPageBytes - 17);
  CHECK(*r.values["tds_live"] == 1);
  CHECK(*r.counters["td_entries"] == 1);
  // Counters are read through the pointers the visitor kept: later calls show up.
  REQUIRE_OK(e.m.mem_track(td.tdr));
  CHECK(*r.counters["mem_track.calls"] == 1);
}
