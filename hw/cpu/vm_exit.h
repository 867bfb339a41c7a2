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
#include "hw/mmu/perms.h"

namespace cvmsim {

enum class ExitReason : uint8_t {
  // To the host: EPT violation (Intel), #NPF (AMD), stage-2 abort (Arm). Not present, a
  // permission the leaf lacks, or a check after translation that refused (SNP: the RMP check,
  // `rmp` set). The flags below say which; npf_error_code(), ept_exit_qualification() and
  // esr_el2() encode them as each architecture reports them.
  kStage2Fault,
  kHypercall,  // VMCALL / VMMCALL / HVC
  kBusError,   // the memory system refused a translated access (address or command error)
  // Delivered to the guest kernel rather than the host (the layer above hands it on):
  // #VE (Intel, vector 20): an EPT violation the CPU or the TDX module converts for the guest
  // (tdx-snp.md A8: a PENDING private page with SEPT_VE_DISABLE clear).
  kVirtualizationException,
  // #VC (AMD, vector 29): an SEV-ES/SNP guest's exception for what it must handle itself;
  // `exception_code` is the error code its handler sees (tdx-snp.md B3: 0x404 when the RMP
  // entry is not Validated).
  kVmmCommunication,
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

  // ---- What the hardware reports with a fault (kStage2Fault, kVirtualizationException,
  // kVmmCommunication), as flags: a walk or a check sets them once, and each backend reads the
  // encoding of its architecture.
  bool fetch = false;  // an instruction fetch (guest programs issue none yet)
  bool user = false;   // the guest was at CPL 3 / EL0 (guest programs run at CPL 0)
  // The access was private: AMD's effective C-bit (#NPF ENC, tdx-snp.md B3), Intel's shared bit
  // clear (A1). Set when the backend's GuestAccessPolicy routed it as private.
  bool private_access = false;
  bool rmp = false;             // SNP: the RMP check (or its VMPL part) refused (B3)
  bool size_mismatch = false;   // SNP: PVALIDATE/RMPADJUST page-size mismatch (#NPF SIZEM, B3)
  bool vmpl = false;            // SNP: the VMPL permission check refused (B3)
  Perms leaf_perms;             // when `present`: what the leaf grants
  uint8_t level = 0;            // the stage-2 level the walk stopped at (0: 4 KiB)
  uint64_t exception_code = 0;  // kVmmCommunication: the #VC error code
};

// AMD #NPF error code (EXITINFO1; APM Vol. 2 "Nested Page Faults", Linux PFERR_*_MASK, tdx-snp.md
// B3): P bit 0, W bit 1, U bit 2, ID (fetch) bit 4, RMP bit 31, GUEST_FINAL bit 32 (the fault is on
// the final guest-physical translation: the model's guests have no page tables of their own, so
// always), ENC bit 34, SIZEM bit 35, VMPL bit 36.
namespace npf {
inline constexpr uint64_t kPresent = uint64_t{1} << 0;
inline constexpr uint64_t kWrite = uint64_t{1} << 1;
inline constexpr uint64_t kUser = uint64_t{1} << 2;
inline constexpr uint64_t kFetch = uint64_t{1} << 4;
inline constexpr uint64_t kRmp = uint64_t{1} << 31;
inline constexpr uint64_t kGuestFinal = uint64_t{1} << 32;
inline constexpr uint64_t kGuestPage = uint64_t{1} << 33;
inline constexpr uint64_t kEncrypted = uint64_t{1} << 34;
inline constexpr uint64_t kSizeMismatch = uint64_t{1} << 35;
inline constexpr uint64_t kVmpl = uint64_t{1} << 36;
}  // namespace npf
uint64_t npf_error_code(const VmExit& e);

// Intel EPT-violation exit qualification (SDM Vol. 3C "Exit Qualification for EPT Violations";
// Linux EPT_VIOLATION_*): bits 0-2 the access (read, write, fetch), bits 3-5 what the leaf grants
// (readable, writable, executable; 0 when not present). Bit 7 (guest linear address valid) stays
// clear: the model's guests issue guest-physical accesses.
namespace ept_qual {
inline constexpr uint64_t kRead = uint64_t{1} << 0;
inline constexpr uint64_t kWrite = uint64_t{1} << 1;
inline constexpr uint64_t kFetch = uint64_t{1} << 2;
inline constexpr uint64_t kReadable = uint64_t{1} << 3;
inline constexpr uint64_t kWritable = uint64_t{1} << 4;
inline constexpr uint64_t kExecutable = uint64_t{1} << 5;
}  // namespace ept_qual
uint64_t ept_exit_qualification(const VmExit& e);

// Arm ESR_EL2 of a data abort from a lower EL (EC 0x24, IL set; Arm ARM, ESR_EL2): ISS WnR bit 6,
// DFSC bits 5:0 = translation fault (0b0001LL) or permission fault (0b0011LL) at level LL,
// counted as Arm does (3 = the 4 KiB level). Instruction aborts (EC 0x20) when `fetch`.
uint64_t esr_el2(const VmExit& e);

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
