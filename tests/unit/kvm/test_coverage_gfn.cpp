// Transition coverage of KVM's GFN machine (models/kvm/kvm_machines.h, docs/coverage.md): the
// fault, attribute and invalidation paths record what they did to a GFN, on a sw_protected VM
// (one stage-2 table, where the recorded state is kept up to date by KVM's own operations).
#include <catch2/catch.hpp>

#include "kvm_test_util.h"
#include "models/kvm/kvm_machines.h"

using namespace cvmsim;
using namespace cvmsim::kvmtest;

namespace {

uint64_t count(const sm::Counts& c, const char* from, const char* op, const char* outcome) {
  const sm::Machine& m = c.machine();
  const int t = m.find(m.state_index(from), m.op_index(op), m.outcome_index(outcome));
  REQUIRE(t != sm::Machine::kNone);
  return c.counts()[t];
}

// A guest_memfd-backed slot at 1 MiB on a fresh sw_protected VM of `fx`, and a fault on it.
struct SlotVm {
  KvmFixture& fx;
  int vm_fd, gmem;
  explicit SlotVm(KvmFixture& f)
      : fx(f), vm_fd(f.new_vm(kSwProt)), gmem(f.new_gmem(vm_fd, 16 * kPage)) {
    fx.add_slot(vm_fd, 0, 0x100000, 16 * kPage, gmem);
  }
  FaultOutcome::Kind fault(uint64_t gpa, bool is_private) {
    PageFault f;
    f.gfn = gpa_to_gfn(Gpa(gpa));
    f.is_private = is_private;
    return fx.vm(vm_fd).page_fault(f).kind;
  }
};

}  // namespace

TEST_CASE("coverage: the GFN machine records faults, attribute changes and invalidations",
          "[kvm][coverage]") {
  KvmFixture fx(any_store());
  const sm::Counts& m = fx.kvm.coverage().of(gfn_machine(false));
  SlotVm v(fx);
  const int vm_fd = v.vm_fd, g = v.gmem;
  auto fault = [&](uint64_t gpa, bool is_private) { return v.fault(gpa, is_private); };
  // Shared first touch, then the conversion zaps it, then the private touch maps the gmem frame.
  REQUIRE(fault(0x103000, false) == FaultOutcome::kFixed);
  CHECK(count(m, "SHARED+GMEM", "FAULT_SHARED", "OK") == 1);
  REQUIRE(fault(0x103000, false) == FaultOutcome::kFixed);  // already mapped: spurious
  CHECK(count(m, "SHARED+GMEM+MAPPED", "FAULT_SHARED", "OK") == 1);
  REQUIRE(fx.set_attrs(vm_fd, 0x103000, kPage, kPriv).ok());
  CHECK(count(m, "SHARED+GMEM+MAPPED", "SET_ATTR_PRIVATE", "OK") == 1);
  REQUIRE(fx.set_attrs(vm_fd, 0x103000, kPage, kPriv).ok());  // nothing changes
  CHECK(count(m, "PRIVATE+GMEM", "SET_ATTR_PRIVATE", "NOOP") == 1);
  REQUIRE(fault(0x103000, false) == FaultOutcome::kMemoryFaultExit);  // shared access, private gfn
  CHECK(count(m, "PRIVATE+GMEM", "FAULT_SHARED", "MEMORY_FAULT_EXIT") == 1);
  REQUIRE(fault(0x103000, true) == FaultOutcome::kFixed);
  CHECK(count(m, "PRIVATE+GMEM", "FAULT_PRIVATE", "OK") == 1);
  // Punching the hole unmaps the private page.
  REQUIRE(fx.kvm.fallocate(fx.proc, g, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 3 * kPage, kPage)
              .ok());
  CHECK(count(m, "PRIVATE+GMEM+MAPPED", "GMEM_INVALIDATE", "OK") == 1);
  // A 16-page conversion records a sample of its GFNs (16: all of them here).
  REQUIRE(fx.set_attrs(vm_fd, 0x100000, 16 * kPage, 0).ok());
  CHECK(count(m, "PRIVATE+GMEM", "SET_ATTR_SHARED", "OK") == 1);
  CHECK(count(m, "SHARED+GMEM", "SET_ATTR_SHARED", "OK") == 15);
  CHECK(m.undeclared().empty());
  CHECK(&gfn_machine(true) != &m.machine());
  // A sw_protected VM records into kvm.gfn only.
  CHECK(fx.kvm.coverage().of(gfn_machine(true)).exercised() == 0);
}

TEST_CASE("coverage: two KVMs in one process count their own transitions only", "[kvm][coverage]") {
  // Two platforms built in one process (unit tests, cvmsim explore): each run's coverage is its
  // own. (Counters kept in the process-wide machine would show one's transitions in the other.)
  KvmFixture a(any_store()), b(any_store());
  const sm::Counts& ca = a.kvm.coverage().of(gfn_machine(false));
  const sm::Counts& cb = b.kvm.coverage().of(gfn_machine(false));
  CHECK(&a.kvm.coverage() != &b.kvm.coverage());
  SlotVm va(a), vb(b);
  REQUIRE(va.fault(0x103000, false) == FaultOutcome::kFixed);
  REQUIRE(va.fault(0x104000, false) == FaultOutcome::kFixed);
  CHECK(count(ca, "SHARED+GMEM", "FAULT_SHARED", "OK") == 2);
  CHECK(cb.exercised() == 0);
  REQUIRE(vb.fault(0x105000, false) == FaultOutcome::kFixed);
  CHECK(count(cb, "SHARED+GMEM", "FAULT_SHARED", "OK") == 1);
  CHECK(count(ca, "SHARED+GMEM", "FAULT_SHARED", "OK") == 2);
  // A run's coverage handed to a KVM (set_coverage) gets that KVM's transitions, and only those.
  sm::Coverage run;
  KvmFixture c(any_store());
  c.kvm.set_coverage(&run);
  SlotVm vc(c);
  REQUIRE(vc.fault(0x106000, false) == FaultOutcome::kFixed);
  CHECK(count(run.of(gfn_machine(false)), "SHARED+GMEM", "FAULT_SHARED", "OK") == 1);
  CHECK(count(ca, "SHARED+GMEM", "FAULT_SHARED", "OK") == 2);
  CHECK(count(cb, "SHARED+GMEM", "FAULT_SHARED", "OK") == 1);
}
