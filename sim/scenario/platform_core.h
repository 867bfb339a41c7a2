// The functional platform a scenario describes, built one way for `cvmsim run` (whose timed shell,
// sim/platform/run.cpp, adds SystemC memory, interconnect and vCPU modules around it) and for
// `cvmsim explore` (which drives guests with hw/cpu/functional_cpu): physical memory, the host's
// page allocator, the firmware of every backend the scenario uses, KVM with every backend
// registered, and each declared VM set up by its VMM and launched by its backend. Everything
// backend-specific comes from the backends' descriptors (models/backend/registry.h). Pure C++
// (no SystemC).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "hw/memory/phys_mem.h"
#include "models/backend/registry.h"
#include "models/host/page_allocator.h"
#include "models/kvm/kvm.h"
#include "models/vmm/vmm.h"
#include "sim/config/scenario_config.h"
#include "sim/invariants/invariants.h"
#include "sim/stats/registry.h"

namespace cvmsim::scenario {

// A declared VM: its VMM and what its backend's launch left (the guest side).
struct PlatformVm {
  const config::VmConfig* cfg = nullptr;
  const backend::Descriptor* backend = nullptr;
  std::unique_ptr<vmm::Vmm> vmm;
  std::unique_ptr<backend::GuestSide> guest;
};

class PlatformCore {
 public:
  // Physical memory, the page allocator, the firmware of each backend the scenario uses (a VM of
  // its type, or a step creating one) and KVM with every backend registered. Throws
  // std::runtime_error if a backend's firmware cannot be built.
  // `coverage` (optional) gets the transitions of KVM and of every backend's firmware (a run's
  // sm::Coverage); it must outlive the platform.
  explicit PlatformCore(const config::ScenarioConfig& sc, sm::Coverage* coverage = nullptr);
  ~PlatformCore();
  PlatformCore(const PlatformCore&) = delete;
  PlatformCore& operator=(const PlatformCore&) = delete;

  // Sets up every VM of the scenario through its VMM and launches it (set-up costs are not
  // charged to anyone). Throws std::runtime_error naming the VM on failure.
  void build_vms();

  PhysMem& mem() { return mem_; }
  PageAllocator& frames() { return alloc_; }
  kvm::Kvm& kvm() { return *kvm_; }
  const kvm::Kvm& kvm() const { return *kvm_; }
  std::vector<PlatformVm>& vms() { return vms_; }
  const std::vector<PlatformVm>& vms() const { return vms_; }
  std::vector<vmm::Vmm*> vmms() const;
  // The invariant catalogue of this platform: the generic one and every registered backend's.
  std::vector<kvm::InvariantDef> invariants() const;

  // Statistics: platform.host.page_allocator, platform.kvm and each backend's platform part
  // (platform.<backend>); and per VM platform.<vm>.kvm, .vmm and .guest.
  void register_platform_stats(StatsRegistry& reg);
  void register_vm_stats(StatsRegistry& reg, size_t vm);

  // Teardown in the order the layers need: the VMMs close their fds first (zapping mappings,
  // revoking DMI grants that still reach the vCPUs' TLBs and sockets, so those must still
  // exist), then KVM, the guests and the firmware. Idempotent; the destructor calls both.
  void close_vmms();
  void shutdown();

 private:
  const config::ScenarioConfig& sc_;
  PhysMem mem_;
  PageAllocator alloc_;
  struct Part {
    const backend::Descriptor* d;
    std::unique_ptr<backend::PlatformPart> part;
  };
  std::vector<Part> parts_;  // before kvm_: VM teardown calls the firmware
  std::unique_ptr<kvm::Kvm> kvm_;
  std::vector<PlatformVm> vms_;
};

}  // namespace cvmsim::scenario
