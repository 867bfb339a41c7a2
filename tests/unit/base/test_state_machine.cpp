// hw/base/state_machine: tables built from rules, recording, undeclared transitions, DOT.
#include <catch2/catch.hpp>

#include "hw/base/state_machine.h"

using namespace cvmsim;

namespace {

// A door: OPEN/CLOSED/LOCKED; open, close, lock, unlock; OK or JAMMED.
sm::Machine& door() {
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

uint64_t count(const sm::Machine& m, const char* from, const char* op, const char* outcome) {
  const int t = m.find(m.state_index(from), m.op_index(op), m.outcome_index(outcome));
  REQUIRE(t != sm::Machine::kNone);
  return m.counts()[t];
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
  sm::Machine& m = door();
  m.reset_counts();
  const unsigned open = m.state_index("OPEN"), closed = m.state_index("CLOSED"),
                 locked = m.state_index("LOCKED");
  const unsigned op_close = m.op_index("close"), op_lock = m.op_index("lock"),
                 ok = m.outcome_index("OK");
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
  m.reset_counts();
  CHECK(m.exercised() == 0);
  CHECK(m.undeclared().empty());
}

TEST_CASE("state machine: DOT drawing, coloured by coverage") {
  sm::Machine& m = door();
  m.reset_counts();
  m.record(m.state_index("CLOSED"), m.op_index("lock"), 0, m.state_index("LOCKED"));
  const std::string plain = sm::to_dot(m, false, false);
  CHECK(plain.find("digraph \"test.door\"") != std::string::npos);
  CHECK(plain.find("\"CLOSED\" -> \"LOCKED\" [label=\"lock\"]") != std::string::npos);
  CHECK(plain.find("JAMMED") == std::string::npos);  // refusal self-loops hidden
  CHECK(plain.find("darkgreen") == std::string::npos);
  const std::string all = sm::to_dot(m, false, true);
  CHECK(all.find("\"OPEN\" -> \"OPEN\" [label=\"open: JAMMED\", style=dotted]") !=
        std::string::npos);
  const std::string col = sm::to_dot(m, true, false);
  CHECK(col.find("\"CLOSED\" -> \"LOCKED\" [label=\"lock [1]\", color=\"darkgreen\"") !=
        std::string::npos);
  CHECK(col.find("\"OPEN\" -> \"CLOSED\" [label=\"close\", color=\"grey60\"") != std::string::npos);
  m.reset_counts();
}
