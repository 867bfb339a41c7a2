// The KVM module and its uAPI facade: /dev/kvm, VM, vCPU and guest_memfd file descriptors in
// per-process fd tables, and one method per ioctl with Linux's validation order and errno
// (kvm-guest-memfd.md §2-§9). Scenario steps, the VMM model and tests call these; a pointer
// argument that is null models a failed copy_from_user (EFAULT).
//
// Files are reference counted as in Linux: a process's fd holds a reference, and so does each
// mmap of a guest_memfd. A VM lives while its fd, a vCPU fd or a guest_memfd file holds it
// (§6.2: the file pins its VM).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hw/base/cycles.h"
#include "hw/base/principal.h"
#include "hw/base/result.h"
#include "hw/base/schema_json.h"
#include "hw/base/stat_visitor.h"
#include "hw/base/state_machine.h"
#include "hw/base/trace_sink.h"
#include "hw/memory/frame_allocator.h"
#include "hw/memory/phys_mem.h"
#include "hw/mmu/pte_format.h"
#include "models/host/host_mm.h"
#include "models/kvm/backend.h"
#include "models/kvm/guest_memfd.h"
#include "models/kvm/kvm_config.h"
#include "models/kvm/uapi.h"
#include "models/kvm/vcpu.h"
#include "models/kvm/vm.h"

namespace cvmsim::kvm {

class Kvm;

// The timed shell's way to let simulated time pass inside a call (ARCHITECTURE.md principles 1
// and 2: KVM and the backends are plain C++, the shell owns time). A backend calls it, through
// Kvm::yield, while a firmware call holds its locks (tdx-snp.md A5: a SEAMCALL or TDCALL is "in
// flight" for its cost), and to spin while it waits for another thread (an IPI to be taken, a
// zap to finish). The shell advances the calling thread's time by `c` (a vCPU first hands over
// the time it ran ahead under temporal decoupling), letting every other thread run meanwhile.
// Returns false if time cannot pass (no shell: pure tests; a test's fake that has nothing left to
// run), so that a caller waiting for another thread stops waiting.
class TimeHook {
 public:
  virtual ~TimeHook() = default;
  virtual bool yield(Cycles c) = 0;
};

// What an fd refers to.
struct File {
  enum Kind : uint8_t { kKvmDev, kVm, kVcpu, kGmem, kOther };
  Kind kind = kOther;
  Vm* vm = nullptr;                // kVm, kVcpu
  Vcpu* vcpu = nullptr;            // kVcpu
  std::shared_ptr<GmemFile> gmem;  // kGmem
  std::string what;                // kOther: "memfd", "eventfd", ...
};

// A host process: its address space and fd table (current->mm, current->files).
class Process {
 public:
  Process(Kvm& kvm, HostMm& mm, std::string name);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  HostMm& mm() { return mm_; }
  const HostMm& mm() const { return mm_; }
  const std::string& name() const { return name_; }
  // The lowest free fd (as Linux allocates), starting at 3.
  int install(std::shared_ptr<File> f);
  std::shared_ptr<File> get(int fd) const;
  // close(2): EBADF if fd is not open.
  Status close(int fd);
  // A non-KVM file (memfd_create, eventfd...) for tests of "not a guest_memfd".
  int open_other(std::string what);
  // SCM_RIGHTS: a new fd here for another process's file. EBADF if src_fd is not open there.
  Result<int> receive_fd(const Process& from, int src_fd);
  size_t open_fds() const { return fds_.size(); }

 private:
  Kvm& kvm_;
  HostMm& mm_;
  std::string name_;
  std::map<int, std::shared_ptr<File>> fds_;
};

class Kvm {
 public:
  struct Env {
    PhysMem& mem;
    FrameAllocator& frames;
    Stage2Format format;
  };
  // A VM type's backend for a new VM, given the VM's options (its backend section of the
  // scenario; nullptr: defaults, as for a VM a step creates).
  using BackendFactory = std::function<std::unique_ptr<KvmBackend>(const config::Section*)>;

  Kvm(const Env& env, const KvmConfig& cfg);
  ~Kvm();
  Kvm(const Kvm&) = delete;
  Kvm& operator=(const Kvm&) = delete;

