#include "sim/platform/run.h"

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <memory>
#include <systemc>
#include <vector>

#include "hw/base/pattern.h"
#include "hw/cpu/vcpu_module.h"
#include "hw/memory/initiator.h"
#include "hw/memory/memory_module.h"
#include "hw/mmu/stage2_table.h"
#include "hw/platform/router_module.h"
#include "models/guest/workload.h"
#include "models/kvm/kvm.h"
#include "models/vmm/vmm.h"
#include "sim/platform/scenario_driver.h"
#include "sim/scenario/platform_core.h"
#include "sim/stats/registry.h"
#include "sim/trace/file_trace.h"
#include "sim/trace/ring_trace.h"
#include "sim/version.h"

namespace cvmsim {

namespace {

using config::ScenarioConfig;

MemoryTiming memory_timing(const config::CostConfig& c) {
  return MemoryTiming{Cycles(c.mem_access_cycles), c.mem_bytes_per_cycle};
}

// The progress line: at most every 0.5 s of wall time, only on a terminal.
class ProgressLine final : public Progress {
 public:
  explicit ProgressLine(bool enabled) : enabled_(enabled), start_(Clock::now()), last_(start_) {}
  // Operations the programs will produce (GuestProgram::expected_ops, compute ops included).
  void add_total(uint64_t ops) { total_ += ops; }
  void advance(uint64_t n) override {
    done_ += n;
    if (!enabled_) return;
    const auto now = Clock::now();
    if (now - last_ < std::chrono::milliseconds(500) || now - start_ < std::chrono::seconds(1))
      return;
    last_ = now;
    const double secs = std::chrono::duration<double>(now - start_).count();
    std::fprintf(stderr, "\r[cvmsim] %5.1f%% of %" PRIu64 " ops, sim %.3f ms, %.2f M ops/s   ",
                 total_ ? 100.0 * double(done_) / double(total_) : 0.0, total_,
                 sc_core::sc_time_stamp().to_seconds() * 1e3, double(done_) / secs / 1e6);
    printed_ = true;
  }
  void finish() {
    if (printed_) std::fprintf(stderr, "\r%80s\r", "");
  }

 private:
  using Clock = std::chrono::steady_clock;
  bool enabled_;
  uint64_t total_ = 0, done_ = 0;
  Clock::time_point start_, last_;
  bool printed_ = false;
};

// A VM's timed part: its vCPU modules (the rest of it is in the PlatformCore).
struct VmInstance {
  std::string name;
  std::vector<std::unique_ptr<VcpuModule>> vcpus;
};

// The exit handler a vCPU reports to: KVM's vCPU, followed by an invariant check (an exit is
// an operation boundary: KVM's fault, zap and flush are complete). A violation the vCPU's
// current step does not expect stops the run when on_violation is "stop".
class CheckedExits final : public ExitHandler {
 public:
  CheckedExits(kvm::Vcpu& inner, invariants::Checker& checker, ScenarioDriver& driver,
               std::string actor, bool stop)
      : inner_(inner), checker_(checker), driver_(driver), actor_(std::move(actor)), stop_(stop) {}
  ExitAction handle_exit(unsigned id, const VmExit& e) override {
    return after(inner_.handle_exit(id, e));
  }
  ExitAction handle_machine_check(unsigned id, const MachineCheck& mc) override {
    return after(inner_.handle_machine_check(id, mc));
  }

 private:
  ExitAction after(ExitAction a) {
    if (checker_.mode() == invariants::CheckMode::kOff) return a;
    for (const auto& v : checker_.check_at([this] { return driver_.where(actor_); })) {
      if (driver_.note_violation(actor_, v) || !stop_) continue;
      a.kind = ExitAction::kStop;
      a.reason = "invariant " + v.invariant + " violated: " + v.message;
      sc_core::sc_stop();
    }
    return a;
  }
  kvm::Vcpu& inner_;
  invariants::Checker& checker_;
  ScenarioDriver& driver_;
  std::string actor_;
  bool stop_;
};

// The timed shell's TimeHook (models/kvm/kvm.h): a call in flight in KVM or a backend lets
// simulated time pass on the calling thread. A vCPU's thread hands over the local time it ran
// ahead first (temporal decoupling must not hide an overlap); a vmm/host actor thread simply
// waits. Outside a SystemC thread (set-up, teardown after the run) time cannot pass.
class ShellTimeHook final : public kvm::TimeHook {
 public:
  explicit ShellTimeHook(const Clock& clock) : clock_(clock) {}
  void add(VcpuModule* cpu) { cpus_.push_back(cpu); }
  bool yield(Cycles c) override {
    const sc_core::sc_process_handle h = sc_core::sc_get_current_process_handle();
    if (!h.valid() || h.proc_kind() != sc_core::SC_THREAD_PROC_) return false;
    for (VcpuModule* cpu : cpus_)
      if (cpu->on_own_thread()) {
        cpu->pass_time_in_exit(c);
        return true;
      }
    sc_core::wait(sc_core::sc_time::from_value(clock_.to_ps(c)));
    return true;
  }

