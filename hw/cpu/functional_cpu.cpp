#include "hw/cpu/functional_cpu.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace cvmsim {

FunctionalCpu::FunctionalCpu(const FunctionalCpuParams& p, PhysMem& mem, const Stage2Table& stage2,
                             ExitHandler& exits)
    : p_(p),
      mem_(mem),
      stage2_(stage2),
      exits_(exits),
      tlb_(TlbConfig{p.tlb_sets, p.tlb_ways}),
      pwc_(PwcConfig{p.pwc_entries, p.pwc_ways}),
      walker_(pwc_) {}

void FunctionalCpu::set_private_root(const WalkRoot& root, Gpa shared_bit, KeyId shared_key) {
  private_root_ = root;
  shared_mask_ = shared_bit.value();
  shared_key_ = shared_key;
  has_private_root_ = true;
}

bool FunctionalCpu::execute(const GuestOp& op, OpResult* result) {
  if (stopped()) return false;
  bool ok = true;
  uint64_t ret = 0;
  switch (op.kind) {
    case OpKind::kLoad:
    case OpKind::kStore:
      ok = access(op);
      break;
    case OpKind::kHypercall: {
      VmExit e;
      e.reason = ExitReason::kHypercall;
      e.nr = op.nr;
      std::memcpy(e.args, op.args, sizeof e.args);
      ok = exit(e, &ret);
      break;
    }
    case OpKind::kCompute:
    case OpKind::kFence:
    case OpKind::kSync:
      break;
  }
  if (result) result->ret = ret;
  return ok;
}

bool FunctionalCpu::access(const GuestOp& op) {
  const bool write = op.kind == OpKind::kStore;
  const uint32_t len = std::min<uint32_t>(op.size, kMaxAccessBytes);
  if (write)
    fill_pattern(op.pattern, op.value, op.gpa.value(), std::span<uint8_t>(buf_.data(), len));
  uint32_t done = 0;
  while (done < len) {
    const Gpa g = op.gpa + done;
    const uint32_t n =
        static_cast<uint32_t>(std::min<uint64_t>(len - done, kPageBytes - g.page_offset()));
    if (!access_piece(g, buf_.data() + done, n, write)) return false;
    done += n;
  }
  return true;
}

bool FunctionalCpu::translate(Gpa gpa, bool write, Pfn& out) {
  // VcpuModule::translate + translate_slow, untimed.
  const Perms need = write ? kPermsW : kPermsR;
  for (unsigned attempt = 0;; ++attempt) {
    if (TlbEntry* e = tlb_.lookup(p_.asid, gpa)) {
      if (e->perms.allows(need)) {
        out = e->pfn_for(gpa);
        return true;
      }
      tlb_.invalidate_addr(p_.asid, gpa);  // a permission fault on a cached entry: walk again
    }
    const WalkResult w = is_private_gpa(gpa) ? walker_.walk(private_root_, gpa, p_.asid, need)
                                             : walker_.walk(stage2_, gpa, p_.asid, need);
    if (w.fault == WalkFault::kNone) {
      tlb_.fill(p_.asid, gpa, w.pfn, w.size, w.perms, w.sw);
      out = w.pfn_for(gpa);
      return true;
    }
    if (attempt >= p_.max_fault_retries) {
      char m[160];
      std::snprintf(m, sizeof m,
                    "vCPU %u: access to gpa 0x%" PRIx64 " still faults after %u handled exits",
                    p_.id, gpa.value(), attempt);
      stop_reason_ = m;
      return false;
    }
    VmExit e;
    e.reason = ExitReason::kStage2Fault;
    e.gpa = gpa;
    e.write = write;
    e.present = w.fault == WalkFault::kPermission;
    if (!exit(e)) return false;
  }
}

bool FunctionalCpu::access_piece(Gpa gpa, uint8_t* buf, uint32_t len, bool write) {
  Pfn pfn;
  if (!translate(gpa, write, pfn)) return false;
  const Hpa hpa = pfn_to_hpa(pfn) + gpa.page_offset();
  const KeyId key = key_for(gpa);
  std::span<uint8_t> data(buf, len);
  if (write) {
    (void)mem_.write_keyed(hpa, data, KeyedAccess{key, p_.who, false});
    return true;
  }
  // MemoryModule::b_transport's read, then VcpuModule::transport's machine-check loop.
  for (unsigned attempt = 0;; ++attempt) {
    const IntegrityResult r = mem_.read_keyed(hpa, data, key);
    if (read_observer && !r.key_mismatch && !r.zeroed && !r.poisoned) {
      const Principal holder = mem_.meta(pfn).label;
      if (holder != p_.who && holder != kNobody) read_observer(pfn, p_.who, holder);
    }
    if (!r.poisoned) return true;
    MachineCheck mc;
    const uint64_t off = r.poison_address.value() - hpa.value();
    mc.gpa = gpa + off;
    mc.hpa = r.poison_address;
    mc.size = len;
    mc.key = key;
    mc.generated = r.new_poison;
    ++exits_count_;
    const ExitAction a = exits_.handle_machine_check(p_.id, mc);
    if (a.kind == ExitAction::kStop) {
      stop_reason_ =
          a.reason.empty() ? "vCPU " + std::to_string(p_.id) + ": machine check" : a.reason;
      return false;
    }
    if (a.kind == ExitAction::kResume) return true;
    if (attempt >= p_.max_fault_retries) {
      stop_reason_ = "vCPU " + std::to_string(p_.id) +
                     ": load still consumes poison after handled machine checks";
      return false;
    }
  }
}

bool FunctionalCpu::exit(const VmExit& e, uint64_t* ret) {
  ++exits_count_;
  const ExitAction a = exits_.handle_exit(p_.id, e);
  if (ret) *ret = a.ret;
  if (a.kind == ExitAction::kStop) {
    stop_reason_ = a.reason.empty()
                       ? "vCPU " + std::to_string(p_.id) + ": stopped by the exit handler"
                       : a.reason;
    return false;
  }
  return true;
}

}  // namespace cvmsim
