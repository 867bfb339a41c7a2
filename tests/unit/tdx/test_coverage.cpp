// Transition coverage (docs/coverage.md): the declared machines are well-formed, and the TDX
// module records what it really does at complete().
#include "models/kvm/kvm_machines.h"
#include "models/tdx/tdx_machines.h"
#include "tdx_test_util.h"

using namespace cvmsim;
using namespace cvmsim::tdx;
using namespace cvmsim::tdx::test;

namespace {

std::vector<sm::Machine*> all_machines() {
  return {&kvm::gfn_machine(false), &kvm::gfn_machine(true), &sept_machine(), &td_machine(),
          &kot_machine()};
}

uint64_t count(const sm::Counts& c, std::string_view from, std::string_view op,
               std::string_view outcome) {
  const sm::Machine& m = c.machine();
  const int f = m.state_index(from), o = m.op_index(op), oc = m.outcome_index(outcome);
  REQUIRE(f != sm::Machine::kNone);
  REQUIRE(o != sm::Machine::kNone);
  REQUIRE(oc != sm::Machine::kNone);
  const int t = m.find(f, o, oc);
  REQUIRE(t != sm::Machine::kNone);
  return c.counts()[t];
}

constexpr Gpa kGpa{0x400000};

}  // namespace

TEST_CASE("coverage: every declared machine is well-formed") {
  for (const sm::Machine* m : all_machines()) {
    INFO(m->name());
    CHECK(m->errors().empty());
    for (const auto& e : m->errors()) UNSCOPED_INFO(e);
    REQUIRE(!m->transitions().empty());
    CHECK((m->outcomes()[0] == "SUCCESS" || m->outcomes()[0] == "OK"));
    std::vector<bool> op_used(m->ops().size(), false);
    for (size_t i = 0; i < m->transitions().size(); ++i) {
      const sm::Transition& t = m->transitions()[i];
      INFO(m->describe(t));
      CHECK(t.from < m->states().size());
      CHECK(t.to < m->states().size());
      CHECK(!t.cite.empty());
      // Deterministic: (from, op, outcome) names exactly this transition.
      CHECK(m->find(t.from, t.op, t.outcome) == static_cast<int>(i));
      op_used[t.op] = true;
    }
    for (size_t o = 0; o < op_used.size(); ++o) {
      INFO("operation " << m->ops()[o]);
      CHECK(op_used[o]);
    }
  }
  // Every leaf a machine names is a real leaf of the module (the op names are Leaf names).
  CHECK(sept_op_of(Leaf::kMemPageAug) == sept_machine().op_index("TDH.MEM.PAGE.AUG"));
  CHECK(sept_op_of(Leaf::kTdgMemPageAccept) != sm::Machine::kNone);
  CHECK(sept_op_of(Leaf::kMemTrack) == sm::Machine::kNone);  // no S-EPT entry
  CHECK(td_op_of(Leaf::kMrFinalize) != sm::Machine::kNone);
  // S-EPT states are SeptState by value.
  CHECK(sept_machine().state_index("PENDING_BLOCKED") ==
        static_cast<int>(SeptState::kPendingBlocked));
}

