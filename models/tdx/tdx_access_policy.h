// How a TD's vCPUs translate guest accesses (hw/cpu/guest_access_policy.h), the policy the TDX
// backend hands the platform for every vCPU it builds (KvmTdxBackend::guest_access_policy).
//
// Routing (tdx-snp.md A1): a GPA with the SHARED bit clear is private: walked through the TD's
// Secure EPT (the TDX module's tree, TDCS eptp) and accessed under the TD's private HKID. A GPA
// with the bit set is shared: walked through KVM's shared EPT (the VM's stage-2 table, indexed by
// the full GPA, S bit included) and accessed under key 0.
//
// No checks after translation: TDX enforces isolation on the private side by the S-EPT (only the
// module writes it) and in memory by the TD-owner bit and integrity per cache line (A9), which
// are PhysMem's keyed semantics that every access already goes through. A host write to a private
// page is therefore never refused; the TD's next read under its HKID generates poison (#MC).
#pragma once

#include "hw/cpu/guest_access_policy.h"
#include "hw/memory/key_config.h"
#include "hw/mmu/walker.h"

namespace cvmsim::tdx {

class TdxGuestAccessPolicy final : public GuestAccessPolicy {
 public:
  // `sept`: the TD's Secure EPT as the walker reads it; `shared_bit`: the GPA's SHARED bit (bit
  // 47 with GPAW 48, 51 with GPAW 52); `hkid`: the TD's private HKID.
  TdxGuestAccessPolicy(const WalkRoot& sept, Gpa shared_bit, KeyId hkid)
      : sept_(sept), shared_mask_(shared_bit.value()), hkid_(hkid) {}

  GuestRoute route(Gpa gpa) const override {
    if (gpa.value() & shared_mask_) return GuestRoute{nullptr, 0, false};
    return GuestRoute{&sept_, hkid_, true};
  }
  bool has_private_root() const override { return true; }

 private:
  WalkRoot sept_;
  uint64_t shared_mask_;
  KeyId hkid_;
};

}  // namespace cvmsim::tdx
