// Random exploration (sim/explore): the shrinker on a synthetic predicate, determinism of the
// operation stream, a violation found under an unsafe policy and its shrunk sequence replaying
// on the functional core, none under mainline policies, and the reproducer scenario's shape.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "sim/explore/explorer.h"

using namespace cvmsim;
using cvmsim::explore::base_scenario;
using cvmsim::explore::Op;
using cvmsim::explore::Options;
using cvmsim::explore::Outcome;
using cvmsim::explore::replay;
using cvmsim::explore::shrink_sequence;

namespace {

bool same(const Op& a, const Op& b) {
  return a.op == b.op && a.actor == b.actor && a.vm == b.vm && a.to_vm == b.to_vm &&
         a.flag == b.flag && a.gmem == b.gmem && a.slot == b.slot && a.gpa == b.gpa &&
         a.size == b.size && a.offset == b.offset && a.value == b.value;
}

bool same(const std::vector<Op>& a, const std::vector<Op>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!same(a[i], b[i])) return false;
  return true;
}

// Fails when 13, 57 and 80 all appear in that order: the failing prefix ends at the 80.
std::optional<size_t> needs_three(const std::vector<int>& v) {
  const auto a = std::find(v.begin(), v.end(), 13);
  if (a == v.end()) return std::nullopt;
  const auto b = std::find(a, v.end(), 57);
  if (b == v.end()) return std::nullopt;
  const auto c = std::find(b, v.end(), 80);
  if (c == v.end()) return std::nullopt;
  return static_cast<size_t>(c - v.begin()) + 1;
}

}  // namespace