 private:
  Clock clock_;
  std::vector<VcpuModule*> cpus_;
};

class Platform : public sc_core::sc_module {
 public:
  // `coverage` gets the run's transitions (RunOptions::coverage); it must outlive the platform.
  Platform(sc_core::sc_module_name name, const ScenarioConfig& sc, TraceSink& trace,
           ProgressLine& progress, sm::Coverage& coverage)
      : sc_module(name),
        clock_(sc.platform.cpu_frequency_hz),
        core_(sc, &coverage),
        memory_("memory", core_.mem(), clock_, memory_timing(sc.platform.costs)),
        router_("router", clock_, Cycles(sc.platform.costs.interconnect_cycles)) {
    kvm::Kvm& kvm = core_.kvm();
    PhysMem& mem = core_.mem();
    kvm.set_trace(&trace, [] { return static_cast<uint64_t>(sc_core::sc_time_stamp().value()); });
    // Provenance events carry the simulated time, as the trace does (ns).
    mem.history().set_clock([] { return static_cast<uint64_t>(sc_core::sc_time_stamp().value()); });
    router_.initiator_socket.bind(memory_.socket);
    router_.map(0, mem.size_bytes(), 0, "dram");
    const auto& c = sc.platform.costs;
    core_.build_vms();
    for (const auto& pvm : core_.vms()) {
      vms_.push_back(std::make_unique<VmInstance>());
      vms_.back()->name = pvm.cfg->name;
    }
    // Scenario steps: vmm/host actor threads, and step programs for vCPU actors.
    const std::vector<vmm::Vmm*> vmms = core_.vmms();
    // Isolation invariants: the generic catalogue plus every registered backend's.
    checker_ =
        std::make_unique<invariants::Checker>(kvm, mem, sc.run.invariants.mode, core_.invariants());
    const bool stop = sc.run.invariants.on_violation == config::OnViolation::kStop;
    driver_ = std::make_unique<ScenarioDriver>("steps", sc, kvm, vmms, clock_, *checker_, stop);
    // ISO-2 needs to hear about reads that return another principal's plaintext.
    if (sc.run.invariants.mode != invariants::CheckMode::kOff)
      memory_.set_read_observer([c = checker_.get()](Pfn f, Principal reader, Principal holder) {
        c->note_plaintext_read(kvm::PlaintextRead{f, reader, holder});
      });
    for (size_t v = 0; v < sc.vms.size(); ++v) {
      const auto& vmc = sc.vms[v];
      VmInstance* vm = vms_[v].get();
      scenario::PlatformVm& pvm = core_.vms()[v];
      driver_->observe(*pvm.vmm, vmc.name);
      for (uint64_t i = 0; i < vmc.vcpus; ++i) {
        VcpuParams p;
        p.id = static_cast<unsigned>(i);
        p.who = vm_principal(static_cast<uint32_t>(v));
        p.asid = static_cast<uint16_t>(v + 1);
        p.tlb_sets = static_cast<unsigned>(sc.platform.mmu.tlb.sets);
        p.tlb_ways = static_cast<unsigned>(sc.platform.mmu.tlb.ways);
        p.pwc_entries = static_cast<unsigned>(sc.platform.mmu.pwc.entries);
        p.pwc_ways = static_cast<unsigned>(sc.platform.mmu.pwc.ways);
        p.costs = VcpuCosts{
            Cycles(c.tlb_hit_cycles), Cycles(c.walk_ref_cycles),           Cycles(c.pwc_hit_cycles),
            memory_timing(c),         Cycles(c.vm_exit_round_trip_cycles), Cycles(c.fence_cycles)};
        p.quantum = Cycles(sc.platform.quantum_cycles);
        p.frequency_hz = sc.platform.cpu_frequency_hz;
        std::unique_ptr<GuestProgram> program;
        for (size_t w = 0; w < sc.workloads.size(); ++w) {
          const auto& wl = sc.workloads[w];
          if (wl.vm != vmc.name || wl.vcpu != i) continue;
          Rng rng(sc.seed, "platform." + vmc.name + ".cpu" + std::to_string(i) + ".workload");
          auto made = make_workload(config::workload_spec(wl), rng);
          if (!made.ok()) throw config::ConfigError("/workloads/" + std::to_string(w), made.error);
          progress.add_total(made.program->expected_ops());
          program = std::move(made.program);
        }
        const std::string actor = vmc.name + ".cpu" + std::to_string(i);
        if (!program) {
          program = driver_->program_for(actor, *pvm.guest);
          if (program) progress.add_total(program->expected_ops());
        }
        if (const uint64_t boot = pvm.guest->boot_cycles()) {
          program = std::make_unique<guest::AfterBootProgram>(boot, std::move(program));
          progress.add_total(1);
        }
        const std::string cpu_name = vmc.name + "_cpu" + std::to_string(i);
        kvm::Vcpu& kv = pvm.vmm->vcpu(static_cast<unsigned>(i));
        exits_.push_back(std::make_unique<CheckedExits>(kv, *checker_, *driver_, actor, stop));
        auto cpu =
            std::make_unique<VcpuModule>(cpu_name.c_str(), p, kv.vm().stage2(), *exits_.back(),
                                         std::move(program), trace, &progress);
        // The backend's roots, keys and checks for guest accesses (a TD's: the S-EPT and HKID).
        cpu->set_guest_access_policy(kv.vm().backend().guest_access_policy(kv.vm()));
        kv.attach(&cpu->tlb(), &cpu->pwc());
        cpu->set_sync_handler(driver_->sync_for(actor));
        cpu->socket.bind(router_.target_socket);
        time_hook_.add(cpu.get());
        vm->vcpus.push_back(std::move(cpu));
      }
    }
    kvm.set_time_hook(&time_hook_);
  }

