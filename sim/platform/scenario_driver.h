// The timed side of scenario steps: one SystemC thread per vmm/host actor, barriers shared by
// every actor (vCPUs reach them through OpKind::kSync), and the wiring of vCPU actors' step
// programs to the VMM's exits. The steps themselves run in sim/scenario (pure C++).
//
// Actors run concurrently in simulated time: a vmm step costs what its ioctls charged, a wait
// advances the actor's time, and a barrier holds every actor that names it until all have
// arrived. vCPUs are temporally decoupled (up to one quantum ahead); a barrier synchronises
// them first, so a race written with barriers and waits happens in the order written. Inside a
// step or an exit, a backend call that holds locks (a firmware call in flight, the guest's
// acceptance of a page) lets its cost pass through kvm::TimeHook (run.cpp's ShellTimeHook), so
// other actors can meet it in flight (docs/invariants.md and each backend's model page).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <systemc>
#include <vector>

#include "hw/base/cycles.h"
#include "hw/cpu/vcpu_module.h"
#include "sim/invariants/invariants.h"
#include "sim/scenario/step_runner.h"

namespace cvmsim {

class Barriers {
 public:
  // id -> the actors that name the barrier (each must arrive once per round).
  void declare(uint64_t id, std::string name, std::set<std::string> actors);
  // Blocks the calling SystemC thread until every actor of the barrier has arrived.
  void arrive(uint64_t id, const std::string& actor);
  // Barriers some actor is still waiting at when the simulation ends.
  std::vector<std::string> stuck() const;

 private:
  struct B {
    std::string name;
    std::set<std::string> actors;
    std::set<std::string> arrived;
    uint64_t round = 0;
    sc_core::sc_event released;
  };
  std::map<uint64_t, std::unique_ptr<B>> b_;
};

// A vCPU actor's way to the barriers (hw/cpu calls it on OpKind::kSync).
class ActorSync final : public SyncHandler {
 public:
  ActorSync(Barriers& b, std::string actor) : b_(b), actor_(std::move(actor)) {}
  void sync_point(uint64_t id) override { b_.arrive(id, actor_); }

 private:
  Barriers& b_;
  std::string actor_;
};

class ScenarioDriver : public sc_core::sc_module {
 public:
  ScenarioDriver(sc_core::sc_module_name name, const config::ScenarioConfig& sc, kvm::Kvm& kvm,
                 std::vector<vmm::Vmm*> vmms, const Clock& clock, invariants::Checker& checker,
                 bool stop_on_violation);
  // A violation found after `actor`'s operation: true if its current step expects it (then it
  // counts toward that expectation), false if it is unexpected (kept for the report).
  bool note_violation(const std::string& actor, const kvm::Violation& v);
  const std::vector<kvm::Violation>& unexpected_violations() const { return unexpected_; }

  // The program for a vCPU actor (null if it has no steps). Call before simulation.
  std::unique_ptr<GuestProgram> program_for(const std::string& actor,
                                            const backend::GuestSide& guest);
  // The barrier handle of a vCPU actor (lives as long as the driver).
  SyncHandler* sync_for(const std::string& actor);
  // Routes the VMM's exits to the vCPU actors' programs.
  void observe(vmm::Vmm& v, const std::string& vm_name);
  Barriers& barriers() { return barriers_; }
  const scenario::ExpectationLog& log() const { return log_; }
  size_t step_count() const { return sc_.steps.size(); }
  // Steps that never finished (an actor blocked at a barrier, say).
  std::vector<std::string> unfinished() const;
  // True if the named vCPU's stop was expected by its step.
  bool stop_expected(const std::string& actor) const;
  // True if the vCPU runs steps (its verify failures are step expectations, reported as such).
  bool has_program(const std::string& actor) const { return programs_.count(actor) != 0; }
  // Where a check after one of the actor's KVM exits runs, for violation reports: "step N
  // (actor: label)" while the vCPU executes a scenario step, else "actor (KVM exit)".
  std::string where(const std::string& actor) const;
  // "step N (actor: label)" for scenario step i.
  std::string step_name(size_t i) const;
  // Called with a step's index when it completes: vmm/host steps in their actor's thread after
  // the invariant check, vCPU steps in the vCPU's thread after the step's last operation.
  void set_step_hook(std::function<void(size_t)> f) { step_hook_ = std::move(f); }

 private:
  void run_actor(std::string actor, std::vector<size_t> steps);

  const config::ScenarioConfig& sc_;
  Clock clock_;
  scenario::ExpectationLog log_;
  scenario::StepExecutor exec_;
  Barriers barriers_;
  std::map<std::string, uint64_t> barrier_ids_;
  std::map<std::string, std::vector<size_t>> by_actor_;
  std::map<std::string, scenario::StepProgram*> programs_;
  std::map<std::string, size_t> done_;  // actor -> steps completed (vmm/host)
  std::vector<std::unique_ptr<ActorSync>> syncs_;
  invariants::Checker& checker_;
  bool stop_on_violation_;
  std::vector<kvm::Violation> unexpected_;
  std::function<void(size_t)> step_hook_;
};

}  // namespace cvmsim
