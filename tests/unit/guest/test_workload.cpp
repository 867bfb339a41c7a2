#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <vector>

#include "guest_test_util.h"
#include "models/guest/workload.h"
#include "models/guest/zipf.h"

using namespace cvmsim;
using cvmsim::test::drain;

namespace {

WorkloadSpec spec_of(WorkloadKind kind) {
  WorkloadSpec s;
  s.kind = kind;
  s.base = Gpa(0x4000'0000);
  return s;
}

std::unique_ptr<GuestProgram> make(const WorkloadSpec& s, uint64_t seed = 1) {
  auto r = make_workload(s, Rng(seed, "vm0.vcpu0.workload"));
  INFO(r.error);
  REQUIRE(r.ok());
  return std::move(r.program);
}

std::vector<uint64_t> offsets(const std::vector<GuestOp>& ops, Gpa base) {
  std::vector<uint64_t> v;
  for (const auto& op : ops)
    if (op.kind == OpKind::kLoad || op.kind == OpKind::kStore) v.push_back(op.gpa - base);
  return v;
}

}  // namespace

TEST_CASE("sequential walks the footprint in access_size steps and wraps") {
  auto s = spec_of(WorkloadKind::kSequential);
  s.footprint_bytes = 256;
  s.access_size = 64;
  s.ops = 10;
  auto ops = drain(*make(s));
  REQUIRE(ops.size() == 10);
  CHECK(offsets(ops, s.base) == std::vector<uint64_t>{0, 64, 128, 192, 0, 64, 128, 192, 0, 64});
  for (const auto& op : ops) CHECK(op.size == 64);

  SECTION("a trailing partial slot is never touched") {
    s.footprint_bytes = 250;
    s.ops = 5;
    CHECK(offsets(drain(*make(s)), s.base) == std::vector<uint64_t>{0, 64, 128, 0, 64});
  }
}

TEST_CASE("strided steps by stride_bytes modulo the footprint") {
  auto s = spec_of(WorkloadKind::kStrided);
  s.footprint_bytes = 40 * 1024;
  s.stride_bytes = 12 * 1024;
  s.access_size = 8;
  s.ops = 11;
  const std::vector<uint64_t> want = {0,         12 * 1024, 24 * 1024, 36 * 1024,
                                      8 * 1024,  20 * 1024, 32 * 1024, 4 * 1024,
                                      16 * 1024, 28 * 1024, 0};
  CHECK(offsets(drain(*make(s)), s.base) == want);

  SECTION("an offset that would cross the end is moved down to end there") {
    s.footprint_bytes = 100;  // used length 96 (12 slots of 8)
    s.stride_bytes = 30;
    s.ops = 5;
    CHECK(offsets(drain(*make(s)), s.base) == std::vector<uint64_t>{0, 30, 60, 88, 24});
  }
  SECTION("a stride larger than the footprint wraps") {
    s.footprint_bytes = 4096;
    s.stride_bytes = 4096 + 64;
    s.ops = 3;
    CHECK(offsets(drain(*make(s)), s.base) == std::vector<uint64_t>{0, 64, 128});
  }
}

TEST_CASE("uniform covers every slot about equally and stays aligned") {
  auto s = spec_of(WorkloadKind::kUniform);
  s.footprint_bytes = 64 * 1024;
  s.access_size = 64;
  s.ops = 1'000'000;
  auto p = make(s);
  std::vector<int> hits(1024, 0);
  GuestOp op;
  while (p->next(op)) {
    const uint64_t off = op.gpa - s.base;
    REQUIRE(off % 64 == 0);
    REQUIRE(off + op.size <= s.footprint_bytes);
    hits[off / 64]++;
  }
  const auto [mn, mx] = std::minmax_element(hits.begin(), hits.end());
  CHECK(*mn > 850);  // expected 976.6 per slot; sd ~31
  CHECK(*mx < 1100);
}

TEST_CASE("every generated access lies inside the footprint with the right size") {
  struct Case {
    WorkloadKind kind;
    uint64_t footprint;
    uint32_t size;
  };
  const Case cases[] = {
      {WorkloadKind::kSequential, 1000, 3},         {WorkloadKind::kStrided, 10'001, 7},
      {WorkloadKind::kUniform, 4097, 4096},         {WorkloadKind::kUniform, 5, 5},
      {WorkloadKind::kZipf, 3 * 4096 + 100, 24},    {WorkloadKind::kZipf, 4096, 4096},
      {WorkloadKind::kHotCold, 5 * 4096 + 1, 3000}, {WorkloadKind::kHotCold, 64 * 4096, 1},
  };
  for (const auto& c : cases) {
    for (bool scatter : {true, false}) {
      auto s = spec_of(c.kind);
      s.footprint_bytes = c.footprint;
      s.access_size = c.size;
      s.stride_bytes = 4099;
      s.scatter_pages = scatter;
      s.ops = 20'000;
      INFO(name_of(c.kind) << " footprint " << c.footprint << " size " << c.size);
      auto ops = drain(*make(s));
      REQUIRE(ops.size() == s.ops);
      for (const auto& op : ops) {
        REQUIRE(op.size == c.size);
        REQUIRE(op.gpa >= s.base);
        REQUIRE(op.gpa - s.base + op.size <= c.footprint);
      }
    }
  }
}

TEST_CASE("zipf and hotcold pick a slot inside a whole page") {
  for (auto kind : {WorkloadKind::kZipf, WorkloadKind::kHotCold}) {
    auto s = spec_of(kind);
    s.footprint_bytes = 16 * 4096;
    s.access_size = 1000;  // 4 slots per page, at 0, 1000, 2000, 3000
    s.ops = 10'000;
    std::set<uint64_t> in_page;
    for (const auto& op : drain(*make(s))) {
      const uint64_t off = op.gpa - s.base;
      REQUIRE(off % 4096 % 1000 == 0);
      REQUIRE(off % 4096 + 1000 <= 4096);
      in_page.insert(off % 4096);
    }
    CHECK(in_page == std::set<uint64_t>{0, 1000, 2000, 3000});
  }
}

TEST_CASE("zipf: the top page dominates and frequencies follow the exponent") {
  auto s = spec_of(WorkloadKind::kZipf);
  s.footprint_bytes = 1000 * 4096;
  s.access_size = 4096;
  s.zipf_theta = 0.99;
  s.ops = 1'000'000;
  for (bool scatter : {false, true}) {
    s.scatter_pages = scatter;
    std::map<uint64_t, int> per_page;
    for (const auto& op : drain(*make(s, 9))) per_page[(op.gpa - s.base) / 4096]++;
    std::vector<int> counts;
    for (const auto& [page, n] : per_page) counts.push_back(n);
    counts.resize(1000, 0);
    std::sort(counts.rbegin(), counts.rend());
    INFO("scatter " << scatter);
    CHECK(counts[0] > 50 * counts[500]);
    // Descending counts track n * P(rank): within 3% for the top ranks.
    for (int k : {1, 2, 3, 5, 10}) {
      const double want = s.ops * ZipfSampler::probability(1000, 0.99, k);
      CHECK(std::abs(counts[k - 1] - want) < 0.03 * want);
    }
    if (!scatter) {
      CHECK(per_page[0] == counts[0]);  // rank 1 is page 0
    } else {
      // Scattered: the ten hottest pages are not the first ten pages.
      int first_ten = 0;
      for (uint64_t p = 0; p < 10; ++p) first_ten += per_page[p];
      int top_ten = 0;
      for (int k = 0; k < 10; ++k) top_ten += counts[k];
      CHECK(first_ten < top_ten / 2);
    }
  }
}

TEST_CASE("hotcold: the hot set receives hot_probability of the accesses") {
  auto s = spec_of(WorkloadKind::kHotCold);
  s.footprint_bytes = 200 * 4096;
  s.access_size = 64;
  s.hot_fraction = 0.1;  // 20 hot pages
  s.hot_probability = 0.8;
  s.ops = 200'000;

  SECTION("unscattered: the first 20 pages are hot") {
    s.scatter_pages = false;
    int hot = 0;
    for (const auto& op : drain(*make(s))) hot += (op.gpa - s.base) / 4096 < 20;
    CHECK(std::abs(hot / 200'000.0 - 0.8) < 0.01);
  }
  SECTION("scattered: 20 pages share the hot probability, spread over the footprint") {
    std::map<uint64_t, int> per_page;
    for (const auto& op : drain(*make(s))) per_page[(op.gpa - s.base) / 4096]++;
    std::vector<std::pair<int, uint64_t>> by_count;
    for (const auto& [page, n] : per_page) by_count.push_back({n, page});
    std::sort(by_count.rbegin(), by_count.rend());
    REQUIRE(by_count.size() == 200);
    int hot = 0;
    uint64_t max_hot_page = 0;
    for (int i = 0; i < 20; ++i) {
      hot += by_count[i].first;
      max_hot_page = std::max(max_hot_page, by_count[i].second);
    }
    CHECK(std::abs(hot / 200'000.0 - 0.8) < 0.01);
    // Each hot page gets ~8000, each cold page ~222: a clear gap.
    CHECK(by_count[19].first > 5 * by_count[20].first);
    CHECK(max_hot_page >= 20);
  }
}

TEST_CASE("read_fraction decides loads versus stores") {
  for (auto kind : {WorkloadKind::kSequential, WorkloadKind::kUniform, WorkloadKind::kZipf}) {
    auto s = spec_of(kind);
    s.ops = 100'000;
    for (double rf : {0.0, 0.3, 0.75, 1.0}) {
      s.read_fraction = rf;
      int loads = 0;
      for (const auto& op : drain(*make(s))) loads += op.kind == OpKind::kLoad;
      INFO(name_of(kind) << " read_fraction " << rf);
      CHECK(std::abs(loads / 100'000.0 - rf) < 0.01);
      if (rf == 0.0 || rf == 1.0) CHECK(loads == static_cast<int>(rf * 100'000));
    }
  }
}

TEST_CASE("stores carry the pattern and loads the verify flag") {
  auto s = spec_of(WorkloadKind::kUniform);
  s.store_pattern = PatternKind::kValue;
  s.store_value = 0x1122334455667788;
  s.verify_loads = true;
  s.ops = 1000;
  int loads = 0, stores = 0;
  for (const auto& op : drain(*make(s))) {
    CHECK(op.pattern == PatternKind::kValue);
    CHECK(op.value == 0x1122334455667788);
    if (op.kind == OpKind::kLoad) {
      CHECK(op.verify);
      ++loads;
    } else {
      REQUIRE(op.kind == OpKind::kStore);
      ++stores;
    }
  }
  CHECK(loads > 0);
  CHECK(stores > 0);
}

TEST_CASE("compute ops go between memory ops and expected_ops counts them") {
  auto s = spec_of(WorkloadKind::kSequential);
  s.ops = 4;
  s.compute_cycles_between = 250;
  auto p = make(s);
  CHECK(p->expected_ops() == 7);
  auto ops = drain(*p);
  REQUIRE(ops.size() == 7);
  for (size_t i = 0; i < ops.size(); ++i) {
    if (i % 2 == 1) {
      CHECK(ops[i].kind == OpKind::kCompute);
      CHECK(ops[i].cycles == 250);
    } else {
      CHECK(ops[i].kind != OpKind::kCompute);
    }
  }
  GuestOp op;
  CHECK_FALSE(p->next(op));  // stays ended

  s.compute_cycles_between = 0;
  CHECK(make(s)->expected_ops() == 4);
}

TEST_CASE("generators are deterministic per seed") {
  for (auto kind : {WorkloadKind::kUniform, WorkloadKind::kZipf, WorkloadKind::kHotCold}) {
    auto s = spec_of(kind);
    s.ops = 1000;
    auto key = [](const std::vector<GuestOp>& ops) {
      std::vector<std::pair<int, uint64_t>> v;
      for (const auto& op : ops) v.push_back({static_cast<int>(op.kind), op.gpa.value()});
      return v;
    };
    INFO(name_of(kind));
    CHECK(key(drain(*make(s, 42))) == key(drain(*make(s, 42))));
    CHECK(key(drain(*make(s, 42))) != key(drain(*make(s, 43))));
  }
}

TEST_CASE("the factory rejects bad specs with a message naming the field") {
  struct Case {
    const char* field;
    void (*edit)(WorkloadSpec&);
  };
  const Case cases[] = {
      {"access_size", [](WorkloadSpec& s) { s.access_size = 0; }},
      {"access_size", [](WorkloadSpec& s) { s.access_size = 4097; }},
      {"footprint_bytes", [](WorkloadSpec& s) { s.footprint_bytes = 0; }},
      {"footprint_bytes", [](WorkloadSpec& s) { s.footprint_bytes = 4, s.access_size = 8; }},
      {"footprint_bytes",
       [](WorkloadSpec& s) { s.base = Gpa(~uint64_t{0} - 100), s.footprint_bytes = 4096; }},
      {"ops", [](WorkloadSpec& s) { s.ops = 0; }},
      {"read_fraction", [](WorkloadSpec& s) { s.read_fraction = 1.5; }},
      {"read_fraction",
       [](WorkloadSpec& s) { s.read_fraction = std::numeric_limits<double>::quiet_NaN(); }},
      {"read_fraction", [](WorkloadSpec& s) { s.read_fraction = -0.1; }},
      {"stride_bytes",
       [](WorkloadSpec& s) { s.kind = WorkloadKind::kStrided, s.stride_bytes = 0; }},
      {"zipf_theta", [](WorkloadSpec& s) { s.kind = WorkloadKind::kZipf, s.zipf_theta = -1; }},
      {"zipf_theta",
       [](WorkloadSpec& s) {
         s.kind = WorkloadKind::kZipf, s.zipf_theta = std::numeric_limits<double>::quiet_NaN();
       }},
      {"zipf_theta", [](WorkloadSpec& s) { s.kind = WorkloadKind::kZipf, s.zipf_theta = 1e9; }},
      {"footprint_bytes",
       [](WorkloadSpec& s) { s.kind = WorkloadKind::kZipf, s.footprint_bytes = 4095; }},
      {"hot_fraction",
       [](WorkloadSpec& s) { s.kind = WorkloadKind::kHotCold, s.hot_fraction = 0; }},
      {"hot_fraction",
       [](WorkloadSpec& s) { s.kind = WorkloadKind::kHotCold, s.hot_fraction = 1; }},
      {"hot_probability",
       [](WorkloadSpec& s) { s.kind = WorkloadKind::kHotCold, s.hot_probability = 1.01; }},
      {"footprint_bytes",
       [](WorkloadSpec& s) { s.kind = WorkloadKind::kHotCold, s.footprint_bytes = 8191; }},
      {"kind", [](WorkloadSpec& s) { s.kind = static_cast<WorkloadKind>(77); }},
      {"store_pattern", [](WorkloadSpec& s) { s.store_pattern = static_cast<PatternKind>(9); }},
      {"trace_path", [](WorkloadSpec& s) { s.kind = WorkloadKind::kTrace, s.trace_path = ""; }},
      {"trace_path",
       [](WorkloadSpec& s) { s.kind = WorkloadKind::kTrace, s.trace_path = "/nonexistent/t.txt"; }},
      {"trace_repeat",
       [](WorkloadSpec& s) {
         s.kind = WorkloadKind::kTrace, s.trace_path = "x", s.trace_repeat = 0, s.ops = 0;
       }},
      {"trace_format",
       [](WorkloadSpec& s) {
         s.kind = WorkloadKind::kTrace, s.trace_path = "x",
         s.trace_format = static_cast<TraceFormat>(5);
       }},
  };
  for (const auto& c : cases) {
    WorkloadSpec s;
    c.edit(s);
    auto r = make_workload(s, Rng(1));
    INFO(c.field << ": " << r.error);
    CHECK_FALSE(r.ok());
    CHECK(r.error.rfind(std::string(c.field) + ": ", 0) == 0);
    CHECK(check_workload_spec(s).empty() ==
          (std::string(c.field) == "trace_path" && !s.trace_path.empty()));
  }
}

TEST_CASE("fields a kind does not use are not checked") {
  WorkloadSpec s;
  s.kind = WorkloadKind::kUniform;
  s.zipf_theta = -5;
  s.stride_bytes = 0;
  s.hot_fraction = 7;
  CHECK(make_workload(s, Rng(1)).ok());
}

TEST_CASE("zipf survives extreme but legal exponents and footprints") {
  auto s = spec_of(WorkloadKind::kZipf);
  s.access_size = 64;
  s.ops = 2000;
  for (double theta : {0.0, 1e-9, 0.5, 1.0, 1.0 + 1e-9, 2.0, 20.0, 100.0}) {
    for (uint64_t footprint : {uint64_t{4096}, uint64_t{2} * 4096, uint64_t{1} << 40}) {
      s.zipf_theta = theta;
      s.footprint_bytes = footprint;
      INFO("theta " << theta << " footprint " << footprint);
      for (const auto& op : drain(*make(s))) REQUIRE(op.gpa - s.base + 64 <= footprint);
    }
  }
}

TEST_CASE("workload kind and trace format names round-trip") {
  for (auto k : {WorkloadKind::kSequential, WorkloadKind::kStrided, WorkloadKind::kUniform,
                 WorkloadKind::kZipf, WorkloadKind::kHotCold, WorkloadKind::kTrace})
    CHECK(parse_workload_kind(name_of(k)) == k);
  for (auto f : {TraceFormat::kAuto, TraceFormat::kCvmsim, TraceFormat::kLackey})
    CHECK(parse_trace_format(name_of(f)) == f);
  CHECK_FALSE(parse_workload_kind("random").has_value());
  CHECK_FALSE(parse_trace_format("pin").has_value());
}
