#include "hw/cpu/vcpu_module.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "hw/base/copy.h"

namespace cvmsim {

namespace {
TranslatorParams translator_params(const VcpuParams& p) {
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

// What the shared translate path reports to the timed core: cycles charged to local time and
// counted, exits through handle_exit.
struct VcpuModule::Sink {
  VcpuModule& cpu;
  void tlb_hit() {
    cpu.charge(cpu.p_.costs.tlb_hit);
    cpu.stats_.translate_cycles += cpu.p_.costs.tlb_hit.count();
  }
  void walked(const WalkResult& w, bool private_root) {
    if (private_root) ++cpu.stats_.private_walks;
    const Cycles cost =
        cpu.p_.costs.walk_ref * w.mem_refs + (w.pwc_hit ? cpu.p_.costs.pwc_hit : Cycles(0));
    cpu.charge(cost);
    cpu.stats_.translate_cycles += cost.count();
  }
  bool exit(const VmExit& e) { return cpu.handle_exit(e); }
  void retried() { ++cpu.stats_.fault_retries; }
  void give_up(Gpa gpa, unsigned attempts) {
    char m[160];
    std::snprintf(m, sizeof m,
                  "%s: access to gpa 0x%" PRIx64 " still faults after %u handled exits", cpu.name(),
                  gpa.value(), attempts);
    cpu.stop_reason_ = m;
  }
};

VcpuModule::VcpuModule(sc_core::sc_module_name name, const VcpuParams& params, Stage2Table& stage2,
                       ExitHandler& exits, std::unique_ptr<GuestProgram> program, TraceSink& trace,
                       Progress* progress)
    : sc_module(name),
      socket("socket"),
      p_(params),
      clock_(params.frequency_hz),
      exits_(exits),
      program_(std::move(program)),
      trace_(trace),
      progress_(progress),
      xlate_(translator_params(params), stage2) {
  socket.register_invalidate_direct_mem_ptr(this, &VcpuModule::invalidate_direct_mem_ptr);
  tlm_utils::tlm_quantumkeeper::set_global_quantum(
      sc_core::sc_time::from_value(clock_.to_ps(params.quantum)));
  qk_.reset();
  ext_.who = params.who;
  ext_.key = params.key;
  ext_.initiator = InitiatorKind::kCpu;
  gp_.set_extension(&ext_);
  gp_.set_streaming_width(0);
  gp_.set_byte_enable_ptr(nullptr);
  gp_.set_dmi_allowed(false);
  SC_THREAD(run);
}

void VcpuModule::sync() {
  qk_.set(sc_core::sc_time::from_value(local_ps_));
  qk_.sync();
  local_ps_ = 0;
  quantum_left_ps_ = qk_.left_ps();
}

void VcpuModule::trace(std::string_view event, const std::string& details) {
  if (!trace_.enabled()) return;
  trace_.event(sc_core::sc_time_stamp().value() + local_ps_, name(), event, details);
}

void VcpuModule::start_after(const sc_core::sc_event& e) {
  if (sc_core::sc_is_running()) {
    SC_REPORT_ERROR(name(), "start_after() must be called before the simulation starts");
    return;
  }
  gate_ = &e;
}

void VcpuModule::run() {
  thread_ = sc_core::sc_get_current_process_handle();
  if (gate_) {
    sc_core::wait(*gate_);
    trace("started", "start gate opened");  // ungated vCPUs trace nothing here, as before
  }
  start_quantum();  // after a gate, the first quantum starts now, not at time 0
  start_time_ = sc_core::sc_time_stamp();
  GuestOp op;
  uint64_t since_sync = 0;
  const bool results = program_ && program_->wants_results();
  if (program_) {
    for (;;) {
      if (!program_->next(op)) {
        // A program that ended on an error must not pass for one that ran to completion.
        if (const std::string_view err = program_->error(); !err.empty())
          stop_reason_ = std::string(name()) + ": guest program: " + std::string(err);
        break;
      }
      ++stats_.ops;
      ++since_sync;
      bool ok = true;
      const uint64_t verify_before = stats_.verify_failures;
      switch (op.kind) {
        case OpKind::kLoad:
        case OpKind::kStore:
          ok = access(op);
          break;
        case OpKind::kCompute:
          ++stats_.computes;
          charge(Cycles(op.cycles));
          break;
        case OpKind::kFence:
          ++stats_.fences;
          charge(p_.costs.fence);
          sync();
          ++stats_.syncs;
          break;
        case OpKind::kHypercall: {
          ++stats_.hypercalls;
          VmExit e;
          e.reason = ExitReason::kHypercall;
          e.nr = op.nr;
          std::memcpy(e.args, op.args, sizeof e.args);
          ok = handle_exit(e);
          break;
        }
        case OpKind::kSync:
          // Everyone at a synchronisation point agrees on the time: hand ours over first.
          sync();
          ++stats_.syncs;
          if (sync_handler_) sync_handler_->sync_point(op.nr);
          start_quantum();
          break;
      }
      if (results) {
        if (!ok) {
          program_->on_stop(stop_reason_);
        } else {
          OpResult r;
          r.verify_mismatch = stats_.verify_failures != verify_before;
          if (op.kind == OpKind::kHypercall) r.ret = last_ret_;
          program_->on_result(op, r);
        }
      }
      if (!ok) break;
      if (local_ps_ >= quantum_left_ps_) {  // qk_.need_sync()
        sync();
        ++stats_.syncs;
        if (progress_) progress_->advance(since_sync);
        since_sync = 0;
      }
    }
  }
  if (progress_) progress_->advance(since_sync);
  sync();
  finished_ = stop_reason_.empty();
  stats_.finish_time_ps = sc_core::sc_time_stamp().value();
  trace(finished_ ? "finished" : "stopped", stop_reason_);
  done_.notify(sc_core::SC_ZERO_TIME);
}

// Inlined into access(): this is the hot path of every guest load and store.
[[gnu::always_inline]] inline bool VcpuModule::access_piece(Gpa gpa, uint8_t* buf, uint32_t len,
                                                            bool write) {
  Translation x;
  if (!translate(gpa, write, x)) return false;
  uint8_t* host = x.entry ? static_cast<uint8_t*>(x.entry->host_ptr) : nullptr;
  if (!host) [[unlikely]] {
    host = dmi_lookup(x.pfn);
    if (!host) return transport(gpa, x.pfn, buf, len, write);
    if (x.entry) x.entry->host_ptr = host;  // next time straight from the TLB entry
  }
  // DMI: the memory granted this frame because its state is stable for us (same key, our own
  // data, no integrity state): the check it would make has a known outcome.
  const uint64_t off = gpa.page_offset();
  if (write)
    copy_small(host + off, buf, len);
  else
    copy_small(buf, host + off, len);
  ++stats_.dmi_accesses;
  const Cycles c = p_.costs.memory.cost(len);
  charge(c);
  stats_.memory_cycles += c.count();
  return true;
}

bool VcpuModule::access(const GuestOp& op) {
  const bool write = op.kind == OpKind::kStore;
  const uint32_t len = op.size;
  if (write) {
    ++stats_.stores;
    stats_.bytes_stored += len;
    fill_pattern(op.pattern, op.value, op.gpa.value(), std::span<uint8_t>(buf_.data(), len));
  } else {
    ++stats_.loads;
    stats_.bytes_loaded += len;
  }
  // Split at 4 KiB boundaries: each piece is translated on its own.
  uint32_t done = 0;
  while (done < len) {
    const Gpa g = op.gpa + done;
    const uint32_t n =
        static_cast<uint32_t>(std::min<uint64_t>(len - done, kPageBytes - g.page_offset()));
    if (done) ++stats_.page_crossings;
    if (!access_piece(g, buf_.data() + done, n, write)) return false;
    done += n;
  }
  if (!write && op.verify) {
    if (auto bad = check_pattern(op.pattern, op.value, op.gpa.value(),
                                 std::span<const uint8_t>(buf_.data(), len))) {
      if (stats_.verify_failures++ == 0) {
        char m[160];
        std::snprintf(m, sizeof m, "gpa 0x%" PRIx64 " read 0x%02x, expected 0x%02x",
                      op.gpa.value() + *bad, buf_[*bad],
                      pattern_byte(op.pattern, op.value, op.gpa.value() + *bad));
        first_verify_failure_ = m;
      }
    }
  }
  return true;
}

bool VcpuModule::translate_slow(Gpa gpa, bool write, TlbEntry* hit, Translation& out) {
  Sink sink{*this};
  return xlate_.translate_slow(gpa, write, hit, out, sink);
}

bool VcpuModule::handle_exit(const VmExit& e) {
  switch (e.reason) {
    case ExitReason::kStage2Fault:
      ++stats_.exits_stage2;
      break;
    case ExitReason::kHypercall:
      ++stats_.exits_hypercall;
      break;
    case ExitReason::kBusError:
      ++stats_.exits_bus_error;
      break;
    case ExitReason::kVirtualizationException:
    case ExitReason::kVmmCommunication:
      ++stats_.exits_guest_exception;
      break;
  }
  if (trace_.enabled()) {
    char d[120];
    std::snprintf(d, sizeof d, "%s gpa=0x%" PRIx64 " %s nr=%" PRIu64,
                  std::string(name_of(e.reason)).c_str(), e.gpa.value(), e.write ? "write" : "read",
                  e.nr);
    trace("vm_exit", d);
  }
  VmExit timed = e;
  timed.time_ps = sc_core::sc_time_stamp().value() + local_ps_;
  const ExitAction a = exits_.handle_exit(p_.id, timed);
  last_ret_ = a.ret;
  const Cycles cost = p_.costs.vm_exit_round_trip + a.cost;
  charge(cost);
  stats_.exit_cycles += cost.count();
  if (a.kind == ExitAction::kStop) {
    stop_reason_ =
        a.reason.empty() ? std::string(name()) + ": stopped by the exit handler" : a.reason;
    return false;
  }
  return true;
}

uint8_t* VcpuModule::dmi_lookup(Pfn pfn) {
  const DmiSlot& s = dmi_[pfn.value() & (kDmiSlots - 1)];
  return s.pfn == pfn.value() ? s.ptr : nullptr;
}

void VcpuModule::dmi_request(Pfn pfn) {
  tlm::tlm_dmi dmi;
  gp_.set_address(pfn_to_hpa(pfn).value());
  gp_.set_command(tlm::TLM_READ_COMMAND);
  if (!socket->get_direct_mem_ptr(gp_, dmi)) return;
  // Only whole-frame grants are cached: one frame per slot.
  if (dmi.get_start_address() > pfn_to_hpa(pfn).value() ||
      dmi.get_end_address() < pfn_to_hpa(pfn).value() + kPageBytes - 1 ||
      !dmi.is_read_write_allowed())
    return;
  DmiSlot& s = dmi_[pfn.value() & (kDmiSlots - 1)];
  s.pfn = pfn.value();
  s.ptr = dmi.get_dmi_ptr() + (pfn_to_hpa(pfn).value() - dmi.get_start_address());
}

void VcpuModule::invalidate_direct_mem_ptr(sc_dt::uint64 start, sc_dt::uint64 end) {
  const uint64_t first = start >> kPageShift, last = end >> kPageShift;
  if (last - first >= kDmiSlots) {
    for (auto& s : dmi_) s = DmiSlot{};
  } else {
    for (uint64_t f = first; f <= last; ++f) {
      DmiSlot& s = dmi_[f & (kDmiSlots - 1)];
      if (s.pfn == f) s = DmiSlot{};
    }
  }
  xlate_.tlb().clear_host_ptrs(Pfn(first), last - first + 1);
  ++stats_.dmi_invalidations;
}

// Kept out of line so that the DMI path in access_piece stays small.
[[gnu::noinline]] bool VcpuModule::transport(Gpa gpa, Pfn pfn, uint8_t* buf, uint32_t len,
                                             bool write) {
  if (xlate_.policy()) ext_.key = key_for(gpa);
  for (unsigned attempt = 0;; ++attempt) {
    gp_.set_command(write ? tlm::TLM_WRITE_COMMAND : tlm::TLM_READ_COMMAND);
    gp_.set_address(pfn_to_hpa(pfn).value() + gpa.page_offset());
    gp_.set_data_ptr(buf);
    gp_.set_data_length(len);
    gp_.set_streaming_width(len);
    gp_.set_dmi_allowed(false);
    gp_.set_response_status(tlm::TLM_INCOMPLETE_RESPONSE);
    ext_.clear_response();
    sc_core::sc_time delay = sc_core::SC_ZERO_TIME;
    socket->b_transport(gp_, delay);
    ++stats_.transport_accesses;
    local_ps_ += delay.value();
    quantum_left_ps_ = qk_.left_ps();  // in case the target waited (LT targets may)
    const uint64_t cycles = clock_.from_ps(delay.value()).count();
    stats_.memory_cycles += cycles;
    stats_.busy_cycles += cycles;
    if (!gp_.is_response_ok()) {
      VmExit e;
      e.reason = ExitReason::kBusError;
      e.gpa = gpa;
      e.write = write;
      handle_exit(e);
      if (stop_reason_.empty())
        stop_reason_ = std::string(name()) + ": bus error (" + gp_.get_response_string() + ")";
      return false;
    }
    // Only a load consumes poison (writes are never checked, tdx-snp.md A9).
    if (!ext_.poisoned || write) [[likely]]
      break;
    const ExitAction::Kind k = machine_check(gpa, pfn, len, attempt);
    if (k == ExitAction::kStop) return false;
    if (k == ExitAction::kResume) break;  // the load completes with the zeros it read
  }
  if (gp_.is_dmi_allowed()) dmi_request(pfn);
  return true;
}

ExitAction::Kind VcpuModule::machine_check(Gpa gpa, Pfn pfn, uint32_t len, unsigned attempt) {
  ++stats_.machine_checks;
  MachineCheck mc;
  mc.gpa = gpa + ext_.poison_offset;
  mc.hpa = pfn_to_hpa(pfn) + (gpa.page_offset() + ext_.poison_offset);
  mc.size = len;
  mc.key = key_for(gpa);
  mc.generated = ext_.poison_generated;
  if (trace_.enabled()) {
    char d[120];
    std::snprintf(d, sizeof d, "gpa=0x%" PRIx64 " hpa=0x%" PRIx64 " key=%u%s", mc.gpa.value(),
                  mc.hpa.value(), unsigned{mc.key}, mc.generated ? " generated" : "");
    trace("machine_check", d);
  }
  const ExitAction a = exits_.handle_machine_check(p_.id, mc);
  const Cycles cost = p_.costs.vm_exit_round_trip + a.cost;
  charge(cost);
  stats_.exit_cycles += cost.count();
  if (a.kind == ExitAction::kStop) {
    stop_reason_ = a.reason.empty()
                       ? std::string(name()) + ": machine check (stopped by the exit handler)"
                       : a.reason;
    return ExitAction::kStop;
  }
  if (a.kind == ExitAction::kRetry && attempt >= p_.max_fault_retries) {
    char m[160];
    std::snprintf(m, sizeof m,
                  "%s: load at gpa 0x%" PRIx64
                  " still consumes poison after %u handled machine checks",
                  name(), gpa.value(), attempt + 1);
    stop_reason_ = m;
    return ExitAction::kStop;
  }
  return a.kind;
}

void VcpuModule::describe_stats(StatVisitor& v) const {
  v.counter("ops", stats_.ops, "ops", "guest operations executed");
  v.counter("loads", stats_.loads, "accesses", "guest loads");
  v.counter("stores", stats_.stores, "accesses", "guest stores");
  v.counter("computes", stats_.computes, "ops", "compute operations");
  v.counter("fences", stats_.fences, "ops", "fences (each synchronises with simulated time)");
  v.counter("hypercalls", stats_.hypercalls, "ops", "hypercall operations");
  v.counter("bytes_loaded", stats_.bytes_loaded, "bytes", "bytes read by guest loads");
  v.counter("bytes_stored", stats_.bytes_stored, "bytes", "bytes written by guest stores");
  v.counter("page_crossings", stats_.page_crossings, "count",
            "extra 4 KiB pieces from accesses that crossed a page boundary");
  v.counter("dmi_accesses", stats_.dmi_accesses, "accesses",
            "access pieces served through a DMI pointer");
  v.counter("transport_accesses", stats_.transport_accesses, "accesses",
            "access pieces served through b_transport");
  v.counter("dmi_invalidations", stats_.dmi_invalidations, "count", "DMI invalidations received");
  v.counter("exits_stage2", stats_.exits_stage2, "exits", "VM exits for stage-2 faults");
  v.counter("exits_hypercall", stats_.exits_hypercall, "exits", "VM exits for hypercalls");
  v.counter("exits_bus_error", stats_.exits_bus_error, "exits",
            "accesses the memory system refused");
  v.counter(
      "machine_checks", stats_.machine_checks, "exits",
      "machine checks: loads that consumed poisoned memory (each handled by the exit handler)");
  if (xlate_.has_private_root())
    v.counter("private_walks", stats_.private_walks, "walks",
              "walks of the private root (TDX Secure EPT): GPAs with the shared bit clear");
  // Only a policy's checks raise guest exceptions; without checks the statistic is left out, so
  // that other VMs' statistics stay as they were.
  if (xlate_.policy() && xlate_.policy()->has_checks())
    v.counter("exits_guest_exception", stats_.exits_guest_exception, "exits",
              "exceptions delivered to the guest kernel (#VE, #VC) by the checks after "
              "translation");
  v.counter("fault_retries", stats_.fault_retries, "count",
            "accesses retried after a handled stage-2 fault");
  v.counter("verify_failures", stats_.verify_failures, "loads",
            "verified loads that did not read back the expected pattern");
  v.counter("busy_cycles", stats_.busy_cycles, "cycles", "cycles charged for all operations");
  v.counter("translate_cycles", stats_.translate_cycles, "cycles",
            "cycles spent in TLB lookups and stage-2 walks");
  v.counter("memory_cycles", stats_.memory_cycles, "cycles",
            "cycles spent moving data once translated");
  v.counter("exit_cycles", stats_.exit_cycles, "cycles",
            "cycles spent in VM exits and their handlers");
  v.counter("syncs", stats_.syncs, "count",
            "synchronisations with the SystemC kernel (quantum expiries and fences)");
  v.counter("finish_time_ps", stats_.finish_time_ps, "ps",
            "simulated time at which the vCPU finished or stopped");
  PrefixedStats tlb(v, "tlb");
  xlate_.tlb().describe_stats(tlb);
  PrefixedStats pwc(v, "pwc");
  xlate_.pwc().describe_stats(pwc);
  PrefixedStats walker(v, "walker");
  xlate_.walker().describe_stats(walker);
}

}  // namespace cvmsim
