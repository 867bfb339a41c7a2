// Who accesses memory and the checks a host-side access passes before memory sees it
// (ARCHITECTURE.md "Every access has an initiator and passes the same checks"). An Initiator
// (initiator.h) performs the access; this header has what a check needs to see, so that PhysMem
// can hold the platform's chain without depending on Initiator.
//
// Backends add checks to the platform's chain (PhysMem::host_checks()): SNP's RMP check on host
// writes, which refuses with #PF error-code bit 31 (tdx-snp.md B3), and later pKVM's host stage-2
// (a stage-2 abort) or the IOMMU's RMP enforcement on DMA (B4). Guest accesses do not pass this
// chain: a vCPU's checks are its backend's GuestAccessPolicy (hw/cpu), run at translation.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "hw/base/addr.h"
#include "hw/base/principal.h"
#include "hw/memory/key_config.h"

namespace cvmsim {

enum class InitiatorKind : uint8_t {
  kCpu,         // a guest vCPU (its checks ran at translation)
  kHostKernel,  // the host kernel: direct map, page tables, clearing pages
  kHostUser,    // host userspace: the VMM
  kHostile,     // a buggy or hostile host actor (scenario attacks)
  kDevice,      // DMA
  kFirmware,    // the TDX module, SNP firmware, the pKVM hypervisor
};

std::string_view name_of(InitiatorKind k);

// An initiator's identity: whose access it is, what kind of agent makes it, and the memory key
// it uses unless an access says otherwise.
struct InitiatorId {
  Principal who = kNobody;
  InitiatorKind kind = InitiatorKind::kHostKernel;
  KeyId key = 0;
};

// One piece of an access, within one 4 KiB frame, as a check sees it.
struct FrameAccess {
  InitiatorId by;
  Hpa hpa;           // its first byte
  uint32_t len = 0;  // bytes, all in hpa's frame
  bool write = false;
  KeyId key = 0;  // the key the access uses
  Pfn pfn() const { return hpa_to_pfn(hpa); }
};

// x86 page-fault error-code bits (arch/x86/include/asm/trap_pf.h), for checks that refuse with
// a #PF.
namespace pf_error {
inline constexpr uint64_t kPresent = uint64_t{1} << 0;
inline constexpr uint64_t kWrite = uint64_t{1} << 1;
inline constexpr uint64_t kUser = uint64_t{1} << 2;
inline constexpr uint64_t kRmp = uint64_t{1} << 31;  // X86_PF_RMP (tdx-snp.md B3)
}  // namespace pf_error

// What the initiator gets when a check refuses its access: what the hardware would raise.
struct AccessFault {
  enum class Kind : uint8_t {
    kPageFault,    // x86 #PF in the host (SNP: error code with kRmp; B3)
    kStage2Abort,  // Arm: the host stage-2 refused (pKVM), a data abort taken by the host
    kIommuFault,   // a device's access refused by the IOMMU (SNP: RMP_PAGE_FAULT, event 0xD; B4)
  };
  Kind kind = Kind::kPageFault;
  // #PF: the pf_error:: bits; others: the architecture's syndrome or event.
  uint64_t error_code = 0;
  Hpa hpa{};               // the first byte refused
  std::string_view check;  // the refusing check's name()
};

class HostAccessCheck {
 public:
  virtual ~HostAccessCheck() = default;
  virtual std::string_view name() const = 0;
  // nullopt lets the piece through; a fault refuses the whole access.
  virtual std::optional<AccessFault> check(const FrameAccess& a) const = 0;
};

// An ordered list of checks (not owned: each must outlive the chain's users).
class AccessCheckChain {
 public:
  void add(const HostAccessCheck& c) {
    checks_.push_back(&c);
    any_ = true;
  }
  void remove(const HostAccessCheck& c) {
    std::erase(checks_, &c);
    any_ = !checks_.empty();
  }
  // A flag rather than the vector's emptiness: the test every access makes is one load.
  bool empty() const { return !any_; }
  size_t size() const { return checks_.size(); }
  // A chain that stays empty: what an initiator without a chain of its own runs.
  static const AccessCheckChain& none() {
    static const AccessCheckChain kNone;
    return kNone;
  }
  // Every check on every 4 KiB piece of [a, a + len), before anything is accessed: the first
  // refusal, or nullopt.
  std::optional<AccessFault> run(const InitiatorId& by, Hpa a, uint64_t len, bool write,
                                 KeyId key) const;

 private:
  std::vector<const HostAccessCheck*> checks_;
  bool any_ = false;
};

}  // namespace cvmsim
