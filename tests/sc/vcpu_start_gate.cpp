// The vCPU's start gate and end-of-program reporting, in one small platform (hw only):
//   - a vCPU without a gate starts at time 0, as before;
//   - a gated vCPU starts when its gate is notified (here: another vCPU's done()), not before;
//   - done() is notified when a program ends normally and when the vCPU stops, so a chain of
//     gates keeps going after a failure;
//   - a program that ends with GuestProgram::error() stops the vCPU with "<name>: guest program:
//     <error>" instead of finishing;
//   - a vCPU whose gate never opens never runs;
//   - start_after() once the simulation runs is refused (SC_REPORT_ERROR).
// SystemC elaborates once per process, so this is its own executable and ctest entry.
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <systemc>
#include <vector>

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

// Stores and loads over a few pages; records when it was first asked for an op; optionally
// ends with an error after its ops.
class Recorder final : public GuestProgram {
 public:
  Recorder(unsigned ops, std::string fail_with = {})
      : left_(ops), error_when_done_(std::move(fail_with)) {}
  bool next(GuestOp& op) override {
    if (!asked_) {
      asked_ = true;
      first_ps_ = sc_core::sc_time_stamp().value();
    }
    if (left_ == 0) {
      error_ = error_when_done_;
      return false;
    }
    const Gpa g(((left_ * 64) % (4 * kPageBytes)));
    op = (left_ % 2) ? GuestOp::store(g, 8, left_) : GuestOp::load(g, 8);
    --left_;
    return true;
  }
  std::string_view error() const override { return error_; }
  bool asked() const { return asked_; }
  uint64_t first_ps() const { return first_ps_; }

 private:
  unsigned left_;
  std::string error_when_done_;
  std::string error_;
  bool asked_ = false;
  uint64_t first_ps_ = 0;
};

class StopOnExit final : public ExitHandler {
 public:
  ExitAction handle_exit(unsigned, const VmExit&) override { return ExitAction{}; }  // kStop
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
    for (uint64_t p = 0; p < 16; ++p) {
      const auto f = frames_.alloc(PageSize::k4K);
      if (!f.ok() || !stage2_->map(Gpa(p * kPageBytes), *f, PageSize::k4K, kPermsRWX).ok())
        throw std::runtime_error("map");
    }
    a = add("a", 1000);
    b = add("b", 500);
    c = add("c", 10);
    d = add("d", 3, "disk on fire");
    e = add("e", 5);
    f = add("f", 5);
    b->start_after(a->done());
    d->start_after(b->done());
    e->start_after(d->done());
    f->start_after(never_);
    SC_THREAD(late_gate);
  }

  VcpuModule *a, *b, *c, *d, *e, *f;
  std::map<VcpuModule*, Recorder*> programs;
  bool late_gate_refused = false;

 private:
  SC_HAS_PROCESS(Top);
  // A frame allocator over frames [1024, ...): enough for this test.
  struct Frames final : FrameAllocator {
    Result<Pfn> alloc(PageSize) override { return Pfn(next++); }
    void free(Pfn, PageSize) override {}
    uint64_t next = 1024;
  };

  VcpuModule* add(const char* name, unsigned ops, std::string fail = {}) {
    auto prog = std::make_unique<Recorder>(ops, std::move(fail));
    Recorder* raw = prog.get();
    VcpuParams p;
    p.who = vm_principal(0);
    p.quantum = Cycles(1000);  // several quanta per program
    auto cpu =
        std::make_unique<VcpuModule>(name, p, *stage2_, exits_, std::move(prog), trace_, nullptr);
    cpu->socket.bind(router_.target_socket);
    programs[cpu.get()] = raw;
    cpus_.push_back(std::move(cpu));
    return cpus_.back().get();
  }
  void late_gate() {
    sc_core::wait(sc_core::sc_time(1, sc_core::SC_NS));
    try {
      c->start_after(never_);
    } catch (const sc_core::sc_report&) {
      late_gate_refused = true;
    }
  }

  Clock clock_;
  PhysMem mem_;
  Frames frames_;
  MemoryModule memory_;
  RouterModule router_;
  std::unique_ptr<Stage2Table> stage2_;
  StopOnExit exits_;
  NullTrace trace_;
  sc_core::sc_event never_{"never"};
  std::vector<std::unique_ptr<VcpuModule>> cpus_;
};

uint64_t stat(const VcpuModule& v, const char* name) {
  Grab g;
  v.describe_stats(g);
  return g.values.at(name);
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

  auto first = [&](VcpuModule* v) { return top.programs.at(v)->first_ps(); };
  auto finish = [&](VcpuModule* v) { return stat(*v, "finish_time_ps"); };

  // Ungated vCPUs start at time 0 and run concurrently.
  EXPECT(top.a->finished() && top.c->finished());
  EXPECT(first(top.a) == 0 && first(top.c) == 0);
  EXPECT(top.a->start_time() == sc_core::SC_ZERO_TIME);
  EXPECT(stat(*top.a, "ops") == 1000);
  EXPECT(finish(top.a) > 0);
  EXPECT(finish(top.c) < finish(top.a));  // c did not wait for anything
  // b starts exactly when a is done, not before.
  EXPECT(top.b->finished());
  EXPECT(top.b->start_time().value() == finish(top.a));
  EXPECT(first(top.b) == finish(top.a));
  EXPECT(stat(*top.b, "ops") == 500);
  // d's program ends with an error: it stops with it, and still notifies done().
  EXPECT(!top.d->finished());
  EXPECT(top.d->stop_reason() == "top.d: guest program: disk on fire");
  EXPECT(stat(*top.d, "ops") == 3);
  EXPECT(top.d->start_time().value() == finish(top.b));
  EXPECT(top.e->finished());
  EXPECT(top.e->start_time().value() == finish(top.d));
  // f's gate never opens: it never asks its program for an op and neither finishes nor stops.
  EXPECT(!top.programs.at(top.f)->asked());
  EXPECT(!top.f->finished() && top.f->stop_reason().empty());
  EXPECT(stat(*top.f, "ops") == 0);
  // A gate cannot be set once the simulation runs.
  EXPECT(top.late_gate_refused);

  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("vcpu_start_gate: all checks passed\n");
  return 0;
}
