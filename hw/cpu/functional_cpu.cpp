#include "hw/cpu/functional_cpu.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace cvmsim {

namespace {
TranslatorParams translator_params(const FunctionalCpuParams& p) {
  TranslatorParams t;
  t.vcpu = p.id;
  t.who = p.who;
  t.key = p.key;
  t.asid = p.asid;
  t.tlb_sets = p.tlb_sets;
  t.tlb_ways = p.tlb_ways;
  t.pwc_entries = p.pwc_entries;
  t.pwc_ways = p.pwc_ways;
  t.max_fault_retries = p.max_fault_retries;
  return t;
}
}  // namespace

struct FunctionalCpu::Sink {
  FunctionalCpu& cpu;
  void tlb_hit() {}
  void walked(const WalkResult&, bool) {}
  bool exit(const VmExit& e) { return cpu.exit(e); }
  void retried() {}
  void give_up(Gpa gpa, unsigned attempts) {
    char m[160];
    std::snprintf(m, sizeof m,
                  "vCPU %u: access to gpa 0x%" PRIx64 " still faults after %u handled exits",
                  cpu.p_.id, gpa.value(), attempts);
    cpu.stop_reason_ = m;
  }
};

FunctionalCpu::FunctionalCpu(const FunctionalCpuParams& p, PhysMem& mem, const Stage2Table& stage2,
                             ExitHandler& exits)
    : p_(p),
      mem_(mem),
      port_(mem, InitiatorId{p.who, InitiatorKind::kCpu, p.key}, nullptr),
      exits_(exits),
      xlate_(translator_params(p), stage2) {}

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

bool FunctionalCpu::access_piece(Gpa gpa, uint8_t* buf, uint32_t len, bool write) {
  Translation x;
  Sink sink{*this};
  if (!xlate_.translate(gpa, write, x, sink)) return false;
  const Pfn pfn = x.pfn;
  const Hpa hpa = pfn_to_hpa(pfn) + gpa.page_offset();
  const KeyId key = xlate_.key_for(gpa);
  std::span<uint8_t> data(buf, len);
  if (write) {
    (void)port_.write(hpa, data, WriteOptions{}.under(key));
    return true;
  }
  // MemoryModule::b_transport's read, then VcpuModule::transport's machine-check loop.
  for (unsigned attempt = 0;; ++attempt) {
    const IntegrityResult r = port_.read(hpa, data, key).integrity;
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