  ScenarioDriver& driver() { return *driver_; }
  invariants::Checker& checker() { return *checker_; }

  // The timed parts go first: closing the VMMs' fds zaps mappings and revokes DMI grants, which
  // reach the vCPUs' TLBs and sockets, so those must still exist; then the vCPUs, then the rest
  // of the platform (scenario/platform_core.h).
  ~Platform() override {
    core_.kvm().set_time_hook(nullptr);  // teardown runs outside simulated time
    driver_.reset();
    core_.close_vmms();
    exits_.clear();
    checker_.reset();
    vms_.clear();
    core_.shutdown();
  }

  void register_stats(StatsRegistry& reg) {
    reg.add("platform.memory", [this](StatVisitor& v) { memory_.describe_stats(v); });
    reg.add("platform.router", [this](StatVisitor& v) { router_.describe_stats(v); });
    core_.register_platform_stats(reg);
    reg.add("invariants", [this](StatVisitor& v) { checker_->describe_stats(v); });
    for (size_t n = 0; n < vms_.size(); ++n) {
      core_.register_vm_stats(reg, n);
      const std::string base = "platform." + vms_[n]->name;
      vmm::Vmm* vmmp = core_.vms()[n].vmm.get();
      for (size_t i = 0; i < vms_[n]->vcpus.size(); ++i) {
        VcpuModule* cpu = vms_[n]->vcpus[i].get();
        reg.add(base + ".cpu" + std::to_string(i),
                [cpu](StatVisitor& v) { cpu->describe_stats(v); });
        kvm::Vcpu* kv = &vmmp->vcpu(static_cast<unsigned>(i));
        reg.add(base + ".cpu" + std::to_string(i) + ".kvm", [vmmp, kv](StatVisitor& v) {
          if (vmmp->vm_alive()) kv->describe_stats(v);  // the VM's vCPUs go with it
        });
      }
    }
  }

  // The lines the VMs' guest sides add to the summary (e.g. a launch measurement).
  std::vector<std::string> summary_lines() const {
    std::vector<std::string> out;
    for (const auto& vm : core_.vms())
      if (std::string l = vm.guest->summary_line(); !l.empty()) out.push_back(std::move(l));
    return out;
  }

  const std::vector<std::unique_ptr<VmInstance>>& vms() const { return vms_; }
  PhysMem& mem() { return core_.mem(); }
  const kvm::Kvm& kvm() const { return core_.kvm(); }

