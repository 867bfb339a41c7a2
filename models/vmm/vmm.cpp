#include "models/vmm/vmm.h"

#include <cinttypes>
#include <cstdio>

namespace cvmsim::vmm {

using namespace cvmsim::kvm;

namespace {

std::string failed(const char* call, const Error& e) {
  return std::string(call) + " failed: " + e.to_string();
}

}  // namespace

Vmm::Vmm(Kvm& kvm, PhysMem& mem, FrameAllocator& frames, VmmConfig cfg)
    : kvm_(kvm), cfg_(std::move(cfg)) {
  mm_ = std::make_unique<HostMm>(mem, frames, kHostUser);
  proc_ = std::make_unique<Process>(kvm_, *mm_, "vmm:" + cfg_.vm_name);
}

Vmm::~Vmm() {
  proc_.reset();  // closes every fd: the VM goes when its last reference does
  mm_.reset();
}

kvm::Vm& Vmm::vm() {
  return *vm_;
}

bool Vmm::vm_alive() const {
  // Kvm::vms() lists the VMs not destroyed yet (a destroyed one leaves it for its shell list).
  for (const auto& v : kvm_.vms())
    if (v.get() == vm_) return true;
  return false;
}

Status Vmm::close_vm_fd() {
  Status st = proc_->close(vm_fd_);
  if (st.ok()) vm_fd_ = -1;
  return st;
}

kvm::Vcpu& Vmm::vcpu(unsigned i) {
  return *kvm_.vcpu_of(*proc_, vcpu_fds_.at(i));
}

std::string Vmm::setup() {
  kvm_fd_ = kvm_.open_dev_kvm(*proc_);
  auto vm = kvm_.create_vm(*proc_, kvm_fd_, cfg_.vm_type, cfg_.vm_name, cfg_.principal, cfg_.asid,
                           cfg_.backend_options);
  if (!vm.ok()) return failed("KVM_CREATE_VM", vm.error());
  vm_fd_ = *vm;
  vm_ = kvm_.vm_of(*proc_, vm_fd_);
  auto attrs = kvm_.check_extension(*proc_, vm_fd_, KVM_CAP_MEMORY_ATTRIBUTES);
  const bool has_private =
      attrs.ok() && (*attrs & static_cast<int64_t>(KVM_MEMORY_ATTRIBUTE_PRIVATE));
  if (has_private) {
    // The guest's explicit conversions arrive as KVM_EXIT_HYPERCALL (§11).
    kvm_enable_cap cap;
    cap.cap = KVM_CAP_EXIT_HYPERCALL;
    cap.args[0] = uint64_t{1} << KVM_HC_MAP_GPA_RANGE;
    if (Status st = kvm_.enable_cap(*proc_, vm_fd_, &cap); !st.ok())
      return failed("KVM_ENABLE_CAP(EXIT_HYPERCALL)", st.error());
  }
  for (size_t i = 0; i < cfg_.ram.size(); ++i) {
    const RamRegion& rc = cfg_.ram[i];
    Region r;
    r.cfg = rc;
    r.slot = static_cast<uint32_t>(i);
    auto hva = mm_->mmap_anon(rc.size, rc.page_size);
    if (!hva.ok()) return failed("mmap of guest RAM", hva.error());
    r.hva = *hva;
    kvm_userspace_memory_region2 m;
    m.slot = r.slot;
    m.guest_phys_addr = rc.gpa.value();
    m.memory_size = rc.size;
    m.userspace_addr = r.hva.value();
    if (rc.guest_memfd) {
      kvm_create_guest_memfd g;
      g.size = rc.size;
      auto fd = kvm_.create_guest_memfd(*proc_, vm_fd_, &g);
      if (!fd.ok()) return failed("KVM_CREATE_GUEST_MEMFD", fd.error());
      r.gmem_fd = *fd;
      m.flags = KVM_MEM_GUEST_MEMFD;
      m.guest_memfd = static_cast<uint32_t>(r.gmem_fd);
      m.guest_memfd_offset = 0;
    }
    if (Status st = kvm_.set_user_memory_region2(*proc_, vm_fd_, &m); !st.ok())
      return failed("KVM_SET_USER_MEMORY_REGION2", st.error());
    if (rc.initially_private) {
      kvm_memory_attributes a;
      a.address = rc.gpa.value();
      a.size = rc.size;
      a.attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE;
      if (Status st = kvm_.set_memory_attributes(*proc_, vm_fd_, &a); !st.ok())
        return failed("KVM_SET_MEMORY_ATTRIBUTES", st.error());
    }
    regions_.push_back(r);
  }
  for (unsigned i = 0; i < cfg_.vcpus; ++i) {
    auto fd = kvm_.create_vcpu(*proc_, vm_fd_, i);
    if (!fd.ok()) return failed("KVM_CREATE_VCPU", fd.error());
    vcpu_fds_.push_back(*fd);
    kvm_.vcpu_of(*proc_, *fd)->set_userspace(this);
  }
  return {};
}

int Vmm::region_of(Gpa gpa) const {
  for (size_t i = 0; i < regions_.size(); ++i)
    if (regions_[i].cfg.gpa <= gpa && gpa < regions_[i].cfg.gpa + regions_[i].cfg.size)
      return static_cast<int>(i);
  return -1;
}

Hva Vmm::hva_of(Gpa gpa) const {
  const int r = region_of(gpa);
  return r < 0 ? Hva(0)
               : regions_[static_cast<size_t>(r)].hva +
                     (gpa - regions_[static_cast<size_t>(r)].cfg.gpa);
}

int Vmm::convert(Gpa gpa, uint64_t bytes, bool to_private) {
  // Attributes first, then discard the opposite backing (QEMU's kvm_convert_memory order).
  kvm_memory_attributes a;
  a.address = gpa.value();
  a.size = bytes;
  a.attributes = to_private ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
  // Optional fallocate of the private side before it is used (§11).
  auto for_each_piece = [&](auto&& fn) {
    for (const Region& r : regions_) {
      const Gpa s = std::max(gpa, r.cfg.gpa), e = std::min(gpa + bytes, r.cfg.gpa + r.cfg.size);
      if (s < e) fn(r, s, e - s);
    }
  };
  int err = 0;
  if (to_private && cfg_.policy.allocate_on_private)
    for_each_piece([&](const Region& r, Gpa s, uint64_t n) {
      if (r.gmem_fd < 0 || err) return;
      Status st = kvm_.fallocate(*proc_, r.gmem_fd, FALLOC_FL_KEEP_SIZE,
                                 static_cast<int64_t>(s - r.cfg.gpa), static_cast<int64_t>(n));
      if (!st.ok()) err = static_cast<int>(st.error().errno_value());
    });
  if (err) {
    ++stats_.conversion_errors;
    return err;
  }
  if (Status st = kvm_.set_memory_attributes(*proc_, vm_fd_, &a); !st.ok()) {
    ++stats_.conversion_errors;
    return static_cast<int>(st.error().errno_value());
  }
  if (to_private)
    ++stats_.conversions_to_private;
  else
    ++stats_.conversions_to_shared;
  if (kvm_.tracing()) {
    char d[160];
    std::snprintf(d, sizeof d, "gpa 0x%" PRIx64 " size 0x%" PRIx64 " to %s%s", gpa.value(), bytes,
                  to_private ? "private" : "shared",
                  cfg_.policy.discard_on_convert ? ", discarding the other side" : "");
    kvm_.trace("platform." + cfg_.vm_name + ".vmm", "convert", d);
  }
  stats_.pages_converted += bytes >> kPageShift;
  // A backend that converts in place (one frame backs both sides, and keeps its contents:
  // pKVM's share and unshare; kvm-guest-memfd.md §12.1) leaves no opposite backing to discard.
  if (!cfg_.policy.discard_on_convert ||
      vm().backend().conversion_contents() == kvm::ConversionContents::kKept)
    return 0;
  for_each_piece([&](const Region& r, Gpa s, uint64_t n) {
    if (err) return;
    if (to_private) {
      // Drop the shared pages: the guest may not see them again, and they cost memory.
      // Huge host pages can only be dropped whole; a partial huge page is kept.
      const uint64_t ps = bytes_of(r.cfg.page_size);
      const Hva hs = r.hva + (s - r.cfg.gpa);
      const uint64_t lo = (hs.value() + ps - 1) & ~(ps - 1), hi = (hs.value() + n) & ~(ps - 1);
      if (lo < hi) {
        Status st = mm_->madvise_dontneed(Hva(lo), hi - lo);
        if (!st.ok())
          err = static_cast<int>(st.error().errno_value());
        else
          stats_.discarded_bytes += hi - lo;
      }
    } else if (r.gmem_fd >= 0) {
      // Punch the private side: its contents are gone, the next private use sees zeros.
      Status st = kvm_.fallocate(*proc_, r.gmem_fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE,
                                 static_cast<int64_t>(s - r.cfg.gpa), static_cast<int64_t>(n));
      if (!st.ok())
        err = static_cast<int>(st.error().errno_value());
      else
        stats_.punched_bytes += n;
    }
  });
  if (err) ++stats_.conversion_errors;
  return err;
}

bool Vmm::on_exit(kvm::Vcpu& vcpu, int err, kvm_run& run, std::string& stop_reason) {
  ++stats_.exits;
  if (exit_observer) exit_observer(vcpu.id(), err, run);
  char m[256];
  switch (run.exit_reason) {
    case KVM_EXIT_MEMORY_FAULT: {
      ++stats_.memory_fault_exits;
      const bool to_private = (run.memory_fault.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE) != 0;
      const Gfn gfn = gpa_to_gfn(Gpa(run.memory_fault.gpa));
      // Userspace tracks the attributes it set; if the access already matches them, a
      // conversion cannot help (no guest_memfd, a closed file, poison...): stop.
      const bool is_private_now = vcpu.vm().mem_is_private(gfn);
      if (err != static_cast<int>(Errno::kEFAULT) || is_private_now == to_private ||
          !cfg_.policy.implicit_conversion) {
        std::snprintf(m, sizeof m,
                      "%s vCPU %u: KVM_RUN failed with %s, KVM_EXIT_MEMORY_FAULT gpa 0x%" PRIx64
                      " size %" PRIu64 " flags %s%s",
                      cfg_.vm_name.c_str(), vcpu.id(),
                      std::string(errno_name(static_cast<Errno>(err))).c_str(),
                      run.memory_fault.gpa, run.memory_fault.size, to_private ? "PRIVATE" : "0",
                      cfg_.policy.implicit_conversion ? " (no conversion can resolve it)"
                                                      : " (implicit conversion disabled)");
        stop_reason = m;
        return false;
      }
      // Implicit conversion (§8): convert the page to what the guest accessed.
      if (int e = convert(Gpa(run.memory_fault.gpa),
                          run.memory_fault.size ? run.memory_fault.size : kPageBytes, to_private)) {
        std::snprintf(m, sizeof m,
                      "%s vCPU %u: implicit conversion of gpa 0x%" PRIx64 " failed: %s",
                      cfg_.vm_name.c_str(), vcpu.id(), run.memory_fault.gpa,
                      std::string(errno_name(static_cast<Errno>(e))).c_str());
        stop_reason = m;
        return false;
      }
      return true;
    }
    case KVM_EXIT_HYPERCALL: {
      ++stats_.hypercall_exits;
      if (run.hypercall.nr != KVM_HC_MAP_GPA_RANGE) {
        run.hypercall.ret = static_cast<uint64_t>(-static_cast<int64_t>(KVM_ENOSYS));
        return true;
      }
      const Gpa gpa(run.hypercall.args[0]);
      const uint64_t npages = run.hypercall.args[1];
      const bool to_private = (run.hypercall.args[2] & KVM_MAP_GPA_RANGE_ENCRYPTED) != 0;
      const int e = convert(gpa, npages << kPageShift, to_private);
      run.hypercall.ret = e ? static_cast<uint64_t>(-static_cast<int64_t>(KVM_EINVAL)) : 0;
      return true;
    }
    case KVM_EXIT_MMIO:
      ++stats_.mmio_exits;
      std::snprintf(m, sizeof m,
                    "%s vCPU %u: %s at gpa 0x%" PRIx64
                    " outside every memslot (KVM_EXIT_MMIO; no device is emulated there)",
                    cfg_.vm_name.c_str(), vcpu.id(), run.mmio.is_write ? "write" : "read",
                    run.mmio.phys_addr);
      stop_reason = m;
      return false;
    default:
      std::snprintf(m, sizeof m, "%s vCPU %u: unexpected exit %s", cfg_.vm_name.c_str(), vcpu.id(),
                    std::string(exit_reason_name(run.exit_reason)).c_str());
      stop_reason = m;
      return false;
  }
}

void Vmm::describe_stats(StatVisitor& v) const {
  v.counter("exits", stats_.exits, "exits", "KVM_RUN returns the VMM handled");
  v.counter("memory_fault_exits", stats_.memory_fault_exits, "exits",
            "KVM_EXIT_MEMORY_FAULT exits");
  v.counter("hypercall_exits", stats_.hypercall_exits, "exits", "KVM_EXIT_HYPERCALL exits");
  v.counter("mmio_exits", stats_.mmio_exits, "exits", "KVM_EXIT_MMIO exits");
  v.counter("conversions_to_private", stats_.conversions_to_private, "conversions",
            "ranges converted shared->private");
  v.counter("conversions_to_shared", stats_.conversions_to_shared, "conversions",
            "ranges converted private->shared");
  v.counter("pages_converted", stats_.pages_converted, "pages",
            "4 KiB pages covered by conversions");
  v.counter("punched_bytes", stats_.punched_bytes, "bytes",
            "guest_memfd bytes punched on private->shared");
  v.counter("discarded_bytes", stats_.discarded_bytes, "bytes",
            "shared backing dropped on shared->private");
  v.counter("conversion_errors", stats_.conversion_errors, "count",
            "conversions that failed at some step");
  PrefixedStats mm(v, "mm");
  mm_->describe_stats(mm);
}

}  // namespace cvmsim::vmm
