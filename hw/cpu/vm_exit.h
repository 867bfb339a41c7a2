// How a vCPU hands control upward without including anything above hw (ARCHITECTURE.md
// principle 2): it returns a typed VmExit to an ExitHandler that hw declares and the layer above
// (KVM, or sim's static fixture until KVM exists) implements.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "hw/base/addr.h"
#include "hw/base/cycles.h"

namespace cvmsim {

enum class ExitReason : uint8_t {
  kStage2Fault,  // EPT violation / NPF / stage-2 abort: not present or permission
  kHypercall,    // VMCALL / VMMCALL / HVC
  kBusError,     // the memory system refused a translated access (address or command error)
};

std::string_view name_of(ExitReason r);

struct VmExit {
  ExitReason reason = ExitReason::kStage2Fault;
  Gpa gpa{};
  bool write = false;
  bool present = false;  // stage-2 fault: a leaf existed but lacked the permission
  uint64_t nr = 0;       // hypercall
  uint64_t args[4] = {0, 0, 0, 0};
  uint64_t time_ps = 0;  // the vCPU's local time at the exit (for traces above hw)
};

struct ExitAction {
  enum Kind : uint8_t {
    kRetry,   // the cause was handled: retry the faulting access
    kResume,  // continue with the next operation (hypercall done)
    kStop,    // stop this vCPU (the run reports why)
  };
  Kind kind = kStop;
  Cycles cost{};        // handler work, charged on top of the exit round trip
  uint64_t ret = 0;     // hypercall return value
  std::string reason;   // for kStop
};

class ExitHandler {
 public:
  virtual ~ExitHandler() = default;
  virtual ExitAction handle_exit(unsigned vcpu_id, const VmExit& exit) = 0;
};

}  // namespace cvmsim
