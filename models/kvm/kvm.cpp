#include "models/kvm/kvm.h"

#include <algorithm>

namespace cvmsim::kvm {

// ---------------------------------------------------------------------------------------------
// Process: fd table

Process::Process(Kvm& kvm, HostMm& mm, std::string name)
    : kvm_(kvm), mm_(mm), name_(std::move(name)) {
  kvm_.add_process(this);
}

Process::~Process() {
  kvm_.remove_process(this);
  // Closing every fd at exit drops the references in fd order, as exit_files() does.
  while (!fds_.empty()) fds_.erase(fds_.begin());
}

int Process::install(std::shared_ptr<File> f) {
  int fd = 3;
  for (auto& [n, file] : fds_) {
    if (n != fd) break;
    ++fd;
  }
  fds_.emplace(fd, std::move(f));
  return fd;
}

std::shared_ptr<File> Process::get(int fd) const {
  auto it = fds_.find(fd);
  return it == fds_.end() ? nullptr : it->second;
}

Status Process::close(int fd) {
  auto it = fds_.find(fd);
  if (it == fds_.end()) return Errno::kEBADF;
  fds_.erase(it);  // the File's deleter runs the release when this was the last reference
  return {};
}

int Process::open_other(std::string what) {
  auto f = std::make_shared<File>();
  f->kind = File::kOther;
  f->what = std::move(what);
  return install(std::move(f));
}

Result<int> Process::receive_fd(const Process& from, int src_fd) {
  auto f = from.get(src_fd);
  if (!f) return Errno::kEBADF;
  return install(std::move(f));
}

// ---------------------------------------------------------------------------------------------
// Kvm

Kvm::Kvm(const Env& env, const KvmConfig& cfg) : env_(env), cfg_(cfg) {}

Kvm::~Kvm() = default;

void Kvm::register_backend(uint32_t type, BackendFactory make) {
  backends_[type] = std::move(make);
}

uint64_t Kvm::supported_vm_types_mask() const {
  uint64_t m = 0;
  for (auto& [t, f] : backends_)
    if (t < 64) m |= uint64_t{1} << t;
  return m;
}

namespace {

std::shared_ptr<File> make_file(Kvm& kvm, File::Kind kind) {
  auto* raw = new File();
  raw->kind = kind;
  return std::shared_ptr<File>(raw, [&kvm](File* f) {
    kvm.release(*f);
    delete f;
  });
}

}  // namespace

void Kvm::release(File& f) {
  switch (f.kind) {
    case File::kVm:
    case File::kVcpu:
      if (f.vm) f.vm->kvm_put();
      break;
    case File::kGmem:
      // kvm_gmem_release (§6.2): the file's own references (mmaps) may keep it alive.
      if (f.gmem) (void)f.gmem->close();
      f.gmem.reset();
      break;
    case File::kKvmDev:
    case File::kOther:
      break;
  }
}

void Kvm::destroy_vm(Vm& vm) {
  // kvm_destroy_vm: the backend reclaims what it owns, then memslots and tables go.
  vm.backend().teardown(vm);
  vm.backend().vm_destroy(vm);
  vm.destroy();
  auto it = std::find_if(vms_.begin(), vms_.end(), [&](const auto& p) { return p.get() == &vm; });
  if (it != vms_.end()) {
    destroyed_.push_back(std::move(*it));
    vms_.erase(it);
  }
  ++stats_.vms_destroyed;
}

int Kvm::open_dev_kvm(Process& p) {
  return p.install(make_file(*this, File::kKvmDev));
}

Result<int> Kvm::create_vm(Process& p, int kvm_fd, uint32_t type, std::string name, Principal who,
                           uint16_t asid, const config::Section* options) {
  charge(cfg_.costs.ioctl);
  ++stats_.ioctls;
  auto f = p.get(kvm_fd);
  if (!f) return Errno::kEBADF;
  if (f->kind != File::kKvmDev) return Errno::kENOTTY;
  auto it = backends_.find(type);
  if (it == backends_.end()) return Errno::kEINVAL;  // kvm_is_vm_type_supported
  Vm::Env env{env_.mem, env_.frames, p.mm(), env_.format, who, asid};
  auto vm = std::make_unique<Vm>(*this, it->second(options), env, cfg_, std::move(name));
  if (Status st = vm->init(); !st.ok()) return st.error();
  Vm* raw = vm.get();
  vms_.push_back(std::move(vm));
  auto file = make_file(*this, File::kVm);
  file->vm = raw;
  ++stats_.vms_created;
  return p.install(std::move(file));
}

Result<Vm*> Kvm::vm_ioctl(Process& p, int vm_fd) {
  charge(cfg_.costs.ioctl);
  ++stats_.ioctls;
  auto f = p.get(vm_fd);
  if (!f) return Errno::kEBADF;
  if (f->kind != File::kVm) return Errno::kENOTTY;
  // §3 rule 1: kvm->mm != current->mm, or the VM is dead -> EIO.
  if (&f->vm->mm() != &p.mm() || f->vm->dead()) return Errno::kEIO;
  return f->vm;
}

Result<int64_t> Kvm::check_extension(Process& p, int fd, uint32_t cap) {
  charge(cfg_.costs.ioctl);
  ++stats_.ioctls;
  auto f = p.get(fd);
  if (!f) return Errno::kEBADF;
  const Vm* vm = nullptr;  // nullptr: system scope (/dev/kvm)
  if (f->kind == File::kVm) {
    // On a VM fd this is a VM ioctl: kvm_vm_ioctl's generic check applies first (§3 rule 1,
    // kvm->mm != current->mm or VM dead -> EIO). /dev/kvm has no such check.
    if (&f->vm->mm() != &p.mm() || f->vm->dead()) return Errno::kEIO;
    vm = f->vm;
  } else if (f->kind != File::kKvmDev) {
    return Errno::kENOTTY;
  }
  switch (cap) {  // §2
    case KVM_CAP_USER_MEMORY2:
      return int64_t{1};
    case KVM_CAP_MEMORY_FAULT_INFO:
      return int64_t{1};
    case KVM_CAP_MEMORY_ATTRIBUTES:
      return static_cast<int64_t>(vm ? vm->supported_attributes() : KVM_MEMORY_ATTRIBUTE_PRIVATE);
    case KVM_CAP_GUEST_MEMFD:
      return int64_t{1};
    case KVM_CAP_GUEST_MEMFD_FLAGS: {
      uint64_t flags = GUEST_MEMFD_FLAG_MMAP;
      if (!vm || vm->backend().supports_gmem_init_shared()) flags |= GUEST_MEMFD_FLAG_INIT_SHARED;
      return static_cast<int64_t>(flags);
    }
    case KVM_CAP_VM_TYPES:
      return static_cast<int64_t>(supported_vm_types_mask());
    case KVM_CAP_PRE_FAULT_MEMORY:
      return int64_t{1};
    case KVM_CAP_EXIT_HYPERCALL:
      return static_cast<int64_t>(uint64_t{1} << KVM_HC_MAP_GPA_RANGE);
    default:
      return int64_t{0};
  }
}

Status Kvm::set_user_memory_region(Process& p, int vm_fd, const kvm_userspace_memory_region* r) {
  auto vm = vm_ioctl(p, vm_fd);
  if (!vm.ok()) return vm.error();
  if (!r) return Errno::kEFAULT;
  // The v1 struct is copied into a zeroed region2 (§4).
  kvm_userspace_memory_region2 r2;
  r2.slot = r->slot;
  r2.flags = r->flags;
  r2.guest_phys_addr = r->guest_phys_addr;
  r2.memory_size = r->memory_size;
  r2.userspace_addr = r->userspace_addr;
  return (*vm)->set_memory_region(r2, false,
                                  [](uint32_t) -> Result<GmemFile*> { return Errno::kEBADF; });
}

Status Kvm::set_user_memory_region2(Process& p, int vm_fd, const kvm_userspace_memory_region2* r) {
  auto vm = vm_ioctl(p, vm_fd);
  if (!vm.ok()) return vm.error();
  if (!r) return Errno::kEFAULT;
  auto resolve = [&p](uint32_t fd) -> Result<GmemFile*> {
    auto f = p.get(static_cast<int>(fd));
    if (!f) return Errno::kEBADF;                                   // fget fails
    if (f->kind != File::kGmem || !f->gmem) return Errno::kEINVAL;  // not a guest_memfd
    return f->gmem.get();
  };
  Status st = (*vm)->set_memory_region(*r, true, resolve);
  if (!st.ok()) ++stats_.ioctl_errors;
  return st;
}

Result<int> Kvm::create_guest_memfd(Process& p, int vm_fd, const kvm_create_guest_memfd* args) {
  auto vm = vm_ioctl(p, vm_fd);  // rule 1
  if (!vm.ok()) return vm.error();
  if (!args) return Errno::kEFAULT;  // rule 2
  Vm& v = **vm;
  uint64_t supported = GUEST_MEMFD_FLAG_MMAP;
  if (v.backend().supports_gmem_init_shared()) supported |= GUEST_MEMFD_FLAG_INIT_SHARED;
  auto file = GmemFile::create(
      v, *args, supported,
      GmemEnv{env_.mem, env_.frames, inode_numbers_, &gmem_totals_, cfg_.gmem_rebind,
              cfg_.gmem_zero_on_handout, cfg_.gmem_huge_folios});  // rules 3-5
  if (!file.ok()) {
    ++stats_.ioctl_errors;
    return file.error();
  }
  auto f = make_file(*this, File::kGmem);
  gmem_files_.emplace_back(*file, file->get());
  f->gmem = std::move(*file);
  ++stats_.gmem_created;
  return p.install(std::move(f));
}

Status Kvm::set_memory_attributes(Process& p, int vm_fd, const kvm_memory_attributes* a) {
  auto vm = vm_ioctl(p, vm_fd);
  if (!vm.ok()) return vm.error();
  if (!a) return Errno::kEFAULT;  // rule 1
  Status st = (*vm)->set_memory_attributes(*a);
  if (!st.ok()) ++stats_.ioctl_errors;
  return st;
}

Status Kvm::enable_cap(Process& p, int vm_fd, const kvm_enable_cap* cap) {
  auto vm = vm_ioctl(p, vm_fd);
  if (!vm.ok()) return vm.error();
  if (!cap) return Errno::kEFAULT;
  if (cap->flags) return Errno::kEINVAL;
  switch (cap->cap) {
    case KVM_CAP_EXIT_HYPERCALL:
      if (cap->args[0] & ~(uint64_t{1} << KVM_HC_MAP_GPA_RANGE)) return Errno::kEINVAL;
      (*vm)->exit_hypercall_mask = cap->args[0];
      return {};
    default:
      return Errno::kEINVAL;  // including KVM_CAP_MEMORY_FAULT_INFO (§2)
  }
}

Result<int> Kvm::create_vcpu(Process& p, int vm_fd, uint32_t id) {
  auto vm = vm_ioctl(p, vm_fd);
  if (!vm.ok()) return vm.error();
  auto v = (*vm)->create_vcpu(id);
  if (!v.ok()) return v.error();
  auto f = make_file(*this, File::kVcpu);
  f->vm = *vm;
  f->vcpu = *v;
  return p.install(std::move(f));
}

Status Kvm::memory_encrypt_op(Process& p, int vm_fd, kvm_memory_encrypt_cmd* cmd) {
  auto vm = vm_ioctl(p, vm_fd);
  if (!vm.ok()) return vm.error();
  if (!cmd) return Errno::kEFAULT;  // copy_from_user of the command
  Status st = (*vm)->backend().mem_enc_ioctl(**vm, p.mm(), *cmd);
  if (!st.ok()) ++stats_.ioctl_errors;
  return st;
}

Status Kvm::pre_fault_memory(Process& p, int vcpu_fd, kvm_pre_fault_memory* r) {
  charge(cfg_.costs.ioctl);
  ++stats_.ioctls;
  auto f = p.get(vcpu_fd);
  if (!f) return Errno::kEBADF;
  if (f->kind != File::kVcpu) return Errno::kENOTTY;
  if (&f->vm->mm() != &p.mm() || f->vm->dead()) return Errno::kEIO;
  if (!r) return Errno::kEFAULT;
  return f->vcpu->pre_fault_memory(*r);
}

namespace {

Result<GmemFile*> gmem_file(const Process& p, int fd) {
  auto f = p.get(fd);
  if (!f) return Errno::kEBADF;
  if (f->kind != File::kGmem || !f->gmem) return Errno::kEOPNOTSUPP;
  return f->gmem.get();
}

}  // namespace

Status Kvm::fallocate(Process& p, int fd, int mode, int64_t offset, int64_t len) {
  ++stats_.ioctls;
  charge(cfg_.costs.ioctl);
  auto g = gmem_file(p, fd);
  if (!g.ok()) return g.error();
  return (*g)->fallocate(mode, offset, len);
}

Result<uint64_t> Kvm::read(Process& p, int fd, uint64_t) {
  ++stats_.ioctls;
  charge(cfg_.costs.ioctl);
  auto g = gmem_file(p, fd);
  if (!g.ok()) return g.error();
  if (Status st = (*g)->read(0); !st.ok()) return st.error();  // no read file op (§6.1)
  return uint64_t{0};
}

Result<uint64_t> Kvm::write(Process& p, int fd, uint64_t) {
  ++stats_.ioctls;
  charge(cfg_.costs.ioctl);
  auto g = gmem_file(p, fd);
  if (!g.ok()) return g.error();
  if (Status st = (*g)->write(0); !st.ok()) return st.error();  // no write file op (§6.1)
  return uint64_t{0};
}

Status Kvm::ftruncate(Process& p, int fd, int64_t len) {
  ++stats_.ioctls;
  charge(cfg_.costs.ioctl);
  auto g = gmem_file(p, fd);
  if (!g.ok()) return g.error();
  return (*g)->ftruncate(len);  // setattr refuses: the size is immutable (§3, §6.1)
}

Result<GmemStatBuf> Kvm::fstat(Process& p, int fd) {
  ++stats_.ioctls;
  charge(cfg_.costs.ioctl);
  auto g = gmem_file(p, fd);
  if (!g.ok()) return g.error();
  return (*g)->fstat();
}

Vm* Kvm::vm_of(const Process& p, int fd) const {
  auto f = p.get(fd);
  return f && (f->kind == File::kVm || f->kind == File::kVcpu) ? f->vm : nullptr;
}

Vcpu* Kvm::vcpu_of(const Process& p, int fd) const {
  auto f = p.get(fd);
  return f && f->kind == File::kVcpu ? f->vcpu : nullptr;
}

std::shared_ptr<GmemFile> Kvm::gmem_of(const Process& p, int fd) const {
  auto f = p.get(fd);
  return f && f->kind == File::kGmem ? f->gmem : nullptr;
}

void Kvm::describe_stats(StatVisitor& v) const {
  v.counter("ioctls", stats_.ioctls, "calls", "KVM ioctls and guest_memfd file operations issued");
  v.counter("ioctl_errors", stats_.ioctl_errors, "calls",
            "failed KVM_SET_USER_MEMORY_REGION2, KVM_CREATE_GUEST_MEMFD and "
            "KVM_SET_MEMORY_ATTRIBUTES calls");
  v.counter("vms_created", stats_.vms_created, "VMs", "KVM_CREATE_VM successes");
  v.counter("vms_destroyed", stats_.vms_destroyed, "VMs",
            "VMs destroyed after their last reference");
  v.counter("gmem_created", stats_.gmem_created, "files", "guest_memfd files created");
  PrefixedStats g(v, "guest_memfd");
  gmem_totals_.describe_stats(g);
}

}  // namespace cvmsim::kvm
