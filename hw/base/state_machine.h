// State machines as data, and transition coverage (docs/coverage.md).
//
// A model's state machine (the TDX S-EPT entry states, the TD lifecycle, KVM's view of a GFN) is
// declared as a table: its states, its operations, the outcomes an operation can have, and the
// allowed transitions (state, operation, outcome) -> next state, each with the spec section it
// comes from. The code paths that really perform a transition record (from, op, outcome, to)
// into the machine's coverage counters: one array increment per transition, indexed by a dense
// (from, op, outcome) table. A recorded transition that the table does not declare (or declares
// with another next state) is counted as "undeclared": a mismatch between the model and its
// declared machine, reported by every run and by `cvmsim coverage`.
//
// Pure C++ (hw/base: the lowest layer, so every backend can use it). A machine is declared once
// per process (a function-local static in the model that owns it); a run is one process, so its
// counters are that run's coverage.
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

  // ---- Coverage ----
  // The hot path: one table lookup and one increment.
  void record(unsigned from, unsigned op, unsigned outcome, unsigned to) {
    const int t = find(from, op, outcome);
    if (t != kNone && transitions_[t].to == to) {
      ++counts_[t];
      return;
    }
    record_undeclared(name_or(states_, from), name_or(ops_, op), name_or(outcomes_, outcome),
                      name_or(states_, to));
  }
  // A transition with a name the machine does not know (an outcome the table never lists).
  void record_undeclared(std::string_view from, std::string_view op, std::string_view outcome,
                         std::string_view to);
  const std::vector<uint64_t>& counts() const { return counts_; }
  // "FROM --OP/OUTCOME--> TO" -> times seen.
  const std::map<std::string, uint64_t>& undeclared() const { return undeclared_; }
  unsigned exercised() const;
  void reset_counts();
  // Adds counts read back from a coverage file (cvmsim coverage merges runs).
  void add_count(unsigned transition, uint64_t n) { counts_.at(transition) += n; }
  void add_undeclared(const std::string& what, uint64_t n) { undeclared_[what] += n; }

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
  std::vector<uint64_t> counts_;
  std::map<std::string, uint64_t> undeclared_;
};

// Graphviz DOT of a machine: states as nodes, one edge per (from, to, op) with its outcomes. With
// `coloured`, exercised edges are drawn solid green with their counts, never-exercised ones dashed
// grey. States no transition names are left out. Self-loop refusals are drawn only with
// `refusals` (they make the drawing unreadable otherwise).
std::string to_dot(const Machine& m, bool coloured, bool refusals);

}  // namespace cvmsim::sm
