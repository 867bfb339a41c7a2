// hw/base/state_machine: tables built from rules, recording, undeclared transitions, DOT.
#include <catch2/catch.hpp>

#include "hw/base/state_machine.h"

using namespace cvmsim;

namespace {

// A door: OPEN/CLOSED/LOCKED; open, close, lock, unlock; OK or JAMMED.
const sm::Machine& door() {
  static sm::Machine m("test.door", "a door", "none", {"OPEN", "CLOSED", "LOCKED"},
                       {"open", "close", "lock", "unlock"}, {"OK", "JAMMED"},
                       {
                           {{"CLOSED"}, "open", "OK", "OPEN", "door spec 1"},
                           {{"OPEN"}, "close", "OK", "CLOSED", "door spec 2"},
                           {{"CLOSED"}, "lock", "OK", "LOCKED", "door spec 3"},
                           {{"LOCKED"}, "unlock", "OK", "CLOSED", "door spec 4"},
                           {{"*"}, "open", "JAMMED", "=", "door spec 5"},
                       });
  return m;
}

uint64_t count(const sm::Counts& c, const char* from, const char* op, const char* outcome) {
  const sm::Machine& m = c.machine();
  const int t = m.find(m.state_index(from), m.op_index(op), m.outcome_index(outcome));
  REQUIRE(t != sm::Machine::kNone);
  return c.counts()[t];
}

}  // namespace

TEST_CASE("state machine: rules become an indexed, deterministic table") {
  const sm::Machine& m = door();
  CHECK(m.errors().empty());
  // 4 single rules + "*" expanded over 3 states.
  REQUIRE(m.transitions().size() == 7);
  const int t = m.find(m.state_index("CLOSED"), m.op_index("lock"), m.outcome_index("OK"));
  REQUIRE(t != sm::Machine::kNone);
  CHECK(m.states()[m.transitions()[t].to] == "LOCKED");
  CHECK(m.transitions()[t].cite == "door spec 3");
  // "=": the state stays.
  const int j = m.find(m.state_index("LOCKED"), m.op_index("open"), m.outcome_index("JAMMED"));
  REQUIRE(j != sm::Machine::kNone);
  CHECK(m.transitions()[j].to == m.state_index("LOCKED"));
  // Not declared.
  CHECK(m.find(m.state_index("OPEN"), m.op_index("lock"), m.outcome_index("OK")) ==
        sm::Machine::kNone);
  CHECK(m.find(99, 0, 0) == sm::Machine::kNone);
  CHECK(m.describe(m.transitions()[t]) == "CLOSED --lock/OK--> LOCKED");
}

TEST_CASE("state machine: malformed rules are reported, not silently dropped") {
  sm::Machine m("test.bad", "bad", "none", {"A", "B"}, {"go"}, {"OK"},
                {
                    {{"A"}, "go", "OK", "B", "x"},
                    {{"A"}, "go", "OK", "A", "x"},      // A --go/OK--> two next states
                    {{"C"}, "go", "OK", "B", "x"},      // unknown state
                    {{"A"}, "stop", "OK", "B", "x"},    // unknown operation
                    {{"A"}, "go", "FAILED", "B", "x"},  // unknown outcome
                    {{"B"}, "go", "OK", "Z", "x"},      // unknown next state
                    {{"B"}, "go", "OK", "A", ""},       // no citation
                });
  REQUIRE(m.errors().size() == 6);
  auto has = [&](const char* what) {
    for (const auto& e : m.errors())
      if (e.find(what) != std::string::npos) return true;
    return false;
  };
  CHECK(has("not deterministic"));
  CHECK(has("unknown state \"C\""));
  CHECK(has("unknown operation \"stop\""));
  CHECK(has("unknown outcome \"FAILED\""));
  CHECK(has("unknown next state \"Z\""));
  CHECK(has("no spec citation"));
}

