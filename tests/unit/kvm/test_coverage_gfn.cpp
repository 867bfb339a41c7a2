// Transition coverage of KVM's GFN machine (models/kvm/kvm_machines.h, docs/coverage.md): the
// fault, attribute and invalidation paths record what they did to a GFN, on a sw_protected VM
// (one stage-2 table, where the recorded state is kept up to date by KVM's own operations).
#include <catch2/catch.hpp>

#include "kvm_test_util.h"
#include "models/kvm/kvm_machines.h"

using namespace cvmsim;
using namespace cvmsim::kvmtest;

namespace {

uint64_t count(const sm::Machine& m, const char* from, const char* op, const char* outcome) {
  const int t = m.find(m.state_index(from), m.op_index(op), m.outcome_index(outcome));
  REQUIRE(t != sm::Machine::kNone);
  return m.counts()[t];
}

}  // namespace

TEST_CASE("coverage: the GFN machine records faults, attribute changes and invalidations",
          "[kvm][coverage]") {
  sm::Machine& m = gfn_machine(false);
  m.reset_counts();
  gfn_machine(true).reset_counts();
  KvmFixture fx(any_store());
  const int vm_fd = fx.new_vm(kSwProt);
  const int g = fx.new_gmem(vm_fd, 16 * kPage);
  fx.add_slot(vm_fd, 0, 0x100000, 16 * kPage, g);
  Vm& vm = fx.vm(vm_fd);
  auto fault = [&](uint64_t gpa, bool is_private) {
    PageFault f;
    f.gfn = gpa_to_gfn(Gpa(gpa));
    f.is_private = is_private;
    return vm.page_fault(f).kind;
  };
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
  CHECK(&gfn_machine(true) != &m);
  CHECK(gfn_machine(true).exercised() == 0);  // a sw_protected VM records into kvm.gfn only
  m.reset_counts();
}
