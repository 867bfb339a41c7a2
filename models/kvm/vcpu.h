// A KVM vCPU (struct kvm_vcpu): the exit handler the hw vCPU core reports to (hw/cpu/vm_exit.h),
// its kvm_run page, and the exits to userspace. KVM_RUN is modelled the way a VMM's vCPU thread
// uses it: the thread that issued KVM_RUN handles each exit in userspace (UserspaceExitHandler,
// implemented by models/vmm), then issues KVM_RUN again; the hw core simply retries or resumes.
#pragma once

#include <cstdint>
#include <string>

#include "hw/cpu/vm_exit.h"
#include "hw/mmu/pwc.h"
#include "hw/mmu/tlb.h"
#include "models/kvm/uapi.h"

namespace cvmsim::kvm {

class Vm;
class Vcpu;

// The userspace side of KVM_RUN. `err` is 0 for a normal exit or the errno KVM_RUN returned
// (EFAULT / EHWPOISON come with KVM_EXIT_MEMORY_FAULT, §8). Return true to run the vCPU again;
// false stops it, with `stop_reason` saying why.
class UserspaceExitHandler {
 public:
  virtual ~UserspaceExitHandler() = default;
  virtual bool on_exit(Vcpu& vcpu, int err, kvm_run& run, std::string& stop_reason) = 0;
};

class Vcpu final : public ExitHandler {
 public:
  Vcpu(Vm& vm, uint32_t id);
  uint32_t id() const { return id_; }
  Vm& vm() { return vm_; }
  kvm_run& run() { return run_; }

  // The hw core's translation caches, so that KVM's TLB flushes reach them.
  void attach(Tlb* tlb, Pwc* pwc) {
    tlb_ = tlb;
    pwc_ = pwc;
  }
  void set_userspace(UserspaceExitHandler* u) { user_ = u; }
  const Tlb* tlb() const { return tlb_; }
  const Vm& vm() const { return vm_; }
  // INVEPT/INVVPID of this vCPU's tag: every cached translation of the VM.
  void flush_tlb();

  // hw -> KVM: a stage-2 fault, hypercall or bus error of this vCPU.
  ExitAction handle_exit(unsigned vcpu_id, const VmExit& e) override;
  // hw -> KVM: a machine check; the backend decides (TDX: the TD is FATAL, the vCPU stops).
  ExitAction handle_machine_check(unsigned vcpu_id, const MachineCheck& mc) override;

  // KVM_PRE_FAULT_MEMORY after copy_from_user (§9); updates r in place.
  Status pre_fault_memory(kvm_pre_fault_memory& r);

  struct Stats {
    uint64_t exits_stage2 = 0, exits_hypercall = 0, exits_userspace = 0, memory_fault_exits = 0;
    uint64_t hypercall_exits = 0, mmio_exits = 0, hypercalls_enosys = 0, hypercalls_einval = 0;
    uint64_t tlb_flushes = 0, prefault_calls = 0, prefault_bytes = 0;
    uint64_t private_faults_below_kvm =
        0;  // private faults the backend handled (TDX: guest ACCEPT)
  };
  const Stats& stats() const { return stats_; }
  void describe_stats(StatVisitor& v) const;

 private:
  ExitAction to_userspace(int err, ExitAction::Kind then);
  ExitAction handle_exit_at(unsigned vcpu_id, const VmExit& e);

  Vm& vm_;
  uint32_t id_;
  kvm_run run_;
  Tlb* tlb_ = nullptr;
  Pwc* pwc_ = nullptr;
  UserspaceExitHandler* user_ = nullptr;
  Stats stats_;
};

}  // namespace cvmsim::kvm
