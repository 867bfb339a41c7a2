// A userspace VMM, set up the way QEMU sets up a VM with private memory (kvm-guest-memfd.md §4,
// §11): for each RAM region an anonymous shared mapping plus, where the region may hold private
// memory, a guest_memfd; a KVM_MEM_GUEST_MEMFD memslot naming both. It runs the vCPUs'
// userspace side: KVM_EXIT_MEMORY_FAULT and KVM_EXIT_HYPERCALL(KVM_HC_MAP_GPA_RANGE) become
// conversions (set the attributes, discard the opposite backing: punch the guest_memfd on
// private->shared, drop the shared pages on shared->private). A policy knob keeps both
// backings instead, to study the double-allocation cost.
//
// Everything goes through the uAPI facade (models/kvm/kvm.h), as a real VMM would.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "hw/base/page_size.h"
#include "hw/base/principal.h"
#include "hw/base/stat_visitor.h"
#include "models/host/host_mm.h"
#include "models/kvm/kvm.h"

namespace cvmsim::vmm {

struct RamRegion {
  Gpa gpa;
  uint64_t size = 0;
  PageSize page_size = PageSize::k4K;  // host backing of the shared side (hugetlb when > 4K)
  bool guest_memfd = false;            // back the region with a guest_memfd too (private-capable)
  bool initially_private = false;      // KVM_SET_MEMORY_ATTRIBUTES(PRIVATE) over it at setup
};

struct VmmPolicy {
  // Discard the opposite backing on conversion (QEMU's behaviour). False keeps both: the
  // double-allocation cost.
  bool discard_on_convert = true;
  // Convert on KVM_EXIT_MEMORY_FAULT (implicit conversion, §8). False stops the vCPU instead.
  bool implicit_conversion = true;
  // fallocate the guest_memfd range when converting to private (optional in §11).
  bool allocate_on_private = false;
};

struct VmmConfig {
  std::string vm_name;
  uint32_t vm_type = kvm::KVM_X86_DEFAULT_VM;
  unsigned vcpus = 1;
  Principal principal = kNobody;
  uint16_t asid = 1;
  std::vector<RamRegion> ram;
  VmmPolicy policy;
  // The VM's options for its type's backend (what QEMU passes with the type's init command,
  // e.g. KVM_TDX_INIT_VM); nullptr: defaults. Must outlive the VMM.
  const config::Section* backend_options = nullptr;
};

class Vmm final : public kvm::UserspaceExitHandler {
 public:
  // The VMM process has its own address space; `frames` backs its anonymous memory.
  Vmm(kvm::Kvm& kvm, PhysMem& mem, FrameAllocator& frames, VmmConfig cfg);
  ~Vmm() override;

  // Opens /dev/kvm, creates the VM, its memory and its vCPUs. Returns "" or an error naming
  // the failing call and errno.
  std::string setup();

  kvm::Process& process() { return *proc_; }
  HostMm& mm() { return *mm_; }
  int vm_fd() const { return vm_fd_; }  // -1 once close_vm_fd closed it
  // The VM this VMM created. It does not go with the VM fd: the VMM's vCPU fds and the VM's
  // guest_memfd files hold references on it (kvm-guest-memfd.md §6.2), so it lives until the
  // last of them is closed. vm_alive() says whether it still does; vm() needs it to.
  kvm::Vm& vm();
  bool vm_alive() const;
  // close(2) of the VM fd (a scenario's close step): the VMM no longer uses that fd number, so
  // its later VM ioctls (a conversion's KVM_SET_MEMORY_ATTRIBUTES) fail with EBADF instead of
  // reaching whatever file reuses the number.
  Status close_vm_fd();
  kvm::Vcpu& vcpu(unsigned i);
  unsigned num_vcpus() const { return static_cast<unsigned>(vcpu_fds_.size()); }
  const VmmConfig& config() const { return cfg_; }

  // The region holding gpa (index), or -1.
  int region_of(Gpa gpa) const;
  Hva hva_of(Gpa gpa) const;
  int gmem_fd(unsigned region) const { return regions_[region].gmem_fd; }
  int vcpu_fd(unsigned i) const { return vcpu_fds_.at(i); }
  // Called with every exit the VMM handles (scenario expectations watch them).
  std::function<void(unsigned vcpu, int err, const kvm::kvm_run& run)> exit_observer;

  // A conversion as the VMM performs it for an exit (§11): optional fallocate, attributes,
  // discard of the opposite backing. Returns 0 or a positive errno of the failing step.
  int convert(Gpa gpa, uint64_t bytes, bool to_private);

  // kvm::UserspaceExitHandler
  bool on_exit(kvm::Vcpu& vcpu, int err, kvm::kvm_run& run, std::string& stop_reason) override;

  void describe_stats(StatVisitor& v) const;

 private:
  struct Region {
    RamRegion cfg;
    Hva hva;
    int gmem_fd = -1;
    uint32_t slot = 0;
  };

  kvm::Kvm& kvm_;
  VmmConfig cfg_;
  std::unique_ptr<HostMm> mm_;
  std::unique_ptr<kvm::Process> proc_;
  int kvm_fd_ = -1, vm_fd_ = -1;
  kvm::Vm* vm_ = nullptr;  // set by setup(); Kvm keeps the object until it is destroyed itself
  std::vector<int> vcpu_fds_;
  std::vector<Region> regions_;
  struct Stats {
    uint64_t exits = 0, memory_fault_exits = 0, hypercall_exits = 0, mmio_exits = 0;
    uint64_t conversions_to_private = 0, conversions_to_shared = 0, pages_converted = 0;
    uint64_t punched_bytes = 0, discarded_bytes = 0, conversion_errors = 0;
  } stats_;
};

}  // namespace cvmsim::vmm
