#include "sim/platform/scenario_driver.h"

#include <sysc/kernel/sc_spawn.h>

#include <set>
#include <sstream>

namespace cvmsim {

using config::StepOp;

void Barriers::declare(uint64_t id, std::string name, std::set<std::string> actors) {
  auto b = std::make_unique<B>();
  b->name = std::move(name);
  b->actors = std::move(actors);
  b_[id] = std::move(b);
}

void Barriers::arrive(uint64_t id, const std::string& actor) {
  B& b = *b_.at(id);
  b.arrived.insert(actor);
  if (b.arrived.size() == b.actors.size()) {
    b.arrived.clear();
    ++b.round;
    b.released.notify(sc_core::SC_ZERO_TIME);
    return;
  }
  const uint64_t round = b.round;
  while (b.round == round) sc_core::wait(b.released);
}

std::vector<std::string> Barriers::stuck() const {
  std::vector<std::string> out;
  for (const auto& [id, b] : b_) {
    if (b->arrived.empty()) continue;
    std::string waiting, missing;
    for (const auto& a : b->arrived) waiting += (waiting.empty() ? "" : ", ") + a;
    for (const auto& a : b->actors)
      if (!b->arrived.count(a)) missing += (missing.empty() ? "" : ", ") + a;
    out.push_back("barrier \"" + b->name + "\" never released: " + waiting + " waited for " +
                  missing);
  }
  return out;
}

ScenarioDriver::ScenarioDriver(sc_core::sc_module_name name, const config::ScenarioConfig& sc,
                               kvm::Kvm& kvm, std::vector<vmm::Vmm*> vmms, const Clock& clock,
                               invariants::Checker& checker, bool stop_on_violation)
    : sc_module(name),
      sc_(sc),
      clock_(clock),
      exec_(kvm, sc, vmms, log_),
      checker_(checker),
      stop_on_violation_(stop_on_violation) {
  exec_.on_plaintext_read = [this](const kvm::PlaintextRead& r) {
    checker_.note_plaintext_read(r);
  };
  std::map<std::string, std::set<std::string>> barrier_actors;
  for (size_t i = 0; i < sc.steps.size(); ++i) {
    by_actor_[sc.steps[i].actor].push_back(i);
    if (sc.steps[i].op == StepOp::kBarrier)
      barrier_actors[sc.steps[i].barrier].insert(sc.steps[i].actor);
  }
  uint64_t id = 1;
  for (auto& [n, actors] : barrier_actors) {
    barrier_ids_[n] = id;
    barriers_.declare(id, n, actors);
    ++id;
  }
  for (auto& [actor, steps] : by_actor_) {
    if (actor != "vmm" && actor != "host") continue;
    done_[actor] = 0;
    sc_core::sc_spawn_options o;
    sc_core::sc_spawn([this, a = actor, st = steps] { run_actor(a, st); },
                      ("actor_" + actor).c_str(), &o);
  }
}

void ScenarioDriver::run_actor(std::string actor, std::vector<size_t> steps) {
  for (size_t i : steps) {
    const config::StepConfig& s = sc_.steps[i];
    if (s.op == StepOp::kWait) {
      sc_core::wait(sc_core::sc_time(static_cast<double>(s.time_ns), sc_core::SC_NS));
      log_.met(s, i);
    } else if (s.op == StepOp::kBarrier) {
      barriers_.arrive(barrier_ids_.at(s.barrier), actor);
      log_.met(s, i);
    } else {
      const Cycles c = exec_.execute(i);
      // A vmm/host step is an operation boundary: check, and match what it expects.
      // expect.violation names one invariant or several joined by |: each must be caught.
      std::set<std::string> want, caught;
      if (s.expect.has("violation")) {
        std::stringstream in(s.expect.violation);
        for (std::string id; std::getline(in, id, '|');)
          if (!id.empty()) want.insert(id);
      }
      for (const auto& v : checker_.check(step_name(i))) {
        if (want.count(v.invariant)) {
          caught.insert(v.invariant);
          continue;
        }
        unexpected_.push_back(v);
        if (stop_on_violation_) sc_core::sc_stop();
      }
      if (!want.empty()) {
        std::string missed;
        for (const auto& id : want)
          if (!caught.count(id)) missed += (missed.empty() ? "" : ", ") + id;
        if (missed.empty())
          log_.met(s, i);
        else if (checker_.mode() == invariants::CheckMode::kOff)
          log_.failed(s, i,
                      "expects " + s.expect.violation +
                          " but invariant checking is off (run.invariants.mode)");
        else
          log_.failed(s, i, "the checker did not catch a violation of " + missed);
      }
      if (c.count()) sc_core::wait(sc_core::sc_time::from_value(clock_.to_ps(c)));
    }
    ++done_[actor];
    if (step_hook_) step_hook_(i);
  }
}

std::unique_ptr<GuestProgram> ScenarioDriver::program_for(const std::string& actor,
                                                          const backend::GuestSide& guest) {
  auto it = by_actor_.find(actor);
  if (it == by_actor_.end()) return nullptr;
  auto p = std::make_unique<scenario::StepProgram>(sc_, it->second, guest, clock_.frequency_hz(),
                                                   log_, barrier_ids_);
  p->on_step_done = [this](size_t i) {
    if (step_hook_) step_hook_(i);
  };
  programs_[actor] = p.get();
  return p;
}

SyncHandler* ScenarioDriver::sync_for(const std::string& actor) {
  syncs_.push_back(std::make_unique<ActorSync>(barriers_, actor));
  return syncs_.back().get();
}

void ScenarioDriver::observe(vmm::Vmm& v, const std::string& vm_name) {
  v.exit_observer = [this, vm_name](unsigned vcpu, int err, const kvm::kvm_run& run) {
    auto it = programs_.find(vm_name + ".cpu" + std::to_string(vcpu));
    if (it != programs_.end()) it->second->note_exit(err, run);
  };
}

std::vector<std::string> ScenarioDriver::unfinished() const {
  std::vector<std::string> out = barriers_.stuck();
  for (const auto& [actor, n] : done_) {
    const auto& steps = by_actor_.at(actor);
    if (n < steps.size())
      out.push_back(actor + " did not finish: stopped before step " + std::to_string(steps[n]));
  }
  return out;
}

bool ScenarioDriver::note_violation(const std::string& actor, const kvm::Violation& v) {
  auto it = programs_.find(actor);
  if (it != programs_.end() && it->second->note_violation(v)) return true;
  unexpected_.push_back(v);
  return false;
}

std::string ScenarioDriver::step_name(size_t i) const {
  const config::StepConfig& s = sc_.steps.at(i);
  return "step " + std::to_string(i) + " (" + s.actor + (s.label.empty() ? "" : ": " + s.label) +
         ")";
}

std::string ScenarioDriver::where(const std::string& actor) const {
  auto it = programs_.find(actor);
  if (it != programs_.end())
    if (auto step = it->second->current_step()) return step_name(*step);
  return actor + " (KVM exit)";
}

bool ScenarioDriver::stop_expected(const std::string& actor) const {
  auto it = programs_.find(actor);
  return it != programs_.end() && it->second->stop_expected();
}

}  // namespace cvmsim
