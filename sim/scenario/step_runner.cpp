#include "sim/scenario/step_runner.h"

#include <cinttypes>
#include <cstdio>
#include <sstream>

#include "hw/base/pattern.h"
#include "hw/memory/initiator.h"
#include "models/kvm/uapi.h"

namespace cvmsim::scenario {

using config::StepConfig;
using config::StepOp;
using namespace cvmsim::kvm;

// ---------------------------------------------------------------------------------------------
// ExpectationLog

namespace {

std::string op_name(StepOp op) {
  return std::string(config::step_op_info(op).name);
}

std::string hex(uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%" PRIx64, v);
  return b;
}

// A host access the platform's host checks refused (hw/memory/access_check.h).
std::string refused_message(const AccessFault& f) {
  const char* what = f.kind == AccessFault::Kind::kPageFault     ? "#PF"
                     : f.kind == AccessFault::Kind::kStage2Abort ? "a stage-2 abort"
                                                                 : "an IOMMU fault";
  return "the host's access to hpa " + hex(f.hpa.value()) + " was refused by " +
         std::string(f.check) + ": " + what + " with error code " + hex(f.error_code);
}

}  // namespace

void ExpectationLog::met(const StepConfig& s, size_t index) {
  results_.push_back({index, s.actor, op_name(s.op), s.label, true, {}});
}

void ExpectationLog::failed(const StepConfig& s, size_t index, std::string message) {
  results_.push_back({index, s.actor, op_name(s.op), s.label, false, std::move(message)});
}

size_t ExpectationLog::failures() const {
  size_t n = 0;
  for (const auto& r : results_) n += !r.met;
  return n;
}

std::string ExpectationLog::describe(const ExpectationResult& r) {
  std::string s = "step " + std::to_string(r.step) + " (" + r.actor + " " + r.op;
  if (!r.label.empty()) s += " \"" + r.label + "\"";
  return s + "): " + r.message;
}

// ---------------------------------------------------------------------------------------------
// StepExecutor

StepExecutor::StepExecutor(Kvm& kvm, const config::ScenarioConfig& sc, std::vector<vmm::Vmm*> vmms,
                           ExpectationLog& log)
    : kvm_(kvm), sc_(sc), log_(log) {
  for (size_t i = 0; i < vmms.size(); ++i) {
    vmm::Vmm* v = vmms[i];
    vms_[sc.vms[i].name] = VmHandle{&v->process(), v->vm_fd(), v, sc.vms[i].type};
    for (size_t r = 0; r < sc.vms[i].memory.size(); ++r)
      if (v->gmem_fd(static_cast<unsigned>(r)) >= 0)
        gmems_[sc.vms[i].name + ".mem" + std::to_string(r)] =
            GmemHandle{&v->process(), v->gmem_fd(static_cast<unsigned>(r))};
  }
  next_principal_ = static_cast<uint32_t>(vmms.size());
}

StepExecutor::~StepExecutor() {
  for (auto& [name, m] : maps_) (void)m.file->munmap(m.map);
  for (auto& m : shadowed_maps_) (void)m.file->munmap(m.map);
}

VmHandle& StepExecutor::vm_for(const StepConfig& s) {
  if (s.has("vm")) return vms_.at(s.vm);
  return vms_.at(sc_.vms.front().name);
}

StepExecutor::GmemHandle StepExecutor::gmem(const std::string& name) {
  auto it = gmems_.find(name);
  return it == gmems_.end() ? GmemHandle{} : it->second;
}

bool StepExecutor::check_errno(const StepConfig& s, size_t index, const Error* err,
                               const std::string& what) {
  const std::string got = err ? err->to_string() : "OK";
  std::string want = s.expect.has("errno") ? s.expect.errno_name : "OK";
  if (err && !err->is_errno()) {
    log_.failed(s, index, what + " failed with " + got + ", expected " + want);
    return false;
  }
  const std::string got_name = err ? std::string(errno_name(err->errno_value())) : "OK";
  last_errno_ = got_name;
  if (got_name != want) {
    std::string m = what + " returned " + got_name + ", expected " + want;
    if (!s.expect.has("errno")) m += " (add expect.errno to expect a failure)";
    log_.failed(s, index, m);
    return false;
  }
  return true;
}

void StepExecutor::check_data(const StepConfig& s, size_t index, uint64_t addr,
                              std::span<const uint8_t> data) {
  if (!s.expect.has("pattern") && !s.expect.has("value")) {
    log_.met(s, index);
    return;
  }
  if (auto bad = check_pattern(s.expect.pattern, s.expect.value, addr, data)) {
    char m[200];
    std::snprintf(m, sizeof m, "read 0x%02x at byte %zu (address %s), expected 0x%02x (%s pattern)",
                  data[*bad], *bad, hex(addr + *bad).c_str(),
                  pattern_byte(s.expect.pattern, s.expect.value, addr + *bad),
                  std::string(config::enum_to_name(std::span<const config::EnumName<PatternKind>>(
                                                       config::kStepPatternNames),
                                                   s.expect.pattern))
                      .c_str());
    log_.failed(s, index, m);
    return;
  }
  log_.met(s, index);
}

uint64_t StepExecutor::userspace_addr(const StepConfig& s, VmHandle& vm) {
  if (s.has("hva") && !s.hva.empty()) return *config::parse_size(s.hva);
  if (vm.vmm && vm.vmm->region_of(Gpa(s.gpa)) >= 0) return vm.vmm->hva_of(Gpa(s.gpa)).value();
  // No region there: fresh anonymous memory in the VM's process, as a VMM would allocate.
  auto h = vm.proc->mm().mmap_anon(s.size ? s.size : kPageBytes);
  return h.ok() ? h->value() : 0;
}

Cycles StepExecutor::execute(size_t index) {
  const StepConfig& s = sc_.steps[index];
  (void)kvm_.take_cost();
  last_errno_.clear();
  std::string bad;
  const auto parsed = config::parse_step_flags(s.op, s.flags, false, &bad);
  const bool flags_ok = parsed.has_value();
  const uint64_t flags = parsed.value_or(0);
  auto status_step = [&](const Status& st, const std::string& what) {
    if (check_errno(s, index, st.ok() ? nullptr : &st.error(), what)) log_.met(s, index);
  };
  if (!flags_ok) {
    log_.failed(s, index, "cannot parse flags \"" + s.flags + "\"");
    return kvm_.take_cost();
  }
  // A name the file refers to that no step has created yet: the actors raced (order them with
  // a barrier). A closed one stays known and gives EBADF, as a closed fd does.
  if (s.has("guest_memfd") && !gmems_.count(s.guest_memfd) && !closed_.count(s.guest_memfd)) {
    log_.failed(s, index,
                "guest_memfd \"" + s.guest_memfd +
                    "\" does not exist yet when this step runs (order the steps with a barrier)");
    return kvm_.take_cost();
  }
  if (s.has("vm") && !vms_.count(s.vm)) {
    log_.failed(s, index,
                "VM \"" + s.vm +
                    "\" does not exist yet when this step runs (order the steps with a barrier)");
    return kvm_.take_cost();
  }
  switch (s.op) {
    case StepOp::kCreateVm: {
      VmHandle& owner = vm_for(s);
      const uint32_t type = backend::find(s.vm_type)->vm_type;
      const int kfd = kvm_.open_dev_kvm(*owner.proc);
      auto fd = kvm_.create_vm(*owner.proc, kfd, type, s.as, vm_principal(next_principal_),
                               static_cast<uint16_t>(next_principal_ + 1));
      // The VM fd keeps the VM; the /dev/kvm fd is not needed after KVM_CREATE_VM (left open,
      // every create_vm step would add one to the process's fd table, which cvmsim explore's
      // VM lifecycle operations made grow without bound).
      (void)owner.proc->close(kfd);
      ++next_principal_;
      // What the call did is recorded whether or not the expectation is met.
      if (fd.ok()) vms_[s.as] = VmHandle{owner.proc, *fd, nullptr, type};
      if (check_errno(s, index, fd.ok() ? nullptr : &fd.error(), "KVM_CREATE_VM"))
        log_.met(s, index);
      break;
    }
    case StepOp::kCheckExtension: {
      VmHandle& vm = vm_for(s);
      int fd = vm.vm_fd;
      if (!s.has("vm")) fd = kvm_.open_dev_kvm(*vm.proc);
      auto r = kvm_.check_extension(*vm.proc, fd, *kvm::parse_capability(s.cap));
      if (!s.has("vm")) (void)vm.proc->close(fd);
      if (!check_errno(s, index, r.ok() ? nullptr : &r.error(),
                       "KVM_CHECK_EXTENSION(" + s.cap + ")"))
        break;
      if (s.expect.has("value") && static_cast<uint64_t>(*r) != s.expect.value)
        log_.failed(s, index,
                    s.cap + " returned " + std::to_string(*r) + ", expected " +
                        std::to_string(s.expect.value));
      else
        log_.met(s, index);
      break;
    }
    case StepOp::kSetUserMemoryRegion: {
      VmHandle& vm = vm_for(s);
      kvm_userspace_memory_region r;
      r.slot = static_cast<uint32_t>(s.slot);
      r.flags = static_cast<uint32_t>(flags);
      r.guest_phys_addr = s.gpa;
      r.memory_size = s.size;
      r.userspace_addr = userspace_addr(s, vm);
      status_step(kvm_.set_user_memory_region(*vm.proc, vm.vm_fd, &r),
                  "KVM_SET_USER_MEMORY_REGION");
      break;
    }
    case StepOp::kSetUserMemoryRegion2:
    case StepOp::kDeleteMemslot: {
      VmHandle& vm = vm_for(s);
      kvm_userspace_memory_region2 r;
      r.slot = static_cast<uint32_t>(s.slot);
      if (s.op == StepOp::kSetUserMemoryRegion2) {
        r.flags = static_cast<uint32_t>(flags);
        r.guest_phys_addr = s.gpa;
        r.memory_size = s.size;
        r.userspace_addr = s.size ? userspace_addr(s, vm) : 0;
        r.guest_memfd_offset = s.offset;
        r.guest_memfd = ~0u;
        if (s.has("guest_memfd")) {
          GmemHandle g = gmem(s.guest_memfd);
          int fd = g.fd;
          // A guest_memfd of another VMM process reaches this one over a unix socket
          // (SCM_RIGHTS), as a compromised host would pass it: same open file, new fd here.
          if (g.proc && g.proc != vm.proc) {
            auto passed = vm.proc->receive_fd(*g.proc, g.fd);
            fd = passed.ok() ? *passed : -1;
          }
          r.guest_memfd = static_cast<uint32_t>(fd);
        }
      } else {
        r.guest_memfd = ~0u;
      }
      status_step(kvm_.set_user_memory_region2(*vm.proc, vm.vm_fd, &r),
                  "KVM_SET_USER_MEMORY_REGION2");
      break;
    }
    case StepOp::kCreateGuestMemfd: {
      VmHandle& vm = vm_for(s);
      kvm_create_guest_memfd g;
      g.size = s.size;
      g.flags = flags;
      auto fd = kvm_.create_guest_memfd(*vm.proc, vm.vm_fd, &g);
      if (fd.ok()) gmems_[s.as] = GmemHandle{vm.proc, *fd};  // whether or not it was expected
      if (check_errno(s, index, fd.ok() ? nullptr : &fd.error(), "KVM_CREATE_GUEST_MEMFD"))
        log_.met(s, index);
      break;
    }
    case StepOp::kSetMemoryAttributes: {
      VmHandle& vm = vm_for(s);
      kvm_memory_attributes a;
      a.address = s.gpa;
      a.size = s.size;
      a.attributes = config::parse_step_flags(s.op, s.attributes, true, nullptr)
                         .value_or(0);  // validated at load
      a.flags = flags;
      status_step(kvm_.set_memory_attributes(*vm.proc, vm.vm_fd, &a), "KVM_SET_MEMORY_ATTRIBUTES");
      break;
    }
    case StepOp::kEnableCap: {
      VmHandle& vm = vm_for(s);
      kvm_enable_cap c;
      c.cap = *kvm::parse_capability(s.cap);
      c.flags = static_cast<uint32_t>(flags);
      c.args[0] = s.arg;
      status_step(kvm_.enable_cap(*vm.proc, vm.vm_fd, &c), "KVM_ENABLE_CAP(" + s.cap + ")");
      break;
    }
    case StepOp::kPreFaultMemory: {
      VmHandle& vm = vm_for(s);
      kvm_pre_fault_memory r;
      r.gpa = s.gpa;
      r.size = s.size;
      r.flags = flags;
      const int fd = vm.vmm && s.vcpu < vm.vmm->num_vcpus()
                         ? vm.vmm->vcpu_fd(static_cast<unsigned>(s.vcpu))
                         : -1;
      if (fd < 0) {
        log_.failed(s, index, "the VM has no vCPU " + std::to_string(s.vcpu));
        break;
      }
      Status st = kvm_.pre_fault_memory(*vm.proc, fd, &r);
      if (!check_errno(s, index, st.ok() ? nullptr : &st.error(), "KVM_PRE_FAULT_MEMORY")) break;
      if (s.expect.has("gpa") && r.gpa != s.expect.gpa)
        log_.failed(s, index,
                    "gpa after the call is " + hex(r.gpa) + ", expected " + hex(s.expect.gpa));
      else if (s.expect.has("size") && r.size != s.expect.size)
        log_.failed(s, index,
                    "size left after the call is " + std::to_string(r.size) + ", expected " +
                        std::to_string(s.expect.size));
      else
        log_.met(s, index);
      break;
    }
    case StepOp::kFallocate: {
      GmemHandle g = gmem(s.guest_memfd);
      if (!g.proc) {
        Error e = Errno::kEBADF;
        if (check_errno(s, index, &e, "fallocate")) log_.met(s, index);
        break;
      }
      const int mode = s.flags.empty() ? FALLOC_FL_KEEP_SIZE : static_cast<int>(flags);
      status_step(kvm_.fallocate(*g.proc, g.fd, mode, static_cast<int64_t>(s.offset),
                                 static_cast<int64_t>(s.size)),
                  "fallocate");
      break;
    }
    case StepOp::kClose: {
      if (s.has("guest_memfd")) {
        GmemHandle g = gmem(s.guest_memfd);
        status_step(g.proc ? g.proc->close(g.fd) : Status(Errno::kEBADF),
                    "close(" + s.guest_memfd + ")");
        gmems_.erase(s.guest_memfd);
        closed_.insert(s.guest_memfd);
      } else {
        // The VM outlives its fd while vCPU fds or guest_memfd files hold it (kvm-guest-memfd.md
        // §6.2). The handle forgets the fd whatever the expectation: later steps get EBADF, not
        // a file that reuses the number.
        VmHandle& vm = vm_for(s);
        Status st = vm.vmm ? vm.vmm->close_vm_fd() : vm.proc->close(vm.vm_fd);
        if (st.ok()) vm.vm_fd = -1;
        status_step(st, "close(" + s.vm + ")");
      }
      break;
    }
    case StepOp::kGmemRead:
    case StepOp::kGmemWrite: {
      GmemHandle g = gmem(s.guest_memfd);
      if (!g.proc) {
        Error e = Errno::kEBADF;
        if (check_errno(s, index, &e, "read/write")) log_.met(s, index);
        break;
      }
      auto r = s.op == StepOp::kGmemRead ? kvm_.read(*g.proc, g.fd, s.size)
                                         : kvm_.write(*g.proc, g.fd, s.size);
      if (check_errno(s, index, r.ok() ? nullptr : &r.error(),
                      s.op == StepOp::kGmemRead ? "read" : "write"))
        log_.met(s, index);
      break;
    }
    case StepOp::kGmemTruncate: {
      GmemHandle g = gmem(s.guest_memfd);
      if (!g.proc) {
        Error e = Errno::kEBADF;
        if (check_errno(s, index, &e, "ftruncate")) log_.met(s, index);
        break;
      }
      status_step(kvm_.ftruncate(*g.proc, g.fd, static_cast<int64_t>(s.size)), "ftruncate");
      break;
    }
    case StepOp::kGmemFstat: {
      GmemHandle g = gmem(s.guest_memfd);
      if (!g.proc) {
        Error e = Errno::kEBADF;
        if (check_errno(s, index, &e, "fstat")) log_.met(s, index);
        break;
      }
      auto r = kvm_.fstat(*g.proc, g.fd);
      if (!check_errno(s, index, r.ok() ? nullptr : &r.error(), "fstat")) break;
      if (s.expect.has("size") && static_cast<uint64_t>(r->st_size) != s.expect.size)
        log_.failed(s, index,
                    "st_size is " + std::to_string(r->st_size) + ", expected " +
                        std::to_string(s.expect.size));
      else
        log_.met(s, index);
      break;
    }
    case StepOp::kConvert: {
      VmHandle& vm = vm_for(s);
      if (!vm.vmm) {
        log_.failed(s, index, "convert needs a VM set up by the VMM (declared in /vms)");
        break;
      }
      const int e = vm.vmm->convert(Gpa(s.gpa), s.size, s.to == "private");
      Error err = static_cast<Errno>(e);
      if (check_errno(s, index, e ? &err : nullptr, "conversion")) log_.met(s, index);
      break;
    }
    case StepOp::kDiscardShared: {
      VmHandle& vm = vm_for(s);
      if (!vm.vmm) {
        log_.failed(s, index, "discard_shared needs a VM set up by the VMM (declared in /vms)");
        break;
      }
      status_step(vm.vmm->mm().madvise_dontneed(vm.vmm->hva_of(Gpa(s.gpa)), s.size),
                  "madvise(MADV_DONTNEED)");
      break;
    }
    case StepOp::kHostRead:
    case StepOp::kHostWrite: {
      VmHandle& vm = vm_for(s);
      if (!vm.vmm || vm.vmm->region_of(Gpa(s.gpa)) < 0) {
        log_.failed(
            s, index,
            "gpa " + hex(s.gpa) + " is not in a RAM region of the VM, so it has no shared backing");
        break;
      }
      std::vector<uint8_t> buf(s.size);
      const Hva h = vm.vmm->hva_of(Gpa(s.gpa));
      const double bw = kvm_.config().costs.zero_bytes_per_cycle;
      if (s.op == StepOp::kHostRead) {
        Status st = vm.vmm->mm().read(h, buf);
        if (!check_errno(s, index, st.ok() ? nullptr : &st.error(), "host read")) break;
        check_data(s, index, s.gpa, buf);
      } else {
        fill_pattern(s.pattern, s.value, s.gpa, buf);
        status_step(vm.vmm->mm().write(h, buf), "host write");
      }
      kvm_.charge(Cycles(static_cast<uint64_t>(static_cast<double>(s.size) / (bw > 0 ? bw : 1)) +
                         1));  // memcpy at the memory bandwidth
      break;
    }
    case StepOp::kGmemMmap: {
      GmemHandle g = gmem(s.guest_memfd);
      auto file = g.proc ? kvm_.gmem_of(*g.proc, g.fd) : nullptr;
      if (!file) {
        Error e = Errno::kEBADF;
        if (check_errno(s, index, &e, "mmap")) log_.met(s, index);
        break;
      }
      int prot = PROT_READ;
      if (s.prot != "r") prot |= PROT_WRITE;
      if (s.prot == "rwx") prot |= PROT_EXEC;
      const uint64_t len = s.size ? s.size : static_cast<uint64_t>(file->inode().size());
      auto m = file->mmap(len, prot, s.shared, s.offset);
      // A mapping holds a file reference until munmap (kvm-guest-memfd.md §6.1): it is recorded
      // whether or not the expectation is met, so that process exit unmaps it and the file is
      // released. A name a later gmem_mmap uses again keeps its earlier mapping too (a process's
      // mappings do not replace one another).
      if (m.ok()) {
        if (auto old = maps_.find(s.as); old != maps_.end()) shadowed_maps_.push_back(old->second);
        maps_[s.as] = MapHandle{file, *m};
      }
      if (check_errno(s, index, m.ok() ? nullptr : &m.error(), "mmap")) log_.met(s, index);
      break;
    }
    case StepOp::kGmemMunmap: {
      auto it = maps_.find(s.as);
      if (it == maps_.end()) {
        log_.failed(s, index, "mapping \"" + s.as + "\" was not created (its gmem_mmap failed)");
        break;
      }
      status_step(it->second.file->munmap(it->second.map), "munmap");
      maps_.erase(it);
      break;
    }
    case StepOp::kMapRead:
    case StepOp::kMapWrite: {
      auto it = maps_.find(s.as);
      if (it == maps_.end()) {
        log_.failed(s, index, "mapping \"" + s.as + "\" was not created (its gmem_mmap failed)");
        break;
      }
      std::vector<uint8_t> buf(s.size);
      Result<HostAccess> r = Errno::kEINVAL;
      if (s.op == StepOp::kMapRead) {
        r = it->second.file->host_read(it->second.map, s.offset, buf);
      } else {
        fill_pattern(s.pattern, s.value, s.offset, buf);
        r = it->second.file->host_write(it->second.map, s.offset, buf);
      }
      if (!check_errno(
              s, index, r.ok() ? nullptr : &r.error(),
              s.op == StepOp::kMapRead ? "read through the mapping" : "write through the mapping"))
        break;
      const char* sig = r->signal == Signal::kSigbus    ? "SIGBUS"
                        : r->signal == Signal::kSigsegv ? "SIGSEGV"
                                                        : "none";
      const std::string want = s.expect.has("signal") ? s.expect.signal : "none";
      if (want != sig) {
        log_.failed(s, index, std::string("the access got signal ") + sig + ", expected " + want);
        break;
      }
      if (s.op == StepOp::kMapRead && r->signal == Signal::kNone)
        check_data(s, index, s.offset, buf);
      else
        log_.met(s, index);
      break;
    }
    case StepOp::kHostileMap:
    case StepOp::kHostileUnmapNoFlush: {
      VmHandle& src = vm_for(s);
      Vm* vm = kvm_.vm_of(*src.proc, src.vm_fd);
      // A private GPA of a VM with a private root is translated by a table the backend's
      // firmware keeps in protected memory: the host kernel can read the frame behind it (to
      // map it elsewhere) but cannot write that table (changes go through the firmware only).
      const bool priv = vm && vm->backend().has_private_root() &&
                        vm->backend().translates_privately(*vm, Gpa(s.gpa));
      if (priv && s.op == StepOp::kHostileUnmapNoFlush) {
        log_.failed(
            s, index,
            "gpa " + hex(s.gpa) + " of " + s.vm + " is private and translated by the " +
                std::string(vm->backend().name()) +
                " VM's private root, which the host cannot write (only its firmware changes it; "
                "use the shared side of the address)");
        break;
      }
      const Stage2Lookup lk = !vm    ? Stage2Lookup{}
                              : priv ? vm->backend().lookup_private(*vm, Gpa(s.gpa))
                                     : vm->stage2().lookup(Gpa(s.gpa));
      if (!vm || !lk.mapped()) {
        log_.failed(
            s, index,
            "nothing is mapped at gpa " + hex(s.gpa) + " of the VM to attack (fault it in first)");
        break;
      }
      const Gfn gfn = gpa_to_gfn(Gpa(s.gpa));
      if (s.op == StepOp::kHostileMap) {
        auto it = vms_.find(s.to_vm);
        Vm* to = it == vms_.end() ? nullptr : kvm_.vm_of(*it->second.proc, it->second.vm_fd);
        if (!to) {
          log_.failed(s, index, "VM \"" + s.to_vm + "\" does not exist yet when this step runs");
          break;
        }
        Status st =
            to->stage2().map(gfn_to_gpa(gfn), lk.pfn_for(Gpa(s.gpa)), PageSize::k4K, kPermsRWX);
        if (!st.ok()) {
          log_.failed(s, index,
                      "the hostile mapping could not be written: " + st.error().to_string());
          break;
        }
        to->note_changed(GfnRange{gfn, gfn + 1});
        to->mem().note(lk.pfn_for(Gpa(s.gpa)), FrameEventKind::kHostileMap, to->principal(),
                       kNobody, gfn.value());
      } else {
        (void)vm->stage2().unmap(lk.base, lk.size());
        vm->note_changed(GfnRange{gpa_to_gfn(lk.base), gpa_to_gfn(lk.base) + frames_of(lk.size())});
      }
      if (!s.expect.has("violation")) log_.met(s, index);
      break;
    }
    case StepOp::kHostileWrite:
    case StepOp::kHostileRead: {
      // The host kernel's direct map: the frame behind gpa, accessed with key 0 by the host
      // kernel, as a buggy or hostile kernel would (no full-line store: a partial write).
      VmHandle& target = vm_for(s);
      Vm* vm = kvm_.vm_of(*target.proc, target.vm_fd);
      const Gpa g(s.gpa);
      Stage2Lookup lk;
      if (vm)
        lk = vm->backend().translates_privately(*vm, g) ? vm->backend().lookup_private(*vm, g)
                                                        : vm->stage2().lookup(g);
      if (!vm || !lk.mapped()) {
        log_.failed(
            s, index,
            "nothing is mapped at gpa " + hex(s.gpa) + " of the VM to attack (fault it in first)");
        break;
      }
      const Hpa hpa = Hpa(pfn_to_hpa(lk.pfn_for(g)).value() + (s.gpa & (kPageBytes - 1)));
      PhysMem& mem = vm->mem();
      // The host kernel as a hostile initiator: the platform's host checks see the access.
      Initiator host(mem, InitiatorId{kHostKernel, InitiatorKind::kHostile, 0});
      std::vector<uint8_t> buf(s.size);
      if (s.op == StepOp::kHostileWrite) {
        fill_pattern(s.pattern, s.value, s.gpa, buf);
        if (const AccessResult w = host.write(hpa, buf); !w.ok()) {
          log_.failed(s, index, refused_message(*w.fault));
        } else {
          // Incremental checks look at the frame again (gfn without a shared bit, as KVM
          // records it).
          const Gfn gf = vm->backend().fault_gfn(*vm, g);
          vm->note_changed(GfnRange{gf, gf + 1});
          if (!s.expect.has("violation")) log_.met(s, index);
        }
      } else if (const AccessResult res = host.read(hpa, buf); !res.ok()) {
        log_.failed(s, index, refused_message(*res.fault));
      } else {
        const IntegrityResult& r = res.integrity;
        const Pfn frame = hpa_to_pfn(hpa);
        if (on_plaintext_read && !r.poisoned && !r.zeroed && !r.key_mismatch &&
            mem.meta(frame).label != kHostKernel && mem.meta(frame).label != kNobody)
          on_plaintext_read(kvm::PlaintextRead{frame, kHostKernel, mem.meta(frame).label});
        if (r.poisoned)
          log_.failed(s, index,
                      "the host kernel consumed poison at hpa " + hex(r.poison_address.value()) +
                          " (#MC in the host)");
        else if (s.expect.has("violation") && !s.expect.has("pattern") && !s.expect.has("value"))
          ;  // the checker reports it
        else
          check_data(s, index, s.gpa, buf);
      }
      const double bw = kvm_.config().costs.zero_bytes_per_cycle;
      kvm_.charge(
          Cycles(static_cast<uint64_t>(static_cast<double>(s.size) / (bw > 0 ? bw : 1)) + 1));
      break;
    }
    default:
      log_.failed(s, index, "operation " + op_name(s.op) + " is not a vmm/host operation");
      break;
  }
  return kvm_.take_cost();
}

// ---------------------------------------------------------------------------------------------
// Guest side

StepProgram::StepProgram(const config::ScenarioConfig& sc, std::vector<size_t> steps,
                         const backend::GuestSide& guest, uint64_t frequency_hz,
                         ExpectationLog& log, std::map<std::string, uint64_t> barrier_ids)
    : sc_(sc),
      steps_(std::move(steps)),
      guest_(guest),
      frequency_hz_(frequency_hz),
      log_(log),
      barrier_ids_(std::move(barrier_ids)) {
  std::vector<GuestOp> tmp;
  for (size_t i : steps_) {
    tmp.clear();
    expand(i, tmp);
    ops_total_ += tmp.size();
  }
}

void StepProgram::expand(size_t index, std::vector<GuestOp>& out) const {
  const StepConfig& s = sc_.steps[index];
  switch (s.op) {
    case StepOp::kLoad: {
      GuestOp op = GuestOp::load(Gpa(s.gpa), static_cast<uint32_t>(s.size));
      if (s.expect.has("pattern") || s.expect.has("value")) {
        op.verify = true;
        op.pattern = s.expect.pattern;
        op.value = s.expect.value;
      }
      out.push_back(op);
      break;
    }
    case StepOp::kStore:
      out.push_back(GuestOp::store(Gpa(s.gpa), static_cast<uint32_t>(s.size), s.value, s.pattern));
      break;
    case StepOp::kGuestConvert: {
      auto ops = guest_.conversion_ops(Gpa(s.gpa), s.size, s.to == "private");
      out.insert(out.end(), ops.begin(), ops.end());
      break;
    }
    case StepOp::kHypercall: {
      GuestOp op;
      op.kind = OpKind::kHypercall;
      op.nr = s.nr;
      op.args[0] = s.gpa;
      op.args[1] = s.size >> kPageShift;
      op.args[2] = s.value;
      out.push_back(op);
      break;
    }
    case StepOp::kCompute:
      out.push_back(GuestOp::compute(s.cycles));
      break;
    case StepOp::kGuestIo: {
      // Guest I/O through the bounce buffer (swiotlb): read the private data, copy it into the
      // shared buffer at the address the guest uses for shared memory. The copy is a store of
      // the same pattern at the buffer's address: patterns are keyed by address.
      const uint64_t bounce = guest_.bounce_buffer().gpa.value() + s.offset;
      for (uint64_t off = 0; off < s.size; off += kPageBytes) {
        GuestOp ld = GuestOp::load(Gpa(s.gpa + off), static_cast<uint32_t>(kPageBytes));
        ld.verify = true;
        ld.pattern = s.pattern;
        ld.value = s.value;
        out.push_back(ld);
        out.push_back(GuestOp::store(guest_.shared_alias(Gpa(bounce + off)),
                                     static_cast<uint32_t>(kPageBytes), s.value, s.pattern));
      }
      break;
    }
    case StepOp::kWait: {
      // Spend the time, then synchronise so that it shows in global time.
      const uint64_t cycles = static_cast<uint64_t>(static_cast<double>(s.time_ns) * 1e-9 *
                                                    static_cast<double>(frequency_hz_));
      out.push_back(GuestOp::compute(cycles));
      out.push_back(GuestOp::fence());
      break;
    }
    case StepOp::kBarrier: {
      GuestOp op;
      op.kind = OpKind::kSync;
      op.nr = barrier_ids_.at(s.barrier);
      out.push_back(op);
      break;
    }
    default:
      break;
  }
}

bool StepProgram::next(GuestOp& op) {
  while (!have_cur_ || cur_.next >= cur_.ops.size()) {
    if (pos_ >= steps_.size()) return false;
    cur_ = Pending{steps_[pos_++], {}, 0};
    expand(cur_.step, cur_.ops);
    have_cur_ = true;
    any_mismatch_ = false;
    have_ret_ = false;
    violations_seen_.clear();
    exits_.clear();
    if (cur_.ops.empty()) {
      log_.met(sc_.steps[cur_.step], cur_.step);
      have_cur_ = false;
    }
  }
  op = cur_.ops[cur_.next++];
  return true;
}

void StepProgram::note_exit(int err, const kvm_run& run) {
  SeenExit e{err, run.exit_reason, 0, 0, 0};
  if (run.exit_reason == KVM_EXIT_MEMORY_FAULT) {
    e.flags = run.memory_fault.flags;
    e.gpa = run.memory_fault.gpa;
    e.size = run.memory_fault.size;
  } else if (run.exit_reason == KVM_EXIT_MMIO) {
    e.gpa = run.mmio.phys_addr;
  } else if (run.exit_reason == KVM_EXIT_HYPERCALL) {
    e.gpa = run.hypercall.args[0];
  }
  exits_.push_back(e);
}

bool StepProgram::note_violation(const kvm::Violation& v) {
  if (!have_cur_) return false;
  const StepConfig& s = sc_.steps[cur_.step];
  if (!s.expect.has("violation")) return false;
  std::stringstream in(s.expect.violation);
  for (std::string id; std::getline(in, id, '|');)
    if (id == v.invariant) {
      violations_seen_.insert(id);
      return true;
    }
  return false;
}

void StepProgram::on_result(const GuestOp& op, const OpResult& r) {
  if (!have_cur_) return;
  if (r.verify_mismatch) any_mismatch_ = true;
  if (op.kind == OpKind::kHypercall) {
    last_ret_ = r.ret;
    have_ret_ = true;
  }
  if (cur_.next >= cur_.ops.size()) finish_step(false, &r);
}

void StepProgram::on_stop(std::string_view reason) {
  if (!have_cur_) return;
  const StepConfig& s = sc_.steps[cur_.step];
  if (s.expect.has("stops") && s.expect.stops) {
    stop_expected_ = true;
    finish_step(true, nullptr);
  } else {
    finish_step(true, nullptr);
    log_.failed(s, cur_.step, "the vCPU stopped: " + std::string(reason));
  }
  // Steps after a stop never run.
  for (size_t i = pos_; i < steps_.size(); ++i)
    log_.failed(sc_.steps[steps_[i]], steps_[i],
                "not run: the vCPU stopped at step " + std::to_string(cur_.step));
  pos_ = steps_.size();
  have_cur_ = false;
}

void StepProgram::finish_step(bool stopped, const OpResult*) {
  const StepConfig& s = sc_.steps[cur_.step];
  have_cur_ = false;
  if (on_step_done) on_step_done(cur_.step);
  std::vector<std::string> wrong;
  if (s.expect.has("stops") && s.expect.stops && !stopped) wrong.push_back("the vCPU did not stop");
  if (s.expect.has("exit")) {
    const uint32_t want = *parse_exit_reason(s.expect.exit);
    const SeenExit* hit = nullptr;
    for (const auto& e : exits_)
      if (e.reason == want) hit = &e;
    if (!hit) {
      std::string seen;
      for (const auto& e : exits_)
        seen += (seen.empty() ? "" : ", ") + std::string(exit_reason_name(e.reason));
      wrong.push_back("no " + s.expect.exit + " exit (saw: " + (seen.empty() ? "none" : seen) +
                      ")");
    } else {
      if (s.expect.has("exit_flags")) {
        const bool priv = hit->flags & KVM_MEMORY_EXIT_FLAG_PRIVATE;
        if ((s.expect.exit_flags == "PRIVATE") != priv)
          wrong.push_back(std::string("exit flags ") + (priv ? "PRIVATE" : "0") + ", expected " +
                          s.expect.exit_flags);
      }
      if (s.expect.has("exit_gpa") && hit->gpa != s.expect.exit_gpa)
        wrong.push_back("exit gpa " + hex(hit->gpa) + ", expected " + hex(s.expect.exit_gpa));
      if (s.expect.has("exit_size") && hit->size != s.expect.exit_size)
        wrong.push_back("exit size " + std::to_string(hit->size) + ", expected " +
                        std::to_string(s.expect.exit_size));
    }
  }
  if (s.expect.has("violation")) {
    std::stringstream in(s.expect.violation);
    for (std::string id; std::getline(in, id, '|');)
      if (!id.empty() && !violations_seen_.count(id))
        wrong.push_back("the checker did not catch a violation of " + id);
  }
  if (!stopped && any_mismatch_)
    wrong.push_back("the data read back does not match the expected pattern");
  if (!stopped && s.expect.has("ret") && (!have_ret_ || last_ret_ != s.expect.ret))
    wrong.push_back("the guest got " + std::to_string(static_cast<int64_t>(last_ret_)) +
                    ", expected " + std::to_string(static_cast<int64_t>(s.expect.ret)));
  if (!stopped && !s.expect.has("ret") && s.op == StepOp::kGuestConvert && have_ret_ &&
      last_ret_ != 0)
    wrong.push_back("the conversion request returned " +
                    std::to_string(static_cast<int64_t>(last_ret_)) +
                    " (add expect.ret to expect a failure)");
  if (stopped && !(s.expect.has("stops") && s.expect.stops)) return;  // on_stop logs it
  if (wrong.empty()) {
    log_.met(s, cur_.step);
  } else {
    std::string m;
    for (const auto& w : wrong) m += (m.empty() ? "" : "; ") + w;
    log_.failed(s, cur_.step, m);
  }
}

}  // namespace cvmsim::scenario
