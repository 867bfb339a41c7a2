#include "hw/cpu/guest_op.h"

#include <cinttypes>
#include <cstdio>

#include "hw/cpu/vm_exit.h"

namespace cvmsim {

std::string_view name_of(OpKind k) {
  switch (k) {
    case OpKind::kLoad:
      return "load";
    case OpKind::kStore:
      return "store";
    case OpKind::kCompute:
      return "compute";
    case OpKind::kFence:
      return "fence";
    case OpKind::kHypercall:
      return "hypercall";
    case OpKind::kSync:
      return "sync";
  }
  return "?";
}

std::string_view name_of(ExitReason r) {
  switch (r) {
    case ExitReason::kStage2Fault:
      return "stage2_fault";
    case ExitReason::kHypercall:
      return "hypercall";
    case ExitReason::kBusError:
      return "bus_error";
    case ExitReason::kVirtualizationException:
      return "virtualization_exception";
    case ExitReason::kVmmCommunication:
      return "vmm_communication";
  }
  return "?";
}

ExitAction ExitHandler::handle_machine_check(unsigned vcpu_id, const MachineCheck& mc) {
  char m[160];
  std::snprintf(m, sizeof m,
                "vCPU %u: machine check: poison consumed at gpa 0x%" PRIx64 " (hpa 0x%" PRIx64 ")",
                vcpu_id, mc.gpa.value(), mc.hpa.value());
  ExitAction a;
  a.kind = ExitAction::kStop;
  a.reason = m;
  return a;
}

}  // namespace cvmsim
