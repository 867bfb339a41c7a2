// A backend's GuestAccessPolicy through the timed core (VcpuModule, whose slow path is the
// GuestTranslator tests/unit/cpu/test_guest_access_policy.cpp drives through FunctionalCpu):
//   - GPAs the policy routes privately are walked through its second root and reach memory under
//     its key (through b_transport, then DMI), shared ones through the stage-2 table under key 0;
//     private_walks counts the second root's walks;
//   - a check that refuses a write is an #NPF exit with P, W, RMP and ENC set, the store never
//     reaches memory, and the vCPU stops as its handler says;
//   - a check that raises #VC reaches the handler as kVmmCommunication with its error code and
//     is counted in exits_guest_exception, a statistic only vCPUs with checks have.
// SystemC elaborates once per process, so this is its own executable and ctest entry.
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <systemc>
#include <vector>

#include "hw/cpu/guest_access_policy.h"
#include "hw/cpu/vcpu_module.h"
#include "hw/memory/memory_module.h"
#include "hw/mmu/stage2_table.h"
#include "hw/platform/router_module.h"

using namespace cvmsim;

namespace {

int failures = 0;
#define EXPECT(cond)                                                          \
  do {                                                                        \
    if (!(cond)) {                                                            \
      std::fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                             \
    }                                                                         \
  } while (0)

constexpr uint64_t kSharedBit = uint64_t{1} << 40;
constexpr KeyId kPrivateKey = 7;
const Principal kGuest = vm_principal(0);
constexpr Pfn kPrivateFrame{2000}, kSharedFrame{2001}, kNoWrite{2002}, kNotValidated{2003};

class TwoRoots final : public GuestAccessPolicy {
 public:
  explicit TwoRoots(const WalkRoot& r) : root_(r) {}
  GuestRoute route(Gpa g) const override {
    if (g.value() & kSharedBit) return GuestRoute{nullptr, 0, false};
    return GuestRoute{&root_, kPrivateKey, true};
  }
  bool has_private_root() const override { return true; }

 private:
  WalkRoot root_;
};

// SNP-like (tdx-snp.md B3): writes to kNoWrite fail the RMP check (#NPF with the RMP bit), any
// access to kNotValidated raises #VC 0x404.
class TestRmp final : public GuestAccessCheck {
 public:
  std::string_view name() const override { return "test_rmp"; }
  bool check(const GuestAccess& a, VmExit& e) const override {
    if (a.pfn == kNoWrite && a.write) {
      e.rmp = true;
      return false;
    }
    if (a.pfn == kNotValidated) {
      e.reason = ExitReason::kVmmCommunication;
      e.exception_code = 0x404;
      return false;
    }
    return true;
  }
};

class Ops final : public GuestProgram {
 public:
  explicit Ops(std::vector<GuestOp> ops) : ops_(std::move(ops)) {}
  bool next(GuestOp& op) override {
    if (i_ == ops_.size()) return false;
    op = ops_[i_++];
    return true;
  }