  // A VM type becomes creatable (and appears in KVM_CAP_VM_TYPES) when its backend registers.
  void register_backend(uint32_t type, BackendFactory make);
  // The same for a backend that takes no options.
  void register_backend(uint32_t type, std::unique_ptr<KvmBackend> (*make)()) {
    register_backend(type, [make](const config::Section*) { return make(); });
  }
  const KvmConfig& config() const { return cfg_; }

  // ---- /dev/kvm ----
  int open_dev_kvm(Process& p);
  // KVM_CREATE_VM. EINVAL for an unknown or unregistered type. The VM's name, principal and
  // TLB tag are the simulator's (Linux has none of them).
  // `options` (not part of the ioctl: what the VMM passes with the VM type's init command, e.g.
  // KVM_TDX_INIT_VM's attributes) goes to the backend's factory.
  Result<int> create_vm(Process& p, int kvm_fd, uint32_t type, std::string name, Principal who,
                        uint16_t asid, const config::Section* options = nullptr);
  // KVM_CHECK_EXTENSION on /dev/kvm (system scope) or on a VM fd (§2).
  Result<int64_t> check_extension(Process& p, int fd, uint32_t cap);

  // ---- VM ioctls ----
  Status set_user_memory_region(Process& p, int vm_fd, const kvm_userspace_memory_region* r);
  Status set_user_memory_region2(Process& p, int vm_fd, const kvm_userspace_memory_region2* r);
  Result<int> create_guest_memfd(Process& p, int vm_fd, const kvm_create_guest_memfd* args);
  Status set_memory_attributes(Process& p, int vm_fd, const kvm_memory_attributes* a);
  Status enable_cap(Process& p, int vm_fd, const kvm_enable_cap* cap);
  Result<int> create_vcpu(Process& p, int vm_fd, uint32_t id);
  // KVM_MEMORY_ENCRYPT_OP: the VM type's encryption command (KvmBackend::mem_enc_ioctl).
  Status memory_encrypt_op(Process& p, int vm_fd, kvm_memory_encrypt_cmd* cmd);

  // ---- vCPU ioctls ----
  Status pre_fault_memory(Process& p, int vcpu_fd, kvm_pre_fault_memory* r);

  // ---- guest_memfd file operations (§6.1) ----
  Status fallocate(Process& p, int fd, int mode, int64_t offset, int64_t len);
  Result<uint64_t> read(Process& p, int fd, uint64_t len);   // no read op: EINVAL
  Result<uint64_t> write(Process& p, int fd, uint64_t len);  // no write op: EINVAL
  Status ftruncate(Process& p, int fd, int64_t len);         // size is immutable: EINVAL
  Result<GmemStatBuf> fstat(Process& p, int fd);

  // ---- Lookups for the platform and the VMM ----
  Vm* vm_of(const Process& p, int fd) const;
  Vcpu* vcpu_of(const Process& p, int fd) const;
  std::shared_ptr<GmemFile> gmem_of(const Process& p, int fd) const;
  const std::vector<std::unique_ptr<Vm>>& vms() const { return vms_; }
  // f(const GmemFile&) for every guest_memfd file not yet released (checkers, graphs).
  // (Single-threaded: an unexpired weak reference means the file is alive for the call, so no
  // reference is taken; checkers call this for every leaf they look at.)
  template <class F>
  void for_each_gmem(F&& f) const {
    for (const auto& [w, raw] : gmem_files_)
      if (!w.expired() && !raw->released()) f(static_cast<const GmemFile&>(*raw));
  }
  // Every process that ever opened /dev/kvm and still exists (their address spaces).
  const std::vector<Process*>& processes() const { return processes_; }
  void add_process(Process* p) { processes_.push_back(p); }
  void remove_process(Process* p) { std::erase(processes_, p); }

