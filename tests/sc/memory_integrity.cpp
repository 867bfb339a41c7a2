// TDX memory integrity through the timed shell (hw only; tdx-snp.md A9, docs/memory-integrity.md):
// MemoryModule's b_transport and DMI driven directly by a host-side initiator, then vCPUs of a TD
// consuming poison and getting a machine check (#MC) through their ExitHandler.
//
// Part A, a host initiator (b_transport and get_direct_mem_ptr through the router):
//   - a key id outside the configured range is an address error; a misused full-line flag a
//     command error;
//   - a host read of a TD-private line returns zeros, no poison;
//   - a host write, then a TD read: the response says poisoned and generated, with the offset of
//     the first poisoned byte, the bytes are zeros; every later read of the line (host or TD) is
//     poisoned, none generates;
//   - a TD read of a never-written line under its private key is poisoned;
//   - a MOVDIR64B-style full-line write clears the poison;
//   - partial-write erratum on: a host partial write to a TD-owned line reports generated poison
//     and the host's own later read is poisoned; off: neither;
//   - Ci: a write under another private key, then the TD's read: poisoned; Li: not detected;
//   - DMI: granted to the TD for a page all of whose lines it owns, refused to the host; a host
//     write revokes it; refused to the TD for a partly owned page; a host page's grant is revoked
//     when the TD writes a line of it; the b_transport DMI hint follows the same rule.
// Part B, TD vCPUs (key 17) started after part A:
//   - a load consuming poison the host caused reports a MachineCheck (gpa, hpa, key, generated)
//     and the handler's kStop stops the vCPU with the handler's reason, later ops not run;
//   - kResume: the load completes with zeros and the program goes on;
//   - kRetry after the handler cleared the poison (MOVDIR64B under the TD key): the load is
//     re-issued and reads the new data;
//   - a handler that does not override handle_machine_check stops the vCPU (default);
//   - a TD vCPU on its own accepted page runs through DMI with no machine check.
// SystemC elaborates once per process, so this is its own executable and ctest entry.
#include <tlm_utils/simple_initiator_socket.h>

#include <cinttypes>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <systemc>
#include <vector>

#include "hw/cpu/vcpu_module.h"
#include "hw/memory/memory_module.h"
#include "hw/mmu/stage2_table.h"
#include "hw/platform/router_module.h"

using namespace cvmsim;

namespace {

int failures = 0;
#define EXPECT(cond)                                                          \
  do {                                                                        \
    if (!(cond)) {                                                            \
      std::fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                             \
    }                                                                         \
  } while (0)

constexpr KeyId kHostKey = 0;
constexpr KeyId kTdKey = 17;
constexpr KeyId kOtherTdKey = 18;
constexpr Principal kTd = vm_principal(0);
constexpr uint64_t kTdValue = 0x1122334455667788ull;  // the TD's data (PatternKind::kValue)
constexpr uint64_t kRetryValue = 0xa5a5a5a5f00dcafeull;

KeyConfig config(IntegrityMode mode, bool erratum) {
  return KeyConfig::tdx(64, 16, mode, erratum);
}

struct Grab final : StatVisitor {
  void counter(std::string_view n, const uint64_t& v, std::string_view, std::string_view) override {
    values[std::string(n)] = v;
  }
  void value(std::string_view, const double&, std::string_view, std::string_view) override {}
  std::map<std::string, uint64_t> values;
};

// A guest program from a list of operations.
class OpList final : public GuestProgram {
 public:
  explicit OpList(std::vector<GuestOp> ops) : ops_(std::move(ops)) {}
  bool next(GuestOp& op) override {
    if (i_ == ops_.size()) return false;
    op = ops_[i_++];
    return true;
  }

