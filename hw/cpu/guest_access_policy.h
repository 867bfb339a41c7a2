// How a confidential VM's guest accesses are translated and checked, supplied by the backend and
// declared here so that hw/cpu includes nothing above hw (ARCHITECTURE.md principle 2, "Every
// access has an initiator and passes the same checks"). Two parts:
//
//   route()   which root a GPA is walked through and under which memory key the access is made.
//             TDX (tdx-snp.md A1): shared bit clear -> the Secure EPT, the TD's private HKID; set
//             -> KVM's shared EPT (the stage-2 table given to the vCPU), key 0. SNP will route by
//             the C-bit of the guest's request (B5) over one root; pKVM has no policy at all.
//   checks    run on the translated frame before the access, in order; the first that refuses
//             turns the access into the typed exit it fills in (VmExit: reason and the bits the
//             hardware reports). SNP's RMP check (B3) goes here: #NPF with the RMP bit, or #VC
//             0x404 for a page that is not Validated. TDX has none: its TD-owner bit and integrity
//             (A9) are PhysMem's keyed semantics, which every access already goes through.
//
// A VM without a policy (the backend returns nullptr) has one root, its key is the vCPU's, and
// nothing runs after the walk: the hot path is exactly what it was.
//
// Checks run when a translation is made (after a walk, before the TLB fill), and the TLB entry
// then grants only what was checked (a read's entry does not vouch for a write). A verdict is
// therefore cached with the translation, as permissions are: a backend that changes what a check
// reads (an RMPUPDATE) must invalidate the translations, as it must after a stage-2 change and as
// DMI is revoked (principle 5). That hardware caches RMP verdicts in its TLB this way is the
// model's assumption, not a cited fact.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "hw/base/addr.h"
#include "hw/base/page_size.h"
#include "hw/base/principal.h"
#include "hw/cpu/vm_exit.h"
#include "hw/memory/key_config.h"
#include "hw/mmu/walker.h"

namespace cvmsim {

// Where an access to one GPA is walked, and how it reaches memory.
struct GuestRoute {
  const WalkRoot* root = nullptr;  // nullptr: the vCPU's stage-2 table
  KeyId key = 0;                   // the memory key of the access
  bool private_access = false;     // reported in exits (VmExit::private_access)
};

// A translated access, as a check sees it.
struct GuestAccess {
  unsigned vcpu = 0;  // index within the VM
  uint16_t asid = 0;  // the vCPU's address-space tag (SNP's guest-owned check compares ASIDs)
  Principal who = kNobody;
  Gpa gpa;                        // as the guest issued it
  Pfn pfn;                        // the 4 KiB frame it lands in
  PageSize size = PageSize::k4K;  // the stage-2 leaf's size (SNP's page-size check)
  bool write = false;
  GuestRoute route;
};

class GuestAccessCheck {
 public:
  virtual ~GuestAccessCheck() = default;
  virtual std::string_view name() const = 0;
  // True to let the access go on. False refuses it: `exit` then says what the hardware reports
  // (it arrives filled in as a kStage2Fault with the access's gpa, write, present, level, leaf
  // permissions and private_access; the check sets the reason and the bits it is about).
  virtual bool check(const GuestAccess& a, VmExit& exit) const = 0;
};

class GuestAccessPolicy {
 public:
  virtual ~GuestAccessPolicy() = default;
  virtual GuestRoute route(Gpa gpa) const = 0;
  // Whether some GPA is walked through a root of the policy's own (counts the core's
  // private_walks statistic).
  virtual bool has_private_root() const { return false; }

  // The check chain, run in the order the checks were added. Not owned: each must outlive the
  // policy's users.
  void add_check(const GuestAccessCheck& c) { checks_.push_back(&c); }
  bool has_checks() const { return !checks_.empty(); }
  // Runs the chain; false and `exit` filled in at the first refusal.
  bool run_checks(const GuestAccess& a, VmExit& exit) const {
    for (const GuestAccessCheck* c : checks_)
      if (!c->check(a, exit)) return false;
    return true;
  }

 private:
  std::vector<const GuestAccessCheck*> checks_;
};

}  // namespace cvmsim