TEST_CASE("state machine: recording counts declared transitions and flags undeclared ones") {
  const sm::Machine& d = door();
  sm::Counts m(d);
  const unsigned open = d.state_index("OPEN"), closed = d.state_index("CLOSED"),
                 locked = d.state_index("LOCKED");
  const unsigned op_close = d.op_index("close"), op_lock = d.op_index("lock"),
                 ok = d.outcome_index("OK");
  m.record(open, op_close, ok, closed);
  m.record(open, op_close, ok, closed);
  m.record(closed, op_lock, ok, locked);
  CHECK(count(m, "OPEN", "close", "OK") == 2);
  CHECK(count(m, "CLOSED", "lock", "OK") == 1);
  CHECK(count(m, "LOCKED", "unlock", "OK") == 0);
  CHECK(m.exercised() == 2);
  CHECK(m.undeclared().empty());
  // Declared (state, op, outcome) but another next state: the model disagrees with the table.
  m.record(closed, op_lock, ok, open);
  // Not declared at all.
  m.record(open, op_lock, ok, locked);
  m.record(open, op_lock, ok, locked);
  REQUIRE(m.undeclared().size() == 2);
  CHECK(m.undeclared().at("CLOSED --lock/OK--> OPEN") == 1);
  CHECK(m.undeclared().at("OPEN --lock/OK--> LOCKED") == 2);
  CHECK(count(m, "CLOSED", "lock", "OK") == 1);  // the mismatch did not count as the declared one
  m.record_undeclared("OPEN", "kick", "BROKEN", "?");
  CHECK(m.undeclared().at("OPEN --kick/BROKEN--> ?") == 1);
  m.reset();
  CHECK(m.exercised() == 0);
  CHECK(m.undeclared().empty());
}

TEST_CASE("state machine: each run's coverage has its own counts of the shared machine") {
  // The machine is one process-wide declaration; two runs (two platforms in one process) record
  // into two Coverage objects, and neither sees the other's transitions.
  const sm::Machine& d = door();
  const unsigned open = d.state_index("OPEN"), closed = d.state_index("CLOSED"),
                 locked = d.state_index("LOCKED");
  sm::Coverage run1, run2;
  sm::Counts& c1 = run1.of(d);
  CHECK(&run1.of(d) == &c1);  // made once, then the same counts
  c1.record(open, d.op_index("close"), 0, closed);
  c1.record(closed, d.op_index("lock"), 0, locked);
  c1.record(open, d.op_index("lock"), 0, locked);  // undeclared
  CHECK(c1.exercised() == 2);
  CHECK(c1.undeclared().size() == 1);
  const sm::Coverage& r2 = run2;
  CHECK(r2.of(d).exercised() == 0);  // nothing recorded there: all zero
  CHECK(r2.of(d).undeclared().empty());
  run2.of(d).record(locked, d.op_index("unlock"), 0, closed);
  CHECK(count(run2.of(d), "LOCKED", "unlock", "OK") == 1);
  CHECK(count(c1, "LOCKED", "unlock", "OK") == 0);
  CHECK(count(c1, "OPEN", "close", "OK") == 1);
  CHECK(count(run2.of(d), "OPEN", "close", "OK") == 0);
  run1.reset();
  CHECK(c1.exercised() == 0);
  CHECK(c1.undeclared().empty());
  CHECK(count(run2.of(d), "LOCKED", "unlock", "OK") == 1);
}

TEST_CASE("state machine: DOT drawing, coloured by coverage") {
  const sm::Machine& m = door();
  sm::Counts c(m);
  c.record(m.state_index("CLOSED"), m.op_index("lock"), 0, m.state_index("LOCKED"));
  const std::string plain = sm::to_dot(m, nullptr, false);
  CHECK(plain.find("digraph \"test.door\"") != std::string::npos);
  CHECK(plain.find("\"CLOSED\" -> \"LOCKED\" [label=\"lock\"]") != std::string::npos);
  CHECK(plain.find("JAMMED") == std::string::npos);  // refusal self-loops hidden
  CHECK(plain.find("darkgreen") == std::string::npos);
  const std::string all = sm::to_dot(m, nullptr, true);
  CHECK(all.find("\"OPEN\" -> \"OPEN\" [label=\"open: JAMMED\", style=dotted]") !=
        std::string::npos);
  const std::string col = sm::to_dot(m, &c, false);
  CHECK(col.find("\"CLOSED\" -> \"LOCKED\" [label=\"lock [1]\", color=\"darkgreen\"") !=
        std::string::npos);
  CHECK(col.find("\"OPEN\" -> \"CLOSED\" [label=\"close\", color=\"grey60\"") != std::string::npos);
}