 private:
  std::vector<GuestOp> ops_;
  size_t i_ = 0;
};

GuestOp verified_load(Gpa g, uint32_t n, PatternKind k, uint64_t v) {
  GuestOp op = GuestOp::load(g, n);
  op.pattern = k;
  op.value = v;
  op.verify = true;
  return op;
}

// What the TDX module would do with a machine check, per test: stop, resume, clear and retry, or
// leave it to ExitHandler's default.
class McHandler final : public ExitHandler {
 public:
  enum Mode { kStopIt, kResumeIt, kClearAndRetry, kDefault };
  McHandler(Mode m, PhysMem& mem) : mode_(m), mem_(mem) {}
  ExitAction handle_exit(unsigned, const VmExit& e) override {
    ExitAction a;  // kStop: every page is mapped, so any exit is a test bug
    a.reason = "unexpected exit " + std::string(name_of(e.reason));
    return a;
  }
  ExitAction handle_machine_check(unsigned id, const MachineCheck& mc) override {
    seen.push_back(mc);
    ExitAction a;
    switch (mode_) {
      case kStopIt:
        a.kind = ExitAction::kStop;
        a.reason = "TD marked FATAL";
        return a;
      case kResumeIt:
        a.kind = ExitAction::kResume;
        return a;
      case kClearAndRetry: {
        // MOVDIR64B the line under the TD's key with new data.
        const Hpa line(mc.hpa.value() & ~(kLineBytes - 1));
        uint8_t buf[kLineBytes];
        fill_pattern(PatternKind::kValue, kRetryValue, line.value(), buf);
        mem_.write_keyed(line, buf, KeyedAccess{kTdKey, kTd, true});
        a.kind = ExitAction::kRetry;
        return a;
      }
      case kDefault:
        return ExitHandler::handle_machine_check(id, mc);
    }
    return a;
  }
  std::vector<MachineCheck> seen;

 private:
  Mode mode_;
  PhysMem& mem_;
};

// Part A: a host-side initiator driving the memory directly.
class HostInitiator : public sc_core::sc_module {
 public:
  tlm_utils::simple_initiator_socket<HostInitiator> socket;

  HostInitiator(sc_core::sc_module_name n, PhysMem& mem, std::vector<Pfn> frames)
      : sc_module(n), socket("socket"), mem_(mem), f_(std::move(frames)) {
    socket.register_invalidate_direct_mem_ptr(this, &HostInitiator::invalidate);
    gp_.set_extension(&ext_);
    SC_THREAD(run);
  }
  ~HostInitiator() override { gp_.clear_extension(&ext_); }
  const sc_core::sc_event& done() const { return done_; }
  bool ran = false;

 private:
  SC_HAS_PROCESS(HostInitiator);

  struct Reply {
    tlm::tlm_response_status status;
    bool poisoned, generated, dmi_hint;
    uint32_t offset;
    std::vector<uint8_t> data;
  };
  Reply access(bool write, uint64_t addr, std::vector<uint8_t> data, KeyId key, Principal who,
               bool full_line = false) {
    gp_.set_command(write ? tlm::TLM_WRITE_COMMAND : tlm::TLM_READ_COMMAND);
    gp_.set_address(addr);
    gp_.set_data_ptr(data.data());
    gp_.set_data_length(static_cast<unsigned>(data.size()));
    gp_.set_streaming_width(static_cast<unsigned>(data.size()));
    gp_.set_byte_enable_ptr(nullptr);
    gp_.set_dmi_allowed(false);
    gp_.set_response_status(tlm::TLM_INCOMPLETE_RESPONSE);
    ext_.who = who;
    ext_.key = key;
    ext_.initiator = InitiatorKind::kHostKernel;
    ext_.full_line_write = full_line;
    ext_.clear_response();
    sc_core::sc_time delay = sc_core::SC_ZERO_TIME;
    socket->b_transport(gp_, delay);
    return Reply{gp_.get_response_status(), ext_.poisoned,      ext_.poison_generated,
                 gp_.is_dmi_allowed(),      ext_.poison_offset, std::move(data)};
  }
  Reply read(uint64_t addr, size_t n, KeyId key, Principal who = kHostKernel) {
    return access(false, addr, std::vector<uint8_t>(n, 0xee), key, who);
  }
  Reply write(uint64_t addr, size_t n, uint8_t byte, KeyId key, Principal who,
              bool full_line = false) {
    return access(true, addr, std::vector<uint8_t>(n, byte), key, who, full_line);
  }
  bool dmi(Pfn f, KeyId key, Principal who) {
    gp_.set_address(pfn_to_hpa(f).value());
    gp_.set_command(tlm::TLM_READ_COMMAND);
    ext_.key = key;
    ext_.who = who;
    tlm::tlm_dmi d;
    return socket->get_direct_mem_ptr(gp_, d);
  }
  void invalidate(sc_dt::uint64 start, sc_dt::uint64 end) { invalidated_.emplace_back(start, end); }
  bool was_invalidated(Pfn f) const {
    const uint64_t a = pfn_to_hpa(f).value();
    for (const auto& [s, e] : invalidated_)
      if (s <= a && a + kPageBytes - 1 <= e) return true;
    return false;
  }
  static bool zeros(const std::vector<uint8_t>& v) {
    for (uint8_t b : v)
      if (b) return false;
    return true;
  }
  // The TDX module's page initialisation (MOVDIR64B zeroing under the TD's key), then TD data.
  void td_page(Pfn f) {
    mem_.fill_keyed(pfn_to_hpa(f), kPageBytes, 0, KeyedAccess{kTdKey, kTd, true});
    std::vector<uint8_t> buf(kPageBytes);
    fill_pattern(PatternKind::kValue, kTdValue, 0, buf);
    mem_.write_keyed(pfn_to_hpa(f), buf, KeyedAccess{kTdKey, kTd, false});
  }

