// State machines as data, and transition coverage (docs/coverage.md).
//
// A model's state machine (the TDX S-EPT entry states, the TD lifecycle, KVM's view of a GFN) is
// declared as a table: its states, its operations, the outcomes an operation can have, and the
// allowed transitions (state, operation, outcome) -> next state, each with the spec section it
// comes from. The code paths that really perform a transition record (from, op, outcome, to)
// into their run's counts of the machine (Counts): one array increment per transition, indexed
// by the machine's dense (from, op, outcome) table. A recorded transition that the table does
// not declare (or declares with another next state) is counted as "undeclared": a mismatch
// between the model and its declared machine, reported by every run and by `cvmsim coverage`.
//
// Pure C++ (hw/base: the lowest layer, so every backend can use it). A machine is declared once
// per process (a function-local static in the model that owns it) and never changes; the counts
// belong to a run (Coverage), so two platforms in one process (unit tests, cvmsim explore) do
// not see each other's transitions.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace cvmsim::sm {

// One declared row of a machine: `from` lists state names ("*" = every state), `to` a state
// name or "=" (the state does not change: a refusal, or an operation that leaves it as it is).
struct Rule {
  std::vector<std::string_view> from;
  std::string_view op;
  std::string_view outcome;
  std::string_view to;
  std::string_view cite;  // "tdx-snp.md A2.3"
};

struct Transition {
  uint16_t from = 0, op = 0, outcome = 0, to = 0;
  std::string_view cite;
};

class Machine {
 public:
  // `backends`: the VM types whose runs exercise this machine ("tdx", "default,sw_protected,tdx").
  Machine(std::string name, std::string title, std::string backends,
          std::vector<std::string> states, std::vector<std::string> ops,
          std::vector<std::string> outcomes, std::initializer_list<Rule> rules);
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  const std::string& name() const { return name_; }
  const std::string& title() const { return title_; }
  const std::string& backends() const { return backends_; }
  const std::vector<std::string>& states() const { return states_; }
  const std::vector<std::string>& ops() const { return ops_; }
  const std::vector<std::string>& outcomes() const { return outcomes_; }
  const std::vector<Transition>& transitions() const { return transitions_; }
  // Problems found while building the table from the rules: unknown names, two rules giving
  // one (state, op, outcome) different next states. Empty for a well-formed machine.
  const std::vector<std::string>& errors() const { return errors_; }

  static constexpr int kNone = -1;
  int state_index(std::string_view s) const { return index_of(states_, s); }
  int op_index(std::string_view s) const { return index_of(ops_, s); }
  int outcome_index(std::string_view s) const { return index_of(outcomes_, s); }
  // The declared transition for (from, op, outcome), or kNone.
  int find(unsigned from, unsigned op, unsigned outcome) const {
    if (from >= states_.size() || op >= ops_.size() || outcome >= outcomes_.size()) return kNone;
    return table_[(from * ops_.size() + op) * outcomes_.size() + outcome];
  }
  std::string describe(const Transition& t) const;  // "FREE --PAGE.AUG/SUCCESS--> PENDING"
  // Names by index; "?" for an index the machine does not have.
  std::string_view state_name(unsigned i) const { return name_or(states_, i); }
  std::string_view op_name(unsigned i) const { return name_or(ops_, i); }
  std::string_view outcome_name(unsigned i) const { return name_or(outcomes_, i); }

 private:
  static int index_of(const std::vector<std::string>& v, std::string_view s);
  static std::string_view name_or(const std::vector<std::string>& v, unsigned i) {
    return i < v.size() ? std::string_view(v[i]) : std::string_view("?");
  }

  std::string name_, title_, backends_;
  std::vector<std::string> states_, ops_, outcomes_;
  std::vector<Transition> transitions_;
  std::vector<int> table_;
  std::vector<std::string> errors_;
};

// One run's transition counts of one machine.
class Counts {
 public:
  explicit Counts(const Machine& m) : m_(&m), counts_(m.transitions().size(), 0) {}

  const Machine& machine() const { return *m_; }
  // The hot path: one table lookup and one increment.
  void record(unsigned from, unsigned op, unsigned outcome, unsigned to) {
    const int t = m_->find(from, op, outcome);
    if (t != Machine::kNone && m_->transitions()[t].to == to) {
      ++counts_[t];
      return;
    }
    record_undeclared(m_->state_name(from), m_->op_name(op), m_->outcome_name(outcome),
                      m_->state_name(to));
  }
  // A transition with a name the machine does not know (an outcome the table never lists).
  void record_undeclared(std::string_view from, std::string_view op, std::string_view outcome,
                         std::string_view to);
  // Per declared transition (Machine::transitions() order), times seen.
  const std::vector<uint64_t>& counts() const { return counts_; }
  // "FROM --OP/OUTCOME--> TO" -> times seen.
  const std::map<std::string, uint64_t>& undeclared() const { return undeclared_; }
  unsigned exercised() const;
  void reset();
  // Adds counts read back from a coverage file (cvmsim coverage merges runs).
  void add_count(unsigned transition, uint64_t n) { counts_.at(transition) += n; }
  void add_undeclared(const std::string& what, uint64_t n) { undeclared_[what] += n; }

 private:
  const Machine* m_;
  std::vector<uint64_t> counts_;
  std::map<std::string, uint64_t> undeclared_;
};

// The transition coverage of one run: its counts of every machine, made (all zero) on first use.
// Whoever owns the run owns it and hands it to the models that record (kvm::Kvm, the TDX module;
// each has one of its own until told otherwise); cvmsim run and check keep it past the
// platform's teardown, whose transitions count too.
class Coverage {
 public:
  Coverage() = default;
  Coverage(const Coverage&) = delete;
  Coverage& operator=(const Coverage&) = delete;

  // The counts of `m` (a reference that stays valid as long as the Coverage does). The const
  // overload makes them too: a machine nothing recorded into reads as all zero.
  Counts& of(const Machine& m);
  const Counts& of(const Machine& m) const;
  void reset();

 private:
  mutable std::map<const Machine*, Counts> counts_;
};

// Graphviz DOT of a machine: states as nodes, one edge per (from, to, op) with its outcomes. With
// `coverage` (the counts of `m`), exercised edges are drawn solid green with their counts,
// never-exercised ones dashed grey. States no transition names are left out. Self-loop refusals
// are drawn only with `refusals` (they make the drawing unreadable otherwise).
std::string to_dot(const Machine& m, const Counts* coverage, bool refusals);

}  // namespace cvmsim::sm
