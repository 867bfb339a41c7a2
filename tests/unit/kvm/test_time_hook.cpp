// kvm::TimeHook / Kvm::yield (models/kvm/kvm.h): how a call in flight lets simulated time pass.
#include <catch2/catch.hpp>

#include <vector>

#include "kvm_test_util.h"

namespace cvmsim::kvmtest {
namespace {

struct RecordingHook final : TimeHook {
  std::vector<uint64_t> passed;
  bool can_pass = true;
  bool yield(Cycles c) override {
    passed.push_back(c.count());
    return can_pass;
  }
};

TEST_CASE("Kvm::yield: without a hook nothing passes and the meter is kept", "[kvm][time_hook]") {
  KvmFixture f{AttrStoreKind::kXarray};
  (void)f.kvm.take_cost();
  f.kvm.charge(Cycles(500));
  CHECK_FALSE(f.kvm.has_time_hook());
  CHECK_FALSE(f.kvm.yield(Cycles(100)));
  CHECK(f.kvm.take_cost() == Cycles(500));  // still the caller's to charge
}

TEST_CASE("Kvm::yield: the hook gets what was charged so far plus the call in flight",
          "[kvm][time_hook]") {
  KvmFixture f{AttrStoreKind::kXarray};
  RecordingHook h;
  f.kvm.set_time_hook(&h);
  (void)f.kvm.take_cost();
  f.kvm.charge(Cycles(500));
  CHECK(f.kvm.yield(Cycles(100)));
  REQUIRE(h.passed.size() == 1);
  CHECK(h.passed[0] == 600);
  CHECK(f.kvm.take_cost() == Cycles(0));  // spent while yielding
  f.kvm.charge(Cycles(7));
  CHECK(f.kvm.yield(Cycles(0)));  // a catch-up
  CHECK(h.passed.back() == 7);
  h.can_pass = false;  // e.g. a test's fake with nothing left to run
  CHECK_FALSE(f.kvm.yield(Cycles(3)));
  f.kvm.set_time_hook(nullptr);
}

TEST_CASE(
    "Kvm::yield: a vCPU exit's trace time is cleared for other threads and restored to now after",
    "[kvm][time_hook]") {
  KvmFixture f{AttrStoreKind::kXarray};
  uint64_t now = 1000;
  struct Sink final : TraceSink {
    std::vector<uint64_t> times;
    bool enabled() const override { return true; }
    void event(uint64_t t, std::string_view, std::string_view, std::string_view) override {
      times.push_back(t);
    }
  } sink;
  f.kvm.set_trace(&sink, [&] { return now; });
  struct Other final : TimeHook {
    Kvm* k = nullptr;
    uint64_t* now = nullptr;
    bool yield(Cycles c) override {
      k->trace("other", "e", "");  // another thread traces at the global time
      *now += c.count();
      return true;
    }
  } hook;
  hook.k = &f.kvm;
  hook.now = &now;
  f.kvm.set_time_hook(&hook);
  f.kvm.set_time_override(5000);  // the vCPU's local time, ahead of the global 1000
  f.kvm.trace("vcpu", "e", "");
  (void)f.kvm.yield(Cycles(250));
  f.kvm.trace("vcpu", "e", "");
  f.kvm.set_time_override(0);
  f.kvm.set_time_hook(nullptr);
  REQUIRE(sink.times.size() == 3);
  CHECK(sink.times[0] == 5000);
  CHECK(sink.times[1] == 1000);  // not the vCPU's override
  CHECK(sink.times[2] == 1250);  // synchronised: the global time after the yield
}

}  // namespace
}  // namespace cvmsim::kvmtest