  void run() {
    ran = true;
    const uint64_t a0 = pfn_to_hpa(f_[0]).value();
    // Key range and the full-line flag.
    EXPECT(read(a0, 8, 64).status == tlm::TLM_ADDRESS_ERROR_RESPONSE);  // keys are [0, 64)
    EXPECT(read(a0, 8, 63).status == tlm::TLM_OK_RESPONSE);
    EXPECT(write(a0 + 8, 64, 0, kTdKey, kTd, true).status == tlm::TLM_COMMAND_ERROR_RESPONSE);
    EXPECT(write(a0, 60, 0, kTdKey, kTd, true).status == tlm::TLM_COMMAND_ERROR_RESPONSE);
    EXPECT(access(false, a0, std::vector<uint8_t>(64), kTdKey, kTd, true).status ==
           tlm::TLM_COMMAND_ERROR_RESPONSE);

    // Host read of a TD-private line: zeros, no poison.
    const Pfn td = f_[1];
    const uint64_t t = pfn_to_hpa(td).value();
    td_page(td);
    Reply r = read(t + 64, 16, kHostKey);
    EXPECT(r.status == tlm::TLM_OK_RESPONSE && zeros(r.data) && !r.poisoned && !r.generated);
    EXPECT(mem_.poison_lines(td) == 0);
    r = read(t + 64, 16, kTdKey, kTd);  // the TD reads its data
    EXPECT(!r.poisoned && r.data[0] == static_cast<uint8_t>(kTdValue));

    // Host write, then TD read: poison generated and signalled; sticky for everyone after.
    EXPECT(write(t + 2 * 64 + 8, 8, 0x5a, kHostKey, kHostKernel).status == tlm::TLM_OK_RESPONSE);
    r = read(t + 2 * 64, 64, kHostKey);  // the host reads its own write: fine
    EXPECT(!r.poisoned && r.data[8] == 0x5a);
    r = read(t + 2 * 64 - 16, 32, kTdKey, kTd);  // the last 16 bytes of line 1, 16 of line 2
    EXPECT(r.status == tlm::TLM_OK_RESPONSE);
    EXPECT(r.poisoned && r.generated);
    EXPECT(r.offset == 16);
    EXPECT(r.data[0] == static_cast<uint8_t>(kTdValue));  // line 1 is fine
    EXPECT(zeros(std::vector<uint8_t>(r.data.begin() + 16, r.data.end())));
    for (KeyId k : {kHostKey, kTdKey, kOtherTdKey}) {
      r = read(t + 2 * 64 + 8, 8, k, k == kHostKey ? kHostKernel : kTd);
      EXPECT(r.poisoned && !r.generated && r.offset == 0 && zeros(r.data));
    }
    // A never-written line under the TD's key.
    r = read(pfn_to_hpa(f_[2]).value(), 8, kTdKey, kTd);
    EXPECT(r.poisoned && r.generated && zeros(r.data));
    // MOVDIR64B clears it.
    EXPECT(write(t + 2 * 64, 64, 0x77, kTdKey, kTd, true).status == tlm::TLM_OK_RESPONSE);
    r = read(t + 2 * 64, 8, kTdKey, kTd);
    EXPECT(!r.poisoned && r.data[0] == 0x77);
    EXPECT(mem_.poison_lines(td) == 0);

    // Partial-write erratum.
    EXPECT(mem_.set_key_config(config(IntegrityMode::kCi, true)).ok());
    const Pfn pw = f_[3];
    td_page(pw);
    r = write(pfn_to_hpa(pw).value() + 4, 4, 1, kHostKey, kHostKernel);
    EXPECT(r.status == tlm::TLM_OK_RESPONSE && r.generated && !r.poisoned);
    r = read(pfn_to_hpa(pw).value(), 8, kHostKey);
    EXPECT(r.poisoned && !r.generated);  // the host's own read gets #MC
    r = write(pfn_to_hpa(pw).value() + 64, 64, 1, kHostKey, kHostKernel);  // a full line: fine
    EXPECT(!r.generated);
    EXPECT(mem_.set_key_config(config(IntegrityMode::kCi, false)).ok());
    r = write(pfn_to_hpa(pw).value() + 128 + 4, 4, 1, kHostKey, kHostKernel);
    EXPECT(!r.generated);
    r = read(pfn_to_hpa(pw).value() + 128, 8, kHostKey);
    EXPECT(!r.poisoned && r.data[4] == 1);

    // Ci detects another private key's write; Li does not.
    for (IntegrityMode mode : {IntegrityMode::kCi, IntegrityMode::kLi}) {
      EXPECT(mem_.set_key_config(config(mode, false)).ok());
      const Pfn p = mode == IntegrityMode::kCi ? f_[4] : f_[5];
      td_page(p);
      write(pfn_to_hpa(p).value(), 8, 0x42, kOtherTdKey, vm_principal(1));
      r = read(pfn_to_hpa(p).value(), 8, kTdKey, kTd);
      EXPECT(r.poisoned == (mode == IntegrityMode::kCi));
      EXPECT(r.generated == (mode == IntegrityMode::kCi));
    }
    EXPECT(mem_.set_key_config(config(IntegrityMode::kCi, false)).ok());

    // DMI.
    const Pfn own = f_[6];
    td_page(own);
    EXPECT(dmi(own, kTdKey, kTd));  // all 64 lines the TD's, under its key
    EXPECT(!dmi(own, kHostKey, kHostKernel));
    EXPECT(read(pfn_to_hpa(own).value(), 8, kTdKey, kTd).dmi_hint);
    EXPECT(!read(pfn_to_hpa(own).value(), 8, kHostKey).dmi_hint);
    EXPECT(!was_invalidated(own));
    write(pfn_to_hpa(own).value() + 8, 8, 3, kHostKey, kHostKernel);  // clears a line's owner bit
    EXPECT(was_invalidated(own));
    EXPECT(!dmi(own, kTdKey, kTd));  // no longer all owned (and relabelled)
    const Pfn part = f_[7];
    write(pfn_to_hpa(part).value(), 8, 1, kTdKey, kTd);  // one line owned
    EXPECT(!dmi(part, kTdKey, kTd));
    EXPECT(!read(pfn_to_hpa(part).value(), 8, kTdKey, kTd).dmi_hint);
    const Pfn host = f_[8];
    write(pfn_to_hpa(host).value(), 64, 9, kHostKey, kHostKernel);
    EXPECT(read(pfn_to_hpa(host).value(), 8, kHostKey).dmi_hint);
    EXPECT(dmi(host, kHostKey, kHostKernel));
    EXPECT(!was_invalidated(host));
    write(pfn_to_hpa(host).value() + 64, 8, 1, kTdKey, kTd);
    EXPECT(was_invalidated(host));
    EXPECT(!dmi(host, kHostKey, kHostKernel));

    done_.notify(sc_core::SC_ZERO_TIME);
  }