 private:
  Clock clock_;
  ShellTimeHook time_hook_{clock_};
  scenario::PlatformCore core_;
  MemoryModule memory_;
  RouterModule router_;
  std::vector<std::unique_ptr<VmInstance>> vms_;
  std::unique_ptr<invariants::Checker> checker_;
  std::unique_ptr<ScenarioDriver> driver_;
  std::vector<std::unique_ptr<CheckedExits>> exits_;
};

std::string with_commas(uint64_t v) {
  std::string s = std::to_string(v);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

}  // namespace

RunReport run_scenario(const config::LoadedScenario& scenario, const RunOptions& opts) {
  const ScenarioConfig& sc = scenario.config;
  sc_core::sc_report_handler::set_actions("/IEEE_Std_1666/deprecated", sc_core::SC_DO_NOTHING);
  // sc_stop() (an invariant violation stopping the run) is reported by cvmsim itself.
  sc_core::sc_report_handler::set_actions(sc_core::SC_INFO, sc_core::SC_DO_NOTHING);
  sc_core::sc_set_time_resolution(1, sc_core::SC_PS);

  NullTrace null_trace;
  std::unique_ptr<FileTrace> file_trace;
  if (sc.run.trace && !opts.trace_path.empty())
    file_trace = std::make_unique<FileTrace>(opts.trace_path);
  TraceSink& inner_trace = file_trace ? static_cast<TraceSink&>(*file_trace) : null_trace;
  // The last run.invariants.trace_events events go with each violation report.
  const bool checking = sc.run.invariants.mode != invariants::CheckMode::kOff;
  RingTrace trace(inner_trace, checking ? static_cast<size_t>(sc.run.invariants.trace_events) : 0);

  ProgressLine progress(opts.progress);
  sm::Coverage own_coverage;  // the run's, if the caller keeps none (outlives the platform)
  Platform platform("platform", sc, trace, progress, opts.coverage ? *opts.coverage : own_coverage);
  if (sc.run.invariants.trace_events)
    platform.checker().set_recent_trace([&trace] { return trace.recent(); });
  StatsRegistry reg;
  platform.register_stats(reg);

  // A snapshot of the state (cvmsim graph): after the named step, else at the end.
  bool snapped = false;
  if (opts.snapshot && opts.snapshot_step) {
    platform.driver().set_step_hook([&](size_t i) {
      if (snapped || i != *opts.snapshot_step) return;
      snapped = true;
      opts.snapshot(platform.kvm(), platform.mem(), "after step " + std::to_string(i));
    });
  }

  const auto t0 = std::chrono::steady_clock::now();
  if (sc.run.max_time_ns)
    sc_core::sc_start(sc_core::sc_time(static_cast<double>(sc.run.max_time_ns), sc_core::SC_NS));
  else
    sc_core::sc_start();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  progress.finish();
  if (opts.snapshot && !snapped) {
    snapped = true;
    opts.snapshot(platform.kvm(), platform.mem(),
                  opts.snapshot_step ? "at the end of the run (step " +
                                           std::to_string(*opts.snapshot_step) + " never completed)"
                                     : std::string("at the end of the run"));
  }

  RunReport r;
  // The run ends when the last vCPU finished; threads have no further events.
  r.sim_time_ps = sc_core::sc_time_stamp().value();
  uint64_t loads = 0, stores = 0, hits = 0, misses = 0, walks = 0, refs = 0, faults = 0,
           hypercalls = 0;
  unsigned vcpus = 0, finished = 0;
  for (const auto& vm : platform.vms()) {
    for (const auto& cpu : vm->vcpus) {
      ++vcpus;
      if (cpu->finished()) ++finished;
      const std::string actor = vm->name + ".cpu" + std::to_string(&cpu - &vm->vcpus.front());
      if (!cpu->stop_reason().empty() && !platform.driver().has_program(actor))
        r.problems.push_back(cpu->stop_reason());
      if (cpu->verify_failures() && !platform.driver().has_program(actor))
        r.problems.push_back(
            std::string(cpu->name()) + ": " + std::to_string(cpu->verify_failures()) +
            " load(s) did not read back the pattern; first: " + cpu->first_verify_failure());
    }
  }
  // Invariant violations nobody expected (expected ones are step expectations).
  for (const auto& v : platform.driver().unexpected_violations()) {
    std::string p = "invariant " + v.invariant + " violated" +
                    (v.where.empty() ? "" : " at " + v.where) + ": " + v.message;
    if (!v.chain.empty()) {
      p += "\n  chain (" + std::to_string(v.chain.size()) + " events, oldest first):";
      for (const auto& e : v.chain) p += "\n    " + e;
    }
    if (!v.recent_trace.empty()) {
      p += "\n  last " + std::to_string(v.recent_trace.size()) + " trace events:";
      for (const auto& e : v.recent_trace) p += "\n    " + e;
    }
    r.problems.push_back(p);
  }
  r.violations_report = platform.checker().report();
  // Scenario expectations.
  const auto& log = platform.driver().log();
  r.expectations = log.results().size();
  for (const auto& e : log.results())
    if (!e.met) r.expectation_failures.push_back(scenario::ExpectationLog::describe(e));
  for (const auto& u : platform.driver().unfinished()) r.expectation_failures.push_back(u);
  for (const auto& f : r.expectation_failures) r.problems.push_back("expectation not met: " + f);
  // Totals for the summary come from the same statistics the files get.
  for (const auto& e : reg.snapshot()) {
    if (!std::holds_alternative<uint64_t>(e.value)) continue;
    const uint64_t v = std::get<uint64_t>(e.value);
    auto ends = [&](const char* s) {
      const std::string suf(s);
      return e.name.size() > suf.size() &&
             e.name.compare(e.name.size() - suf.size(), suf.size(), suf) == 0;
    };
    if (ends(".loads"))
      loads += v;
    else if (ends(".stores"))
      stores += v;
    else if (ends(".tlb.hits"))
      hits += v;
    else if (ends(".tlb.misses"))
      misses += v;
    else if (ends(".walker.walks"))
      walks += v;
    else if (ends(".walker.mem_refs"))
      refs += v;
    else if (ends(".exits_stage2"))
      faults += v;
    else if (ends(".exits_hypercall"))
      hypercalls += v;
  }
  const uint64_t accesses = loads + stores;
  reg.add_host("wall_seconds", wall, "s",
               "host wall-clock time of the simulation (elaboration excluded)");
  reg.add_host("accesses_per_second", wall > 0 ? double(accesses) / wall : 0.0, "accesses/s",
               "simulated guest loads and stores per host second");
  reg.add_host("host_memory_bytes", double(platform.mem().host_bytes()), "bytes",
               "host memory held by the physical-memory model at the end of the run");

  r.stats_json = reg.to_json({{"scenario", sc.name},
                              {"seed", std::to_string(sc.seed)},
                              {"cvmsim_version", kVersion},
                              {"sim_time_ps", std::to_string(r.sim_time_ps)}});
  r.stats_csv = reg.to_csv();

  char buf[2048];
  const double hit_rate = hits + misses ? 100.0 * double(hits) / double(hits + misses) : 0.0;
  std::snprintf(buf, sizeof buf,
                "cvmsim %s: scenario \"%s\" (seed %" PRIu64
                ")\n"
                "  simulated time     %.3f us\n"
                "  vCPUs              %u (%u ran to completion)\n"
                "  guest accesses     %s (%s loads, %s stores)\n"
                "  TLB                %.2f%% hits, %s misses\n"
                "  stage-2 walks      %s, %.2f memory references per walk\n"
                "  VM exits           %s stage-2 faults, %s hypercalls\n"
                "  host               %.3f s wall, %.2f M accesses/s\n",
                kVersion, sc.name.c_str(), sc.seed, double(r.sim_time_ps) / 1e6, vcpus, finished,
                with_commas(accesses).c_str(), with_commas(loads).c_str(),
                with_commas(stores).c_str(), hit_rate, with_commas(misses).c_str(),
                with_commas(walks).c_str(), walks ? double(refs) / double(walks) : 0.0,
                with_commas(faults).c_str(), with_commas(hypercalls).c_str(), wall,
                wall > 0 ? double(accesses) / wall / 1e6 : 0.0);
  r.summary = buf;
  if (r.expectations)
    r.summary += "  expectations       " +
                 std::to_string(r.expectations - platform.driver().log().failures()) + " of " +
                 std::to_string(r.expectations) + " met\n";
  for (const auto& line : platform.summary_lines()) r.summary += "  " + line + "\n";
  if (!r.problems.empty())
    r.summary += "  problems           " + std::to_string(r.problems.size()) + " (see stderr)\n";
  return r;
}

}  // namespace cvmsim