TEST_CASE("shrink_sequence finds the 1-minimal failing subsequence of a synthetic predicate") {
  std::vector<int> seq;
  for (int i = 0; i < 100; ++i) seq.push_back(i);
  uint64_t runs = 0;
  const auto out = shrink_sequence<int>(seq, needs_three, 10'000, &runs);
  CHECK(out == std::vector<int>{13, 57, 80});
  CHECK(runs > 3);
  CHECK(runs < 400);  // ddmin, not every subset
  // The predicate still holds on the result and on nothing smaller.
  REQUIRE(needs_three(out));
  for (size_t i = 0; i < out.size(); ++i) {
    auto less = out;
    less.erase(less.begin() + static_cast<std::ptrdiff_t>(i));
    CHECK_FALSE(needs_three(less));
  }
}

TEST_CASE("shrink_sequence stops after max_runs and still returns a failing sequence") {
  std::vector<int> seq;
  for (int i = 0; i < 1000; ++i) seq.push_back(i % 97 == 13 ? 13 : i);
  uint64_t runs = 0;
  const auto out = shrink_sequence<int>(seq, needs_three, 5, &runs);
  CHECK(runs <= 5);
  CHECK(needs_three(out));
  CHECK(out.size() < seq.size());  // the prefix cut alone removes the tail after the 80
}

TEST_CASE(
    "the same seed gives the same operations, outcome and reproducer; another seed does not") {
  Options o;
  o.backend = "sw_protected";
  o.policies = {"flush_tlb_after_zap"};
  o.seed = 7;
  o.ops = 20'000;
  const explore::Result a = explore::explore(o), b = explore::explore(o);
  REQUIRE(a.violation);
  REQUIRE(b.violation);
  CHECK(same(a.sequence, b.sequence));
  CHECK(a.violation->op_index == b.violation->op_index);
  CHECK(a.violation->message == b.violation->message);
  CHECK(same(a.shrunk, b.shrunk));
  CHECK(a.reproducer == b.reproducer);
  CHECK_FALSE(a.reproducer.empty());
  o.seed = 8;
  o.policies.clear();
  o.ops = 300;
  const explore::Result c = explore::explore(o);
  Options o7 = o;
  o7.seed = 7;
  const explore::Result d = explore::explore(o7);
  CHECK_FALSE(same(c.sequence, d.sequence));
}

TEST_CASE("a long run regenerates its operations from the seed instead of keeping them") {
  Options o;
  o.policies = {"gmem_zero_on_handout"};
  o.seed = 4;
  o.ops = 20'000;
  const explore::Result kept = explore::explore(o);
  o.keep_limit = 10;  // "long": more operations than it keeps
  const explore::Result regen = explore::explore(o);
  REQUIRE(kept.violation);
  REQUIRE(regen.violation);
  CHECK(kept.violation->op_index > 10);
  CHECK(same(kept.sequence, regen.sequence));
  CHECK(kept.reproducer == regen.reproducer);
}

TEST_CASE(
    "an unsafe TLB policy is violated, shrunk, and the shrunk sequence replays the violation") {
  Options o;
  o.policies = {"flush_tlb_after_zap"};
  o.seed = 1;
  o.ops = 20'000;
  const explore::Result r = explore::explore(o);
  REQUIRE(r.violation);
  CHECK(r.violation->invariant == "ISO-5");
  CHECK(r.violation->op_index + 1 == r.sequence.size());
  REQUIRE_FALSE(r.shrunk.empty());
  CHECK(r.shrunk.size() <= r.sequence.size());
  std::vector<Outcome> outs;
  replay(r.scenario_base, r.shrunk, outs);
  REQUIRE(outs.size() == r.shrunk.size());  // the violation is at the last operation, not before
  const auto& v = outs.back().violations;
  CHECK(std::find(v.begin(), v.end(), "ISO-5") != v.end());
  for (size_t i = 0; i + 1 < outs.size(); ++i) CHECK(outs[i].violations.empty());
  // Without the policy the same operations are harmless.
  Options safe = o;
  safe.policies = {"flush_tlb_after_zap=true"};
  std::vector<Outcome> safe_outs;
  replay(base_scenario(safe), r.shrunk, safe_outs);
  for (const auto& out : safe_outs) CHECK(out.violations.empty());
}

TEST_CASE("mainline policies: no violation in a few thousand operations on each backend") {
  for (const char* b : {"default", "sw_protected", "tdx"}) {
    Options o;
    o.backend = b;
    o.seed = 3;
    o.ops = 3'000;
    const explore::Result r = explore::explore(o);
    INFO(b);
    CHECK(r.ops_executed == 3'000);
    CHECK_FALSE(r.violation);
    CHECK(r.errnos > 0);  // invalid operations are part of the mix and get errnos
  }
}

TEST_CASE("the reproducer orders actors with barriers and loads as a valid scenario") {
  Options o;
  o.policies = {"gmem_zero_on_handout"};
  o.seed = 1;
  o.ops = 20'000;
  const explore::Result r = explore::explore(o);
  REQUIRE(r.violation);
  REQUIRE_FALSE(r.reproducer.empty());
  const auto ls = config::load_scenario_text(r.reproducer, "<test>", ".", {});
  CHECK(ls.config.platform.kvm.gmem_zero_on_handout == false);
  const auto& steps = ls.config.steps;
  REQUIRE(steps.size() >= r.shrunk.size());
  CHECK(steps.back().expect.violation.find(r.violation->invariant) != std::string::npos);
  // Between two steps of different actors there are barrier steps.
  size_t non_barrier = 0;
  for (size_t i = 1; i < steps.size(); ++i) {
    if (steps[i].op == config::StepOp::kBarrier || steps[i - 1].op == config::StepOp::kBarrier)
      continue;
    if (steps[i].op == config::StepOp::kWait) continue;
    if (steps[i].actor != steps[i - 1].actor) ++non_barrier;
  }
  CHECK(non_barrier == 0);
}

TEST_CASE("bad policies and backends are named") {
  Options o;
  o.policies = {"no_such_knob"};
  CHECK_THROWS_WITH(base_scenario(o), Catch::Contains("unknown policy \"no_such_knob\""));
  o.policies = {"gmem_rebind=sometimes"};
  CHECK_THROWS_WITH(base_scenario(o), Catch::Contains("gmem_rebind"));
  o.policies = {"hostile=maybe"};
  CHECK_THROWS_WITH(base_scenario(o), Catch::Contains("true or false"));
  o.policies.clear();
  o.backend = "snp";
  CHECK_THROWS_WITH(base_scenario(o), Catch::Contains("unknown backend"));
}

// A vCPU that stops reaches no later barrier: the reproducer orders the next actor through the
// barrier before the stopping step (plus a wait). scenarios/explore/stop_ordering.json is this
// test's output, replayed by `cvmsim check` in ctest; CVMSIM_REGEN=1 rewrites it.
TEST_CASE(
    "a stopping vCPU step is ordered without a barrier after it "
    "(scenarios/explore/stop_ordering.json)") {
  using config::StepOp;
  auto mk = [](StepOp op, uint8_t actor, uint8_t vm, uint64_t gpa, uint64_t size) {
    Op o;
    o.op = op;
    o.actor = actor;
    o.vm = vm;
    o.gpa = gpa;
    o.size = size;
    o.value = 0x1234;
    return o;
  };
  std::vector<Op> ops = {
      mk(StepOp::kStore, 2, 0, 0x1000, 8),       // vm0.cpu0
      mk(StepOp::kDeleteMemslot, 0, 0, 0, 0),    // vmm deletes vm0's only slot
      mk(StepOp::kLoad, 2, 0, 0x1000, 8),        // private access outside every memslot: stops
      mk(StepOp::kHostRead, 1, 1, 0x2000, 8),    // host, after the stop
      mk(StepOp::kStore, 3, 1, 0x2000, 8),       // vm1.cpu0
      mk(StepOp::kConvert, 0, 1, 0x2000, 4096),  // vmm converts it to shared
  };
  ops[1].slot = 0;
  Options o;
  const auto base = base_scenario(o);
  std::vector<Outcome> outs;
  replay(base, ops, outs);
  REQUIRE(outs.size() == ops.size());
  CHECK_FALSE(outs[0].stopped);
  CHECK(outs[2].stopped);
  for (const auto& out : outs) CHECK(out.clean);
  for (const auto& out : outs) CHECK(out.violations.empty());
  config::Json doc = explore::to_scenario(base, ops, outs);
  doc["name"] = "stop_ordering";
  doc["description"] =
      "tests/unit/explore: a reproducer whose vCPU stops mid-way; the host's next step joins the "
      "barrier before the stop and waits.";
  const std::string text = doc.dump(2) + "\n";
  // The host's step waits at the barrier before the vCPU's stopping step.
  const auto& steps = doc["steps"];
  bool host_joined = false;
  for (const auto& s : steps)
    if (s["actor"] == "host" && s["op"] == "barrier") host_joined = true;
  CHECK(host_joined);
  const std::string path = std::string(CVMSIM_SOURCE_DIR) + "/scenarios/explore/stop_ordering.json";
  if (std::getenv("CVMSIM_REGEN")) {
    std::ofstream(path) << text;
  }
  std::ifstream in(path);
  REQUIRE(in);
  const std::string committed((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
  CHECK(committed == text);
}

TEST_CASE(
    "TDX: the explorer's TDs run on the guest kernel, and a guest conversion to private accepts "
    "the pages") {
  using config::StepOp;
  Options o;
  o.backend = "tdx";
  o.seed = 1;
  o.ops = 3'000;
  const explore::Result r = explore::explore(o);
  CHECK_FALSE(r.violation);
  CHECK(r.stops == 0);  // without a guest kernel the first private touch stops the vCPU
  // vm0 accepts at boot; with SEPT_VE_DISABLE set an access to a PENDING page kills it, so the
  // store after the conversion back to private only runs if the MapGPA completion accepted it.
  config::Json base = base_scenario(o);
  base["vms"][0]["tdx"]["sept_ve_disable"] = true;
  auto guest = [](StepOp what, uint64_t gpa, bool to_private) {
    Op op;
    op.op = what;
    op.actor = 2;  // vm0's vCPU
    op.vm = 0;
    op.gpa = gpa;
    op.size = what == StepOp::kGuestConvert ? 4096 : 8;
    op.flag = to_private;
    op.value = 0x1234;
    return op;
  };
  const std::vector<Op> ops = {
      guest(StepOp::kStore, 0x3000, false), guest(StepOp::kGuestConvert, 0x3000, false),
      guest(StepOp::kGuestConvert, 0x3000, true), guest(StepOp::kStore, 0x3000, false)};
  std::vector<Outcome> outs;
  replay(base, ops, outs);
  REQUIRE(outs.size() == ops.size());
  for (const auto& out : outs) {
    CHECK_FALSE(out.stopped);
    CHECK(out.ret == 0);
    CHECK(out.violations.empty());
  }
}

TEST_CASE(
    "hkid_reuse: a TD torn down without CACHE.WB is found (T6) and shrunk to its lifecycle "
    "operations") {
  using config::StepOp;
  Options o;
  o.backend = "tdx";
  o.policies = {"hkid_reuse"};
  o.seed = 1;
  o.ops = 2'000;
  const explore::Result r = explore::explore(o);
  REQUIRE(r.violation);
  CHECK(r.violation->invariant == "T6");
  const bool creates = std::any_of(r.shrunk.begin(), r.shrunk.end(),
                                   [](const Op& op) { return op.op == StepOp::kCreateVm; });
  const bool closes_vm = std::any_of(r.shrunk.begin(), r.shrunk.end(), [](const Op& op) {
    return op.op == StepOp::kClose && op.flag;
  });
  CHECK(creates);
  CHECK(closes_vm);
  // Under the mainline policy the same operations flush before FREEID: no violation.
  Options safe = o;
  safe.policies = {"hkid_reuse=flush"};
  std::vector<Outcome> outs;
  replay(base_scenario(safe), r.shrunk, outs);
  REQUIRE(outs.size() == r.shrunk.size());
  for (const auto& out : outs) CHECK(out.violations.empty());
}