  PhysMem& mem_;
  std::vector<Pfn> f_;
  tlm::tlm_generic_payload gp_;
  AccessExt ext_;
  std::vector<std::pair<uint64_t, uint64_t>> invalidated_;
  sc_core::sc_event done_{"done"};
};

class Top : public sc_core::sc_module {
 public:
  explicit Top(sc_core::sc_module_name n)
      : sc_module(n),
        clock_(2'000'000'000),
        mem_(16 << 20, MemMode::kData, config(IntegrityMode::kCi, false)),
        memory_("memory", mem_, clock_, MemoryTiming{}),
        router_("router", clock_, Cycles(0)) {
    router_.initiator_socket.bind(memory_.socket);
    router_.map(0, mem_.size_bytes(), 0, "dram");
    stage2_ = std::move(*Stage2Table::create(mem_, frames_, Stage2Format::kEpt4));
    for (uint64_t p = 0; p < 8; ++p) {
      const auto f = frames_.alloc(PageSize::k4K);
      if (!f.ok() || !stage2_->map(Gpa(p * kPageBytes), *f, PageSize::k4K, kPermsRWX).ok())
        throw std::runtime_error("map");
      guest_.push_back(*f);
    }
    std::vector<Pfn> scratch;
    for (unsigned i = 0; i < 9; ++i) scratch.push_back(*frames_.alloc(PageSize::k4K));
    host_ = std::make_unique<HostInitiator>("host", mem_, scratch);
    host_->socket.bind(router_.target_socket);

    // Guest pages for part B, prepared as the TDX module and the host would have left them.
    for (unsigned p = 0; p < 5; ++p) td_page(guest_[p]);
    auto host_write = [&](unsigned page, uint64_t off) {
      const uint8_t b[8] = {1, 2, 3, 4, 5, 6, 7, 8};
      mem_.write_keyed(pfn_to_hpa(guest_[page]) + off, b,
                       KeyedAccess{kHostKey, kHostKernel, false});
    };
    host_write(1, 2 * 64);  // page 1 line 2: the stop test's load poisons it
    host_write(2, 0);       // page 2 line 0: poisoned below by a TD read (stored poison)
    uint8_t tmp[8];
    (void)mem_.read_keyed(pfn_to_hpa(guest_[2]), tmp, kTdKey);
    host_write(3, 0);  // page 3 line 0: the retry test
    host_write(4, 0);  // page 4 line 0: the default handler

    const GuestOp td_line1 =
        verified_load(Gpa(2 * kPageBytes + 64), 8, PatternKind::kValue, kTdValue);
    stop = add("td_stop", McHandler::kStopIt,
               {GuestOp::load(Gpa(kPageBytes + 2 * 64 + 8), 8), GuestOp::load(Gpa(0), 8)});
    resume = add("td_resume", McHandler::kResumeIt,
                 {verified_load(Gpa(2 * kPageBytes), 8, PatternKind::kZero, 0), td_line1});
    retry = add("td_retry", McHandler::kClearAndRetry,
                {verified_load(Gpa(3 * kPageBytes), 8, PatternKind::kValue, kRetryValue)});
    dflt = add("td_default", McHandler::kDefault, {GuestOp::load(Gpa(4 * kPageBytes + 16), 8)});
    std::vector<GuestOp> own;
    for (unsigned i = 0; i < 50; ++i) {
      own.push_back(GuestOp::store(Gpa(8 * i), 8, kTdValue));
      own.push_back(verified_load(Gpa(8 * i), 8, PatternKind::kValue, kTdValue));
    }
    dmi = add("td_dmi", McHandler::kStopIt, own);
  }

  struct Cpu {
    VcpuModule* vcpu;
    McHandler* handler;
  };
  Cpu stop{}, resume{}, retry{}, dflt{}, dmi{};
  std::vector<Pfn> guest_;
  HostInitiator& host() { return *host_; }
  MemoryModule& memory() { return memory_; }
  PhysMem& mem() { return mem_; }

 private:
  struct Frames final : FrameAllocator {
    Result<Pfn> alloc(PageSize) override { return Pfn(next++); }
    void free(Pfn, PageSize) override {}
    uint64_t next = 1024;
  };

  void td_page(Pfn f) {
    mem_.fill_keyed(pfn_to_hpa(f), kPageBytes, 0, KeyedAccess{kTdKey, kTd, true});
    std::vector<uint8_t> buf(kPageBytes);
    fill_pattern(PatternKind::kValue, kTdValue, 0, buf);
    mem_.write_keyed(pfn_to_hpa(f), buf, KeyedAccess{kTdKey, kTd, false});
  }

  Cpu add(const char* name, McHandler::Mode mode, std::vector<GuestOp> ops) {
    handlers_.push_back(std::make_unique<McHandler>(mode, mem_));
    VcpuParams p;
    p.id = static_cast<unsigned>(cpus_.size());
    p.who = kTd;
    p.key = kTdKey;
    p.asid = 1;
    auto cpu =
        std::make_unique<VcpuModule>(name, p, *stage2_, *handlers_.back(),
                                     std::make_unique<OpList>(std::move(ops)), trace_, nullptr);
    cpu->socket.bind(router_.target_socket);
    cpu->start_after(host_->done());
    cpus_.push_back(std::move(cpu));
    return Cpu{cpus_.back().get(), handlers_.back().get()};
  }

  Clock clock_;
  PhysMem mem_;
  Frames frames_;
  MemoryModule memory_;
  RouterModule router_;
  std::unique_ptr<Stage2Table> stage2_;
  std::unique_ptr<HostInitiator> host_;
  NullTrace trace_;
  std::vector<std::unique_ptr<McHandler>> handlers_;
  std::vector<std::unique_ptr<VcpuModule>> cpus_;
};

uint64_t stat(const VcpuModule& v, const char* name) {
  Grab g;
  v.describe_stats(g);
  return g.values.at(name);
}

}  // namespace

// libsystemc references sc_main; this test drives the kernel from main.
extern "C" int sc_main(int, char**) {
  return 0;
}

int main() {
  setenv("SYSTEMC_DISABLE_COPYRIGHT_MESSAGE", "1", 1);
  sc_core::sc_report_handler::set_actions("/IEEE_Std_1666/deprecated", sc_core::SC_DO_NOTHING);
  sc_core::sc_set_time_resolution(1, sc_core::SC_PS);
  Top top("top");
  sc_core::sc_start();
  EXPECT(top.host().ran);

  // kStop: the handler's reason, one machine check, the second op never ran.
  {
    const VcpuModule& v = *top.stop.vcpu;
    EXPECT(!v.finished());
    EXPECT(v.stop_reason() == "TD marked FATAL");
    EXPECT(stat(v, "machine_checks") == 1);
    EXPECT(stat(v, "ops") == 1);
    EXPECT(top.stop.handler->seen.size() == 1);
    if (top.stop.handler->seen.size() == 1) {
      const MachineCheck& mc = top.stop.handler->seen[0];
      EXPECT(mc.gpa == Gpa(kPageBytes + 2 * 64 + 8));
      EXPECT(mc.hpa == pfn_to_hpa(top.guest_[1]) + (2 * 64 + 8));
      EXPECT(mc.key == kTdKey);
      EXPECT(mc.size == 8);
      EXPECT(mc.generated);
    }
    EXPECT(top.mem().poison_lines(top.guest_[1]) == uint64_t{1} << 2);
  }
  // kResume: the poisoned load read zeros (verified against the zero pattern), the next load the
  // TD's data.
  {
    const VcpuModule& v = *top.resume.vcpu;
    EXPECT(v.finished());
    EXPECT(stat(v, "machine_checks") == 1);
    EXPECT(stat(v, "ops") == 2);
    EXPECT(v.verify_failures() == 0);
    EXPECT(top.resume.handler->seen.size() == 1 && !top.resume.handler->seen[0].generated);
  }
  // kRetry after clearing: the load reads what the handler wrote.
  {
    const VcpuModule& v = *top.retry.vcpu;
    EXPECT(v.finished());
    EXPECT(stat(v, "machine_checks") == 1);
    EXPECT(v.verify_failures() == 0);
    EXPECT(top.mem().poison_lines(top.guest_[3]) == 0);
  }
  // The default handler stops.
  {
    const VcpuModule& v = *top.dflt.vcpu;
    EXPECT(!v.finished());
    EXPECT(v.stop_reason().find("machine check: poison consumed at gpa 0x4010") !=
           std::string::npos);
    EXPECT(top.dflt.handler->seen.size() == 1);
  }
  // A TD on its own accepted page: DMI, no machine check.
  {
    const VcpuModule& v = *top.dmi.vcpu;
    EXPECT(v.finished());
    EXPECT(stat(v, "machine_checks") == 0);
    EXPECT(stat(v, "dmi_accesses") > 0);
    EXPECT(v.verify_failures() == 0);
  }
  Grab m;
  top.memory().describe_stats(m);
  EXPECT(m.values.at("key_errors") == 1);
  EXPECT(m.values.at("command_errors") == 3);
  EXPECT(m.values.at("poisoned_reads") > 0);
  EXPECT(m.values.at("poisoning_reads") > 0);
  EXPECT(m.values.at("zeroed_reads") > 0);
  EXPECT(m.values.at("full_line_writes") == 1);
  EXPECT(m.values.at("poisoning_writes") == 1);

  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("memory_integrity: all checks passed\n");
  return 0;
}