  // ---- Trace (ARCHITECTURE.md principle 7) ----
  // `now` gives the current simulated time in ps (the timed shell owns time).
  void set_trace(TraceSink* sink, std::function<uint64_t()> now) {
    trace_ = sink;
    now_ = std::move(now);
  }
  bool tracing() const { return trace_ && trace_->enabled(); }
  void trace(std::string_view who, std::string_view event, const std::string& details) {
    if (tracing())
      trace_->event(time_override_ ? time_override_ : now_ ? now_() : 0, who, event, details);
  }
  // While a vCPU's exit is handled, events carry that vCPU's local time (it runs ahead of the
  // global time under temporal decoupling); 0 restores the global clock.
  void set_time_override(uint64_t ps) { time_override_ = ps; }

  // ---- Costs ----
  void charge(Cycles c) { pending_ += c; }
  // Installed by the timed shell (or a test's fake); null: nothing is ever in flight.
  void set_time_hook(TimeHook* h) { time_hook_ = h; }
  bool has_time_hook() const { return time_hook_ != nullptr; }
  // Lets `in_flight` cycles pass for the calling thread, after the cost charged so far (which is
  // taken off the meter: it has been spent). A vCPU's exit keeps tracing at its own time. False
  // (and nothing taken) without a hook; see TimeHook.
  bool yield(Cycles in_flight) {
    if (!time_hook_) return false;
    const Cycles c = take_cost() + in_flight;
    const uint64_t override_was = time_override_;
    time_override_ = 0;  // other threads trace at their own time meanwhile
    const bool passed = time_hook_->yield(c);
    if (override_was) time_override_ = now_ ? now_() : override_was;  // synchronised now
    return passed;
  }
  // The cycles charged since the last call; the caller's thread advances by them.
  Cycles take_cost() {
    const Cycles c = pending_;
    pending_ = Cycles(0);
    return c;
  }

  // ---- Transition coverage (hw/base/state_machine.h, docs/coverage.md) ----
  // The counts the VMs record their GFN transitions into: this Kvm's own, unless set_coverage
  // (before the first VM is created) names the run's, which must outlive the Kvm (teardown
  // records too); null goes back to the Kvm's own.
  sm::Coverage& coverage() { return *coverage_; }
  const sm::Coverage& coverage() const { return *coverage_; }
  void set_coverage(sm::Coverage* c) { coverage_ = c ? c : &own_coverage_; }

  // A file's last reference dropped (called by File holders).
  void release(File& f);
  // A VM's last user dropped: kvm_destroy_vm.
  void destroy_vm(Vm& vm);

  void describe_stats(StatVisitor& v) const;
  uint64_t supported_vm_types_mask() const;
  // The invariants of every registered backend (each backend instantiated once to ask).
  std::vector<InvariantDef> backend_invariants() const {
    std::vector<InvariantDef> out;
    for (const auto& [type, make] : backends_)
      for (auto& d : make(nullptr)->invariants()) out.push_back(std::move(d));
    return out;
  }

 private:
  // The generic VM-ioctl check (§3 rule 1): VM dead or another process's VM -> EIO.
  Result<Vm*> vm_ioctl(Process& p, int vm_fd);

  Env env_;
  KvmConfig cfg_;
  sm::Coverage own_coverage_;  // before the VMs: destroyed after them
  sm::Coverage* coverage_ = &own_coverage_;
  std::map<uint32_t, BackendFactory> backends_;
  std::vector<std::unique_ptr<Vm>> vms_;
  std::map<const Vm*, const HostMm*> vm_mm_;
  Cycles pending_{0};
  TimeHook* time_hook_ = nullptr;
  TraceSink* trace_ = nullptr;
  std::function<uint64_t()> now_;
  uint64_t time_override_ = 0;
  std::vector<std::unique_ptr<Vm>>
      destroyed_;  // torn down, kept for late arch_gmem_invalidate calls
  GmemInodeNumbers inode_numbers_;
  std::vector<std::pair<std::weak_ptr<GmemFile>, GmemFile*>> gmem_files_;
  std::vector<Process*> processes_;
  GmemStats gmem_totals_;
  struct Stats {
    uint64_t ioctls = 0, ioctl_errors = 0, vms_created = 0, vms_destroyed = 0, gmem_created = 0;
  } stats_;
};

}  // namespace cvmsim::kvm
