// The untimed vCPU core (hw/cpu/functional_cpu): stage-2 faults go to the exit handler and the
// access retries, TLB hits need no walk, an unresolved fault stops the core after the retry
// limit, hypercalls return the handler's value, and loads of another principal's data are
// reported to the read observer.
#include <catch2/catch.hpp>

#include <tuple>
#include "../mmu/test_support.h"
#include "hw/base/principal.h"
#include "hw/cpu/functional_cpu.h"

using namespace cvmsim;
using cvmsim::test::BumpAllocator;

namespace {

const Principal kGuest = vm_principal(3), kOther = vm_principal(5);

// Maps the faulting page to a data frame on a stage-2 fault when `fix` is set.
struct Handler final : ExitHandler {
  Stage2Table* table = nullptr;
  bool fix = true;
  unsigned faults = 0, hypercalls = 0;
  ExitAction handle_exit(unsigned, const VmExit& e) override {
    ExitAction a;
    if (e.reason == ExitReason::kHypercall) {
      ++hypercalls;
      a.kind = e.nr == 99 ? ExitAction::kStop : ExitAction::kResume;
      a.ret = e.args[0] + 1;
      return a;
    }
    ++faults;
    if (fix)
      REQUIRE(table
                  ->map(e.gpa.align_down(PageSize::k4K), Pfn(0x200 + (e.gpa.value() >> kPageShift)),
                        PageSize::k4K, kPermsRW)
                  .ok());
    a.kind = ExitAction::kRetry;
    return a;
  }
};

struct Env {
  Env()
      : mem(test::kTestMemBytes, MemMode::kData),
        frames(test::kTableFramesBegin, test::kTableFramesEnd) {
    auto t = Stage2Table::create(mem, frames, Stage2Format::kEpt4);
    REQUIRE(t.ok());
    table = std::move(*t);
    h.table = table.get();
    FunctionalCpuParams p;
    p.who = kGuest;
    cpu = std::make_unique<FunctionalCpu>(p, mem, *table, h);
  }
  PhysMem mem;
  BumpAllocator frames;
  std::unique_ptr<Stage2Table> table;
  Handler h;
  std::unique_ptr<FunctionalCpu> cpu;
};

}  // namespace

TEST_CASE("functional cpu: a fault exits once, the access retries, later accesses hit the TLB") {
  Env e;
  REQUIRE(e.cpu->execute(GuestOp::store(Gpa(0x3008), 8, 0xabcdef)));
  CHECK(e.h.faults == 1);
  CHECK(e.cpu->exits() == 1);
  // The data landed in the frame the handler mapped, labelled with the guest.
  std::vector<uint8_t> raw(8);
  e.mem.read(pfn_to_hpa(Pfn(0x203)) + 8, raw);
  std::vector<uint8_t> want(8);
  fill_pattern(PatternKind::kValue, 0xabcdef, 0x3008, want);
  CHECK(raw == want);
  CHECK(e.mem.meta(Pfn(0x203)).label == kGuest);
  const uint64_t misses = e.cpu->tlb().stats().misses;
  REQUIRE(e.cpu->execute(GuestOp::load(Gpa(0x3008), 8)));
  CHECK(e.h.faults == 1);
  CHECK(e.cpu->tlb().stats().misses == misses);  // a hit
  // An access crossing into the next page faults that page in too.
  REQUIRE(e.cpu->execute(GuestOp::store(Gpa(0x3ffc), 8, 1)));
  CHECK(e.h.faults == 2);
}

TEST_CASE("functional cpu: a fault nothing resolves stops the core after the retry limit") {
  Env e;
  e.h.fix = false;
  CHECK_FALSE(e.cpu->execute(GuestOp::load(Gpa(0x5000), 8)));
  CHECK(e.cpu->stopped());
  CHECK(e.h.faults == 8);  // FunctionalCpuParams::max_fault_retries
  CHECK_THAT(e.cpu->stop_reason(), Catch::Contains("still faults after 8 handled exits"));
  CHECK_FALSE(e.cpu->execute(GuestOp::load(Gpa(0x5000), 8)));  // a stopped core runs nothing
  CHECK(e.h.faults == 8);
}

TEST_CASE("functional cpu: hypercalls return the handler's value; kStop stops the core") {
  Env e;
  GuestOp op;
  op.kind = OpKind::kHypercall;
  op.nr = 12;
  op.args[0] = 41;
  OpResult r;
  REQUIRE(e.cpu->execute(op, &r));
  CHECK(r.ret == 42);
  op.nr = 99;
  CHECK_FALSE(e.cpu->execute(op, &r));
  CHECK(e.cpu->stopped());
  CHECK(e.h.hypercalls == 2);
}

TEST_CASE("functional cpu: a load of another principal's data is reported to the read observer") {
  Env e;
  REQUIRE(e.table->map(Gpa(0x7000), Pfn(0x300), PageSize::k4K, kPermsRW).ok());
  std::vector<uint8_t> secret(64, 0x5a);
  (void)e.mem.write_keyed(pfn_to_hpa(Pfn(0x300)), secret, KeyedAccess{0, kOther, false});
  std::vector<std::tuple<uint64_t, Principal, Principal>> seen;
  e.cpu->read_observer = [&](Pfn f, Principal reader, Principal holder) {
    seen.emplace_back(f.value(), reader, holder);
  };
  REQUIRE(e.cpu->execute(GuestOp::load(Gpa(0x7000), 8)));
  REQUIRE(seen.size() == 1);
  CHECK(std::get<0>(seen[0]) == 0x300);
  CHECK(std::get<1>(seen[0]) == kGuest);
  CHECK(std::get<2>(seen[0]) == kOther);
  // Its own data is not reported.
  REQUIRE(e.cpu->execute(GuestOp::store(Gpa(0x7000), 4096, 3)));
  REQUIRE(e.cpu->execute(GuestOp::load(Gpa(0x7000), 8)));
  CHECK(seen.size() == 1);
}