TEST_CASE("coverage: the TDX module records the transitions it performs") {
  Env e;
  const sm::Counts& sept = e.m.coverage().of(sept_machine());
  const sm::Counts& tdm = e.m.coverage().of(td_machine());
  const sm::Counts& kot = e.m.coverage().of(kot_machine());
  const Td td = e.build_td(20, 1);
  // The build: NO_TD -> HKID_ASSIGNED -> KEYS_CONFIGURED/UNINITIALIZED -> INITIALIZED -> RUNNABLE.
  CHECK(count(tdm, "NO_TD", "TDH.MNG.CREATE", "SUCCESS") == 1);
  CHECK(count(tdm, "HKID_ASSIGNED", "TDH.MNG.KEY.CONFIG", "SUCCESS") == 1);
  CHECK(count(tdm, "KEYS_CONFIGURED/UNINITIALIZED", "TDH.MNG.ADDCX", "SUCCESS") ==
        e.m.config().num_tdcs_pages);
  CHECK(count(tdm, "KEYS_CONFIGURED/UNINITIALIZED", "TDH.MNG.INIT", "SUCCESS") == 1);
  CHECK(count(tdm, "KEYS_CONFIGURED/INITIALIZED", "TDH.MR.FINALIZE", "SUCCESS") == 1);
  CHECK(count(kot, "HKID_FREE", "TDH.MNG.CREATE", "SUCCESS") == 1);
  // Another TD asking for the same KeyID.
  CHECK(status_code(e.m.mng_create(e.page(), 20, kTdOwner2).status) == status::kHkidNotFree);
  CHECK(count(kot, "HKID_ASSIGNED", "TDH.MNG.CREATE", "TDX_HKID_NOT_FREE") == 1);
  CHECK(count(tdm, "NO_TD", "TDH.MNG.CREATE", "TDX_HKID_NOT_FREE") == 1);
  // Runtime: SEPT.ADD x3 (FREE -> NL_MAPPED), AUG (FREE -> PENDING), ACCEPT (PENDING -> MAPPED).
  e.fault_in(td, kGpa);
  CHECK(count(sept, "FREE", "TDH.MEM.SEPT.ADD", "SUCCESS") == 3);
  CHECK(count(sept, "FREE", "TDH.MEM.PAGE.AUG", "SUCCESS") == 1);
  CHECK(count(sept, "PENDING", "TDG.MEM.PAGE.ACCEPT", "SUCCESS") == 1);
  CHECK(count(tdm, "KEYS_CONFIGURED/RUNNABLE", "TDH.VP.ENTER", "SUCCESS") == 1);
  // A refusal keeps the state: AUG on the MAPPED page, ACCEPT again.
  CHECK(e.m.mem_page_aug(td.tdr, kGpa, PageSize::k4K, e.page()).status ==
        with_operand(status::kEptEntryStateIncorrect, operand::kRcx));
  CHECK(count(sept, "MAPPED", "TDH.MEM.PAGE.AUG", "TDX_EPT_ENTRY_STATE_INCORRECT") == 1);
  CHECK(status_code(e.m.tdg_mem_page_accept(td.vcpus[0], kGpa, PageSize::k4K).status) ==
        status::kPageAlreadyAccepted);
  CHECK(count(sept, "MAPPED", "TDG.MEM.PAGE.ACCEPT", "TDX_PAGE_ALREADY_ACCEPTED") == 1);
  e.leave(td);
  CHECK(count(tdm, "KEYS_CONFIGURED/RUNNABLE", "ASYNC_TD_EXIT", "TD_EXIT") == 1);
  // Once runnable, REMOVE needs BLOCK + TRACK first.
  CHECK(status_code(e.m.mem_page_remove(td.tdr, kGpa, PageSize::k4K).status) ==
        status::kGpaRangeNotBlocked);
  CHECK(count(sept, "MAPPED", "TDH.MEM.PAGE.REMOVE", "TDX_GPA_RANGE_NOT_BLOCKED") == 1);
  REQUIRE_OK(e.m.mem_range_block(td.tdr, kGpa, 0));
  REQUIRE_OK(e.m.mem_track(td.tdr));
  REQUIRE_OK(e.m.mem_page_remove(td.tdr, kGpa, PageSize::k4K));
  CHECK(count(sept, "MAPPED", "TDH.MEM.RANGE.BLOCK", "SUCCESS") == 1);
  CHECK(count(sept, "BLOCKED", "TDH.MEM.PAGE.REMOVE", "SUCCESS") == 1);
  // A call refused before it reaches an entry (a bad TDR) is no S-EPT transition.
  const unsigned before = sept.exercised();
  CHECK(e.m.mem_page_aug(e.page(), kGpa, PageSize::k4K, e.page()).status != 0);
  CHECK(sept.exercised() == before);
  // An abandoned ticket changes nothing and records nothing.
  const uint64_t augs = count(sept, "FREE", "TDH.MEM.PAGE.AUG", "SUCCESS");
  { TdxTicket t = e.m.begin_mem_page_aug(td.tdr, kGpa, PageSize::k4K, e.page()); }
  CHECK(count(sept, "FREE", "TDH.MEM.PAGE.AUG", "SUCCESS") == augs);
  CHECK(sept.undeclared().empty());
  CHECK(tdm.undeclared().empty());
  CHECK(kot.undeclared().empty());
}

TEST_CASE("coverage: two TDX modules in one process count their own transitions only") {
  // Each platform's module records into its own run's coverage (docs/coverage.md); a module told
  // to use another Coverage (set_coverage, as a run does) records there from then on.
  Env a, b;
  const sm::Counts& ta = a.m.coverage().of(td_machine());
  const sm::Counts& tb = b.m.coverage().of(td_machine());
  (void)a.build_td(20, 1);
  CHECK(count(ta, "NO_TD", "TDH.MNG.CREATE", "SUCCESS") == 1);
  CHECK(tb.exercised() == 0);
  CHECK(b.m.coverage().of(sept_machine()).exercised() == 0);
  CHECK(b.m.coverage().of(kot_machine()).exercised() == 0);
  sm::Coverage run;
  b.m.set_coverage(&run);
  (void)b.build_td(21, 1);
  (void)b.build_td(22, 1, true, TdParams{}, kTdOwner2);
  CHECK(count(run.of(td_machine()), "NO_TD", "TDH.MNG.CREATE", "SUCCESS") == 2);
  CHECK(tb.exercised() == 0);
  CHECK(count(ta, "NO_TD", "TDH.MNG.CREATE", "SUCCESS") == 1);
  b.m.set_coverage(nullptr);  // `run` goes before `b`
}

TEST_CASE("coverage: the declared tables reject what A2.3 forbids") {
  // What a broken model might do: AUG over a MAPPED entry, or UNBLOCK a MAPPED one to BLOCKED.
  const sm::Machine& sept = sept_machine();
  sm::Counts m(sept);
  const unsigned aug = sept.op_index("TDH.MEM.PAGE.AUG"),
                 unblock = sept.op_index("TDH.MEM.RANGE.UNBLOCK");
  m.record(static_cast<unsigned>(SeptState::kMapped), aug, 0,
           static_cast<unsigned>(SeptState::kPending));
  m.record(static_cast<unsigned>(SeptState::kBlocked), unblock, 0,
           static_cast<unsigned>(SeptState::kPending));
  CHECK(m.exercised() == 0);
  REQUIRE(m.undeclared().size() == 2);
  CHECK(m.undeclared().count("MAPPED --TDH.MEM.PAGE.AUG/SUCCESS--> PENDING") == 1);
  CHECK(m.undeclared().count("BLOCKED --TDH.MEM.RANGE.UNBLOCK/SUCCESS--> PENDING") == 1);
}