 private:
  std::vector<GuestOp> ops_;
  size_t i_ = 0;
};

class Recorder final : public ExitHandler {
 public:
  std::map<unsigned, std::vector<VmExit>> exits;
  ExitAction handle_exit(unsigned id, const VmExit& e) override {
    exits[id].push_back(e);
    ExitAction a;
    a.kind = ExitAction::kStop;
    a.reason = "refused";
    return a;
  }
};

struct Grab final : StatVisitor {
  void counter(std::string_view n, const uint64_t& v, std::string_view, std::string_view) override {
    values[std::string(n)] = v;
  }
  void value(std::string_view, const double&, std::string_view, std::string_view) override {}
  std::map<std::string, uint64_t> values;
};

class Top : public sc_core::sc_module {
 public:
  explicit Top(sc_core::sc_module_name n)
      : sc_module(n),
        clock_(2'000'000'000),
        mem_(16 << 20, MemMode::kData),
        memory_("memory", mem_, clock_, MemoryTiming{}),
        router_("router", clock_, Cycles(0)) {
    router_.initiator_socket.bind(memory_.socket);
    router_.map(0, mem_.size_bytes(), 0, "dram");
    stage2_ = std::move(*Stage2Table::create(mem_, frames_, Stage2Format::kEpt4));
    second_ = std::move(*Stage2Table::create(mem_, frames_, Stage2Format::kEpt4));
    policy_ = std::make_unique<TwoRoots>(WalkRoot{&mem_, second_->root(), second_->format()});
    policy_->add_check(rmp_);
    auto map = [](Stage2Table& t, uint64_t gpa, Pfn f) {
      if (!t.map(Gpa(gpa), f, PageSize::k4K, kPermsRW).ok()) throw std::runtime_error("map");
    };
    map(*second_, 0x1000, kPrivateFrame);
    map(*stage2_, 0x1000 | kSharedBit, kSharedFrame);
    map(*second_, 0x2000, kNoWrite);
    map(*second_, 0x3000, kNotValidated);
    // cpu0: private and shared stores and loads, a load of the no-write page, then a store to it.
    a = add("a", 0,
            {GuestOp::store(Gpa(0x1000), 8, 0x1234), GuestOp::load(Gpa(0x1000), 8),
             GuestOp::store(Gpa(0x1040), 8, 0x99), GuestOp::store(Gpa(0x1000 | kSharedBit), 8, 5),
             GuestOp::load(Gpa(0x2000), 8), GuestOp::store(Gpa(0x2000), 8, 1),
             GuestOp::load(Gpa(0x1000), 8)});
    // cpu1: a load of the page that is not validated.
    b = add("b", 1, {GuestOp::load(Gpa(0x3000), 8)});
  }

  VcpuModule *a, *b;
  PhysMem& mem() { return mem_; }
  Recorder exits;

 private:
  struct Frames final : FrameAllocator {
    Result<Pfn> alloc(PageSize) override { return Pfn(next++); }
    void free(Pfn, PageSize) override {}
    uint64_t next = 1024;
  };

  VcpuModule* add(const char* name, unsigned id, std::vector<GuestOp> ops) {
    VcpuParams p;
    p.id = id;
    p.who = kGuest;
    auto cpu = std::make_unique<VcpuModule>(name, p, *stage2_, exits,
                                            std::make_unique<Ops>(std::move(ops)), trace_, nullptr);
    cpu->set_guest_access_policy(policy_.get());
    cpu->socket.bind(router_.target_socket);
    cpus_.push_back(std::move(cpu));
    return cpus_.back().get();
  }

  Clock clock_;
  PhysMem mem_;
  Frames frames_;
  MemoryModule memory_;
  RouterModule router_;
  std::unique_ptr<Stage2Table> stage2_, second_;
  TestRmp rmp_;
  std::unique_ptr<TwoRoots> policy_;
  NullTrace trace_;
  std::vector<std::unique_ptr<VcpuModule>> cpus_;
};

std::map<std::string, uint64_t> stats(const VcpuModule& v) {
  Grab g;
  v.describe_stats(g);
  return g.values;
}

}  // namespace

// libsystemc references sc_main; this test drives the kernel from main.
extern "C" int sc_main(int, char**) {
  return 0;
}

int main() {
  setenv("SYSTEMC_DISABLE_COPYRIGHT_MESSAGE", "1", 1);
  sc_core::sc_report_handler::set_actions("/IEEE_Std_1666/deprecated", sc_core::SC_DO_NOTHING);
  sc_core::sc_set_time_resolution(1, sc_core::SC_PS);
  Top top("top");
  sc_core::sc_start();

  // Private stores went through the second root under its key; the shared one through stage 2.
  std::vector<uint8_t> got(8), want(8);
  top.mem().read(pfn_to_hpa(kPrivateFrame), got);
  fill_pattern(PatternKind::kValue, 0x1234, 0x1000, want);
  EXPECT(got == want);
  EXPECT(top.mem().meta(kPrivateFrame).key_id == kPrivateKey);
  EXPECT(top.mem().meta(kPrivateFrame).label == kGuest);
  top.mem().read(pfn_to_hpa(kSharedFrame), got);
  fill_pattern(PatternKind::kValue, 5, 0x1000 | kSharedBit, want);
  EXPECT(got == want);
  EXPECT(top.mem().meta(kSharedFrame).key_id == 0);

  // The store the check refused: an #NPF with the RMP bit, nothing written, the vCPU stopped
  // before its last load.
  const auto& ea = top.exits.exits[0];
  EXPECT(ea.size() == 1);
  if (!ea.empty()) {
    const VmExit& x = ea[0];
    EXPECT(x.reason == ExitReason::kStage2Fault);
    EXPECT(x.gpa == Gpa(0x2000));
    EXPECT(x.write && x.present && x.rmp && x.private_access);
    EXPECT(npf_error_code(x) ==
           (npf::kPresent | npf::kWrite | npf::kRmp | npf::kGuestFinal | npf::kEncrypted));
  }
  EXPECT(top.mem().meta(kNoWrite).label == kNobody);
  EXPECT(top.mem().is_zero(kNoWrite));
  EXPECT(!top.a->finished() && top.a->stop_reason() == "refused");
  auto sa = stats(*top.a);
  EXPECT(sa.at("ops") == 6);
  EXPECT(sa.at("exits_stage2") == 1);
  EXPECT(sa.at("exits_guest_exception") == 0);
  // Walks: the private page, the shared page, the no-write page for the load, again for the
  // store (the load's entry vouched for reads only).
  EXPECT(sa.at("walker.walks") == 4);
  EXPECT(sa.at("private_walks") == 3);

  // #VC for the page that is not validated.
  const auto& eb = top.exits.exits[1];
  EXPECT(eb.size() == 1);
  if (!eb.empty()) {
    EXPECT(eb[0].reason == ExitReason::kVmmCommunication);
    EXPECT(eb[0].exception_code == 0x404);
    EXPECT(eb[0].gpa == Gpa(0x3000));
  }
  EXPECT(stats(*top.b).at("exits_guest_exception") == 1);

  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("guest_access_policy: all checks passed\n");
  return 0;
}
