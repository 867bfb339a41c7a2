#include "models/kvm/vcpu.h"

#include <cinttypes>
#include <cstdio>

#include "models/kvm/kvm.h"
#include "models/kvm/vm.h"

namespace cvmsim::kvm {

Vcpu::Vcpu(Vm& vm, uint32_t id) : vm_(vm), id_(id) {}

void Vcpu::flush_tlb() {
  if (tlb_) tlb_->invalidate_asid(vm_.asid());
  if (pwc_) pwc_->invalidate_asid(vm_.asid());
  ++stats_.tlb_flushes;
}

ExitAction Vcpu::to_userspace(int err, ExitAction::Kind then) {
  ++stats_.exits_userspace;
  if (vm_.kvm().tracing()) {
    char d[200];
    if (run_.exit_reason == KVM_EXIT_MEMORY_FAULT)
      std::snprintf(d, sizeof d,
                    "vcpu %u KVM_EXIT_MEMORY_FAULT errno %s flags 0x%" PRIx64 " gpa 0x%" PRIx64
                    " size %" PRIu64,
                    id_, std::string(errno_name(static_cast<Errno>(err))).c_str(),
                    run_.memory_fault.flags, run_.memory_fault.gpa, run_.memory_fault.size);
    else if (run_.exit_reason == KVM_EXIT_HYPERCALL)
      std::snprintf(d, sizeof d,
                    "vcpu %u KVM_EXIT_HYPERCALL nr %" PRIu64 " args 0x%" PRIx64 " %" PRIu64
                    " 0x%" PRIx64,
                    id_, run_.hypercall.nr, run_.hypercall.args[0], run_.hypercall.args[1],
                    run_.hypercall.args[2]);
    else
      std::snprintf(d, sizeof d, "vcpu %u %s gpa 0x%" PRIx64, id_,
                    std::string(exit_reason_name(run_.exit_reason)).c_str(), run_.mmio.phys_addr);
    vm_.kvm().trace("platform." + vm_.name() + ".kvm", "exit_to_userspace", d);
  }
  vm_.kvm().charge(vm_.config().costs.exit_to_userspace);
  ExitAction a;
  std::string why;
  if (!user_) {
    char m[200];
    std::snprintf(m, sizeof m, "%s vCPU %u: KVM_RUN returned %s with %s and no VMM handles it",
                  vm_.name().c_str(), id_,
                  err ? std::string(errno_name(static_cast<Errno>(err))).c_str() : "0",
                  std::string(exit_reason_name(run_.exit_reason)).c_str());
    a.kind = ExitAction::kStop;
    a.reason = m;
  } else if (!user_->on_exit(*this, err, run_, why)) {
    a.kind = ExitAction::kStop;
    a.reason =
        why.empty() ? vm_.name() + " vCPU " + std::to_string(id_) + ": stopped by the VMM" : why;
  } else {
    a.kind = then;
  }
  a.cost = vm_.kvm().take_cost();
  return a;
}

ExitAction Vcpu::handle_exit(unsigned vcpu_id, const VmExit& e) {
  vm_.kvm().set_time_override(e.time_ps);
  ExitAction a = handle_exit_at(vcpu_id, e);
  vm_.kvm().set_time_override(0);
  return a;
}

ExitAction Vcpu::handle_exit_at(unsigned, const VmExit& e) {
  KvmBackend& be = vm_.backend();
  switch (e.reason) {
    case ExitReason::kStage2Fault: {
      ++stats_.exits_stage2;
      if (be.has_private_root() && be.translates_privately(vm_, e.gpa)) {
        // The private root's firmware dispatches the EPT violation first (TDX A8).
        KvmBackend::PrivateFaultAction pa = be.private_fault(vm_, *this, e);
        if (pa.kind != KvmBackend::PrivateFaultAction::kToKvm) {
          ExitAction a;
          if (pa.kind == KvmBackend::PrivateFaultAction::kRetry) {
            ++stats_.private_faults_below_kvm;
            a.kind = ExitAction::kRetry;
          } else {
            a.kind = ExitAction::kStop;
            a.reason = vm_.name() + " vCPU " + std::to_string(id_) + ": " + pa.reason;
          }
          a.cost = vm_.kvm().take_cost();
          return a;
        }
      }
      PageFault f;
      f.gfn = be.fault_gfn(vm_, e.gpa);
      f.write = e.write;
      f.is_private = be.fault_is_private(vm_, f.gfn, e);
      const FaultOutcome o = vm_.page_fault(f);
      switch (o.kind) {
        case FaultOutcome::kFixed:
        case FaultOutcome::kRetry: {
          ExitAction a;
          a.kind = ExitAction::kRetry;
          a.cost = vm_.kvm().take_cost();
          return a;
        }
        case FaultOutcome::kMemoryFaultExit:
          // §8: KVM_RUN returns -1 with errno EFAULT (or EHWPOISON) and KVM_EXIT_MEMORY_FAULT.
          ++stats_.memory_fault_exits;
          run_.exit_reason = KVM_EXIT_MEMORY_FAULT;
          run_.memory_fault.flags = o.mf_flags;
          run_.memory_fault.gpa = o.mf_gpa;
          run_.memory_fault.size = o.mf_size;
          return to_userspace(static_cast<int>(o.err), ExitAction::kRetry);
        case FaultOutcome::kEmulate:
          ++stats_.mmio_exits;
          run_.exit_reason = KVM_EXIT_MMIO;
          run_.mmio.phys_addr = e.gpa.value();
          run_.mmio.len = 0;
          run_.mmio.is_write = e.write;
          return to_userspace(0, ExitAction::kRetry);
      }
      break;
    }
    case ExitReason::kHypercall: {
      ++stats_.exits_hypercall;
      vm_.kvm().charge(vm_.config().costs.hypercall);  // platform.costs.hypercall_cycles
      ExitAction a;
      a.kind = ExitAction::kResume;
      const HypercallDecode d = be.decode_hypercall(vm_, e);
      // KVM_HC_MAP_GPA_RANGE exits only if the VMM enabled it (§11); otherwise -KVM_ENOSYS,
      // which is also what any hypercall KVM does not know returns.
      // The backend's ABI (TDX: TDG.VP.VMCALL<MapGPA>) decodes to KVM_HC_MAP_GPA_RANGE.
      const uint64_t nr = d.kind != HypercallDecode::kNotConversion ? KVM_HC_MAP_GPA_RANGE : e.nr;
      const bool enabled = nr < 64 && (vm_.exit_hypercall_mask & (uint64_t{1} << nr));
      if (d.kind == HypercallDecode::kNotConversion || !enabled) {
        ++stats_.hypercalls_enosys;
        a.ret = static_cast<uint64_t>(-static_cast<int64_t>(KVM_ENOSYS));
        a.cost = vm_.kvm().take_cost();
        return a;
      }
      if (d.kind == HypercallDecode::kInvalid) {
        ++stats_.hypercalls_einval;
        a.ret = d.guest_ret;
        a.cost = vm_.kvm().take_cost();
        return a;
      }
      ++stats_.hypercall_exits;
      run_.exit_reason = KVM_EXIT_HYPERCALL;
      run_.hypercall.nr = nr;
      // KVM_HC_MAP_GPA_RANGE's arguments as KVM forwards them (§11): gpa (shared bit stripped),
      // npages, attributes; for the native hypercall these are the guest's own args.
      for (int i = 0; i < 6; ++i) run_.hypercall.args[i] = i < 4 ? e.args[i] : 0;
      run_.hypercall.args[0] = d.req.gpa.value();
      run_.hypercall.args[1] = d.req.npages;
      run_.hypercall.args[2] = d.req.attrs_arg;
      run_.hypercall.ret = 0;
      run_.hypercall.flags = KVM_EXIT_HYPERCALL_LONG_MODE;
      ExitAction u = to_userspace(0, ExitAction::kResume);
      u.ret = run_.hypercall.ret;  // what userspace put there goes to the guest's RAX
      if (u.kind == ExitAction::kResume) {
        be.conversion_done(vm_, *this, d, u.ret);
        u.cost += vm_.kvm().take_cost();
      }
      return u;
    }
    case ExitReason::kBusError:
    // Delivered to the guest kernel, not to KVM; no backend's checks raise them yet, so reaching
    // KVM they stop the vCPU as unhandled.
    case ExitReason::kVirtualizationException:
    case ExitReason::kVmmCommunication:
      break;
  }
  ExitAction a;
  a.kind = ExitAction::kStop;
  char m[160];
  std::snprintf(m, sizeof m, "%s vCPU %u: unhandled %s at gpa 0x%" PRIx64, vm_.name().c_str(), id_,
                std::string(name_of(e.reason)).c_str(), e.gpa.value());
  a.reason = m;
  return a;
}

ExitAction Vcpu::handle_machine_check(unsigned vcpu_id, const MachineCheck& mc) {
  if (auto a = vm_.backend().machine_check(vm_, *this, mc)) {
    a->cost += vm_.kvm().take_cost();
    return *a;
  }
  return ExitHandler::handle_machine_check(vcpu_id, mc);
}

Status Vcpu::pre_fault_memory(kvm_pre_fault_memory& r) {
  ++stats_.prefault_calls;
  // Generic checks (§9).
  if (r.flags != 0) return Errno::kEINVAL;
  if ((r.gpa & (kPageBytes - 1)) || (r.size & (kPageBytes - 1)) || r.gpa + r.size <= r.gpa)
    return Errno::kEINVAL;
  bool progress = false;
  Status last;
  while (r.size > 0) {
    // x86 arch part.
    if (!vm_.pre_fault_allowed) {
      last = Errno::kEOPNOTSUPP;
      break;
    }
    PageFault f;
    f.gfn = gpa_to_gfn(Gpa(r.gpa));
    f.prefault = true;
    // A read fault of the gfn's current type.
    f.is_private = vm_.backend().has_private_mem() && vm_.mem_is_private(f.gfn);
    FaultOutcome o;
    do {
      o = vm_.page_fault(f);
    } while (o.kind == FaultOutcome::kRetry);  // kvm_tdp_map_page retries internally
    if (o.kind == FaultOutcome::kEmulate) {
      last = Errno::kENOENT;
      break;
    }
    if (o.kind == FaultOutcome::kMemoryFaultExit) {
      last = o.err;
      break;
    }
    // Bytes mapped: to the end of the (huge) page covering gpa, clipped to size.
    const uint64_t span = bytes_of(o.level);
    const uint64_t end = (r.gpa & ~(span - 1)) + span;
    const uint64_t n = std::min(end - r.gpa, r.size);
    r.gpa += n;
    r.size -= n;
    stats_.prefault_bytes += n;
    progress = true;
  }
  // 0 if at least one page was processed, else the last error.
  if (progress) return {};
  return last;
}

void Vcpu::describe_stats(StatVisitor& v) const {
  v.counter("stage2_faults_handled", stats_.exits_stage2, "exits",
            "stage-2 fault exits of this vCPU that KVM handled");
  v.counter("hypercalls_handled", stats_.exits_hypercall, "exits",
            "hypercall exits of this vCPU that KVM handled");
  v.counter("exits_userspace", stats_.exits_userspace, "exits",
            "times KVM_RUN returned to the VMM");
  v.counter("memory_fault_exits", stats_.memory_fault_exits, "exits",
            "KVM_EXIT_MEMORY_FAULT exits");
  v.counter("hypercall_exits", stats_.hypercall_exits, "exits",
            "KVM_EXIT_HYPERCALL exits (KVM_HC_MAP_GPA_RANGE)");
  v.counter("mmio_exits", stats_.mmio_exits, "exits",
            "KVM_EXIT_MMIO exits (shared access outside every memslot)");
  v.counter("hypercalls_enosys", stats_.hypercalls_enosys, "calls",
            "hypercalls answered -KVM_ENOSYS");
  v.counter("hypercalls_einval", stats_.hypercalls_einval, "calls",
            "malformed KVM_HC_MAP_GPA_RANGE answered -KVM_EINVAL");
  if (vm_.backend().has_private_root())
    v.counter("private_faults_below_kvm", stats_.private_faults_below_kvm, "exits",
              "private EPT violations the backend resolved without KVM's fault path (TDX: the "
              "guest accepted a PENDING page)");
  v.counter("tlb_flushes", stats_.tlb_flushes, "flushes",
            "flushes of this vCPU's TLB and page-walk cache by KVM");
  v.counter("prefault_calls", stats_.prefault_calls, "calls", "KVM_PRE_FAULT_MEMORY calls");
  v.counter("prefault_bytes", stats_.prefault_bytes, "bytes",
            "bytes mapped by KVM_PRE_FAULT_MEMORY");
}

}  // namespace cvmsim::kvm
