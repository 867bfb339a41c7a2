// How a vCPU hands control upward without including anything above hw (ARCHITECTURE.md
// principle 2): it returns a typed VmExit to an ExitHandler that hw declares and the layer above
// (KVM, or sim's static fixture until KVM exists) implements.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "hw/base/addr.h"
#include "hw/base/cycles.h"
#include "hw/memory/key_config.h"

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
  Cycles cost{};       // handler work, charged on top of the exit round trip
  uint64_t ret = 0;    // hypercall return value
  std::string reason;  // for kStop
};

// A machine check (#MC) in the guest: a load consumed poisoned memory (tdx-snp.md A9: a read
// under a private HKID whose line was not TD-owned or failed its MAC, which poisons the line, or
// a read of a line poisoned before). The load's poisoned bytes read as zeros. It is delivered
// through ExitHandler::handle_machine_check rather than as an ExitReason, so that handlers that
// know nothing of it keep their exhaustive switches; the layer above decides what it means:
// the TDX module marks the TD FATAL (TDX_NON_RECOVERABLE_TD_NON_ACCESSIBLE; TDX-BASE16 §16.5.1)
// and stops the vCPU, so that the next TDH.VP.ENTER fails.
struct MachineCheck {
  Gpa gpa{};               // guest address of the first byte that read as poison
  Hpa hpa{};               // its host physical address
  uint32_t size = 0;       // bytes of the access piece that consumed it
  KeyId key = 0;           // the key the load used
  bool generated = false;  // this load generated the poison (owner/MAC mismatch) rather than met it
};

class ExitHandler {
 public:
  virtual ~ExitHandler() = default;
  virtual ExitAction handle_exit(unsigned vcpu_id, const VmExit& exit) = 0;
  // A machine check. kStop stops the vCPU (the default, with a reason naming the address);
  // kResume completes the load with the zeros it read and goes on with the next operation;
  // kRetry issues the load again (to the same host frame: e.g. after the poison was cleared),
  // up to VcpuParams::max_fault_retries times.
  virtual ExitAction handle_machine_check(unsigned vcpu_id, const MachineCheck& mc);
};

}  // namespace cvmsim
