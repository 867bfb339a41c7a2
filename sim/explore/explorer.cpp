#include "sim/explore/explorer.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <set>
#include <stdexcept>

#include "hw/cpu/functional_cpu.h"
#include "hw/memory/phys_mem.h"
#include "models/backend/registry.h"
#include "models/kvm/kvm.h"
#include "models/kvm/vcpu.h"
#include "models/vmm/vmm.h"
#include "sim/invariants/invariants.h"
#include "sim/scenario/platform_core.h"
#include "sim/scenario/step_runner.h"

namespace cvmsim::explore {

using config::Json;
using config::StepConfig;
using config::StepOp;

// ---------------------------------------------------------------------------------------------
// Policies

namespace {

// KVM's own knobs; each backend adds its own (Descriptor::explore_knobs).
constexpr PolicyKnob kKvmPolicies[] = {
    {"gmem_rebind", "platform.kvm.gmem_rebind", "forbid", "unsafe_no_scrub", "sw_protected",
     "binding a guest_memfd to another VM; unsafe_no_scrub hands the pages over with their "
     "contents (ISO-6)"},
    {"flush_tlb_after_zap", "platform.kvm.flush_tlb_after_zap", "true", "false", "sw_protected",
     "flush the vCPUs' TLBs after KVM zaps mappings; false leaves stale translations (ISO-5)"},
    {"gmem_zero_on_handout", "platform.kvm.gmem_zero_on_handout", "true", "false", "sw_protected",
     "zero a guest_memfd page before the guest first gets it; false hands out old contents "
     "(ISO-6)"},
    {"hostile", "", "false", "true", "sw_protected",
     "explorer knob: the host kernel's attack operations (hostile_map, hostile_unmap_no_flush, "
     "hostile_write, hostile_read) join the mix"},
};

// The areas guests and the VMM use: the VMM's RAM region 0 (memslot 0, guest_memfd vmN.mem0) and
// region 1, four 64 KiB memslot windows the explorer deletes and creates (memslots 1-4; the VMM's
// memslot 1 covers all four at first, guest_memfd vmN.mem1).
constexpr uint64_t kRegionBytes = 64 * 1024;
constexpr uint64_t kRegionPages = kRegionBytes / kPageBytes;
constexpr uint64_t kExtraBase = 1ull << 30;
constexpr unsigned kExtraSlots = 4;
constexpr unsigned kVms = 2;
constexpr int32_t kNamedGmem = 256;
constexpr size_t kMaxCreated = 2;
constexpr size_t kMaxCreatedVms = 2;  // VMs made by create_vm steps, alive at once

std::string vm_name(unsigned v) {
  return "vm" + std::to_string(v);
}
std::string gmem_name(int32_t g) {
  return g < kNamedGmem ? vm_name(static_cast<unsigned>(g / 2)) + ".mem" + std::to_string(g % 2)
                        : "g" + std::to_string(g - kNamedGmem);
}
std::string actor_name(uint8_t a) {
  return a == 0 ? "vmm" : a == 1 ? "host" : vm_name(a - 2u) + ".cpu0";
}

bool is_vcpu_op(StepOp op) {
  return op == StepOp::kLoad || op == StepOp::kStore || op == StepOp::kGuestConvert;
}

}  // namespace

std::span<const PolicyKnob> policy_knobs() {
  static const std::vector<PolicyKnob> all = [] {
    std::vector<PolicyKnob> v(std::begin(kKvmPolicies), std::end(kKvmPolicies));
    for (const backend::Descriptor* d : backend::all())
      for (const auto& k : d->explore_knobs)
        v.push_back({k.name, k.path, k.mainline, k.unsafe, d->name, k.description});
    return v;
  }();
  return all;
}

Json base_scenario(const Options& o) {
  const backend::Descriptor* be = backend::find(o.backend);
  if (!be)
    throw std::invalid_argument("--backend " + o.backend + ": unknown backend (" +
                                backend::names() + ")");
  const bool priv = be->has_private_mem;
  Json doc = Json::object();
  std::string name = "explore_" + o.backend;
  for (const auto& p : o.policies) name += "_" + p.substr(0, p.find('='));
  doc["name"] = name + "_seed" + std::to_string(o.seed);
  doc["description"] = "";
  doc["platform"] = Json::object();
  doc["platform"]["memory"] = {{"size", "64MiB"}};
  doc["vms"] = Json::array();
  for (unsigned v = 0; v < kVms; ++v) {
    Json vm = Json::object();
    vm["name"] = vm_name(v);
    vm["type"] = o.backend;
    // Region 0: 64 KiB at 0 (memslot 0); region 1: the four extra memslot windows at 1 GiB
    // (memslot 1 over all of them at first). Memslots the explorer creates there get their
    // userspace address from these regions, so the VMM's address space does not grow.
    vm["memory"] = Json::array({Json{{"gpa", 0}, {"size", "64KiB"}, {"private", priv}},
                                Json{{"gpa", "1GiB"}, {"size", "256KiB"}, {"private", priv}}});
    // The backend's options for VM v (a TD's guest kernel: one of each acceptance policy).
    if (be->explore_vm_options)
      if (Json opts = be->explore_vm_options(v); !opts.empty()) vm[be->name] = std::move(opts);
    doc["vms"].push_back(vm);
  }
  std::string desc = "Found by cvmsim explore --backend " + o.backend;
  bool hostile = false;
  for (const auto& p : o.policies) {
    const std::string n = p.substr(0, p.find('='));
    const PolicyKnob* k = nullptr;
    for (const auto& c : policy_knobs())
      if (c.name == n) k = &c;
    if (!k) {
      std::string all;
      for (const auto& c : policy_knobs()) all += (all.empty() ? "" : ", ") + std::string(c.name);
      throw std::invalid_argument("--policy " + p + ": unknown policy \"" + n +
                                  "\" (known: " + all + ")");
    }
    const std::string value =
        p.find('=') == std::string::npos ? std::string(k->unsafe) : p.substr(p.find('=') + 1);
    desc += " --policy " + n + "=" + value;
    if (k->path.empty()) {
      if (value != "true" && value != "false")
        throw std::invalid_argument("--policy " + p + ": " + n + " takes true or false");
      hostile = value == "true";
      continue;
    }
    try {
      config::apply_override(doc, std::string(k->path) + "=" + value);
    } catch (const config::ConfigError& e) {
      throw std::invalid_argument("--policy " + p + ": " + e.what());
    }
  }
  doc["description"] =
      desc + " --seed " + std::to_string(o.seed) + "; shrunk and replayed by cvmsim check.";
  // Validate now (bad policy values are named here, not at the first run).
  try {
    (void)config::load_scenario_text(doc.dump(), "<explore>", ".", {});
  } catch (const config::ConfigError& e) {
    throw std::invalid_argument(std::string("policy: ") + e.what());
  }
  doc["explore_hostile"] = hostile;  // removed before the scenario is written or loaded
  return doc;
}

// ---------------------------------------------------------------------------------------------
// Operations as steps

StepConfig to_step(const Op& op) {
  StepConfig s;
  s.op = op.op;
  s.actor = actor_name(op.actor);
  s.given = {"actor", "op"};
  auto set = [&](const char* k) { s.given.insert(k); };
  auto vm = [&] {
    s.vm = vm_name(op.vm);
    set("vm");
  };
  auto range = [&] {
    s.gpa = op.gpa;
    s.size = op.size;
    set("gpa");
    set("size");
  };
  switch (op.op) {
    case StepOp::kLoad:
      range();
      break;
    case StepOp::kStore:
      range();
      s.pattern = PatternKind::kValue;
      s.value = op.value;
      set("pattern");
      set("value");
      break;
    case StepOp::kGuestConvert:
      range();
      s.to = op.flag ? "private" : "shared";
      set("to");
      break;
    case StepOp::kSetMemoryAttributes:
      vm();
      range();
      s.attributes = op.flag ? "PRIVATE" : "0";
      set("attributes");
      break;
    case StepOp::kConvert:
      vm();
      range();
      s.to = op.flag ? "private" : "shared";
      set("to");
      break;
    case StepOp::kDiscardShared:
    case StepOp::kHostRead:
      vm();
      range();
      break;
    case StepOp::kHostWrite:
    case StepOp::kHostileWrite:
      vm();
      range();
      s.pattern = PatternKind::kValue;
      s.value = op.value;
      set("pattern");
      set("value");
      break;
    case StepOp::kHostileRead:
      vm();
      range();
      break;
    case StepOp::kHostileMap:
      vm();
      s.gpa = op.gpa;
      set("gpa");
      s.to_vm = vm_name(op.to_vm);
      set("to_vm");
      break;
    case StepOp::kHostileUnmapNoFlush:
      vm();
      s.gpa = op.gpa;
      set("gpa");
      break;
    case StepOp::kFallocate:
      s.guest_memfd = gmem_name(op.gmem);
      s.offset = op.offset;
      s.size = op.size;
      s.flags = op.flag ? "KEEP_SIZE|PUNCH_HOLE" : "KEEP_SIZE";
      for (const char* k : {"guest_memfd", "offset", "size", "flags"}) set(k);
      break;
    case StepOp::kSetUserMemoryRegion2:
      vm();
      s.slot = op.slot;
      range();
      set("slot");
      if (op.flag) {
        s.flags = "GUEST_MEMFD";
        s.guest_memfd = gmem_name(op.gmem);
        s.offset = op.offset;
        for (const char* k : {"flags", "guest_memfd", "offset"}) set(k);
      }
      break;
    case StepOp::kDeleteMemslot:
      vm();
      s.slot = op.slot;
      set("slot");
      break;
    case StepOp::kCreateGuestMemfd:
      vm();
      s.size = op.size;
      s.as = gmem_name(op.gmem);
      set("size");
      set("as");
      break;
    case StepOp::kClose:
      if (op.flag) {
        vm();
      } else {
        s.guest_memfd = gmem_name(op.gmem);
        set("guest_memfd");
      }
      break;
    case StepOp::kCreateVm:
      s.as = vm_name(op.vm);
      s.vm_type = backend::name_of(op.slot);
      set("as");
      set("vm_type");
      break;
    default:
      break;
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// A platform without SystemC

namespace {

class Session;

// KVM's vCPU followed by the invariant check: an exit is an operation boundary (as the
// platform's CheckedExits does).
class CheckedExits final : public ExitHandler {
 public:
  CheckedExits(kvm::Vcpu& inner, Session& s) : inner_(inner), s_(s) {}
  ExitAction handle_exit(unsigned id, const VmExit& e) override;
  ExitAction handle_machine_check(unsigned id, const MachineCheck& mc) override;

 private:
  kvm::Vcpu& inner_;
  Session& s_;
};

class Session {
 public:
  // The platform is the one `cvmsim run` builds (scenario/platform_core.h); guests run on the
  // functional CPU instead of the SystemC vCPU module.
  Session(const config::ScenarioConfig& sc, bool hostile)
      : sc_(sc), hostile_(hostile), core_(std::make_unique<scenario::PlatformCore>(sc_)) {
    core_->build_vms();
    checker_ = std::make_unique<invariants::Checker>(core_->kvm(), core_->mem(),
                                                     sc.run.invariants.mode, core_->invariants());
    sc_.steps.assign(1, StepConfig{});
    exec_ = std::make_unique<scenario::StepExecutor>(core_->kvm(), sc_, core_->vmms(), log_);
    exec_->on_plaintext_read = [this](const kvm::PlaintextRead& r) {
      checker_->note_plaintext_read(r);
    };
    const auto& mmu = sc.platform.mmu;
    for (size_t v = 0; v < core_->vms().size(); ++v) {
      scenario::PlatformVm& pvm = core_->vms()[v];
      kvm::Vcpu& kv = pvm.vmm->vcpu(0);
      Cpu c;
      c.exits = std::make_unique<CheckedExits>(kv, *this);
      FunctionalCpuParams p;
      p.who = vm_principal(static_cast<uint32_t>(v));
      p.asid = static_cast<uint16_t>(v + 1);
      p.tlb_sets = static_cast<unsigned>(mmu.tlb.sets);
      p.tlb_ways = static_cast<unsigned>(mmu.tlb.ways);
      p.pwc_entries = static_cast<unsigned>(mmu.pwc.entries);
      p.pwc_ways = static_cast<unsigned>(mmu.pwc.ways);
      c.cpu = std::make_unique<FunctionalCpu>(p, core_->mem(), kv.vm().stage2(), *c.exits);
      c.cpu->set_guest_access_policy(kv.vm().backend().guest_access_policy(kv.vm()));
      c.cpu->read_observer = [this](Pfn f, Principal reader, Principal holder) {
        checker_->note_plaintext_read(kvm::PlaintextRead{f, reader, holder});
      };
      kv.attach(&c.cpu->tlb(), &c.cpu->pwc());
      c.vm_type = sc.vms[v].type;
      c.guest = pvm.guest.get();
      cpus_.push_back(std::move(c));
    }
  }

  ~Session() {
    exec_.reset();
    core_->close_vmms();  // before the vCPUs: closing the VMs flushes their TLBs
    cpus_.clear();
    checker_.reset();
    core_.reset();
  }

  // Runs one operation; `check` runs the checker at its boundaries.
  Outcome run(const Op& op, bool check) {
    Outcome out;
    checking_ = check;
    found_.clear();
    if (is_vcpu_op(op.op)) {
      Cpu& c = cpus_.at(op.actor - 2u);
      if (c.cpu->stopped()) {
        out.clean = false;  // a step of a stopped vCPU never runs
        return out;
      }
      std::vector<GuestOp> ops;
      if (op.op == StepOp::kGuestConvert)
        ops = c.guest->conversion_ops(Gpa(op.gpa), op.size, op.flag);
      else if (op.op == StepOp::kLoad)
        ops.push_back(GuestOp::load(Gpa(op.gpa), static_cast<uint32_t>(op.size)));
      else
        ops.push_back(GuestOp::store(Gpa(op.gpa), static_cast<uint32_t>(op.size), op.value));
      for (const auto& g : ops) {
        OpResult r;
        if (!c.cpu->execute(g, &r)) {
          out.stopped = true;
          break;
        }
        if (g.kind == OpKind::kHypercall) out.ret = r.ret;
      }
    } else {
      sc_.steps[0] = to_step(op);
      log_.clear();
      (void)exec_->execute(0);
      out.errno_name = exec_->last_errno();
      for (const auto& r : log_.results())
        if (!r.met && (out.errno_name.empty() || out.errno_name == "OK")) out.clean = false;
      if (log_.failures() > 1) out.clean = false;
      if (check && checker_->mode() != invariants::CheckMode::kOff) note(checker_->check());
    }
    std::set<std::string> ids;
    for (const auto& v : found_) {
      if (out.first_message.empty()) out.first_message = v.invariant + ": " + v.message;
      if (ids.insert(v.invariant).second) out.violations.push_back(v.invariant);
    }
    return out;
  }

  void note(const std::vector<kvm::Violation>& vs) {
    found_.insert(found_.end(), vs.begin(), vs.end());
  }
  void after_exit() {
    if (checking_ && checker_->mode() != invariants::CheckMode::kOff) note(checker_->check());
  }

  // ---- What the generator may ask ----
  bool hostile() const { return hostile_; }
  size_t vms() const { return core_->vms().size(); }
  bool cpu_stopped(unsigned v) const { return cpus_[v].cpu->stopped(); }
  uint32_t vm_type(unsigned v) const { return cpus_[v].vm_type; }
  uint32_t backend_type() const { return cpus_.empty() ? 0 : cpus_[0].vm_type; }
  kvm::Vm& vm(unsigned v) { return core_->vms()[v].vmm->vm(); }
  bool has_gmem(unsigned v, unsigned region) const {
    return core_->vms()[v].vmm->gmem_fd(region) >= 0;
  }
  // The address at which VM v's guest accesses gpa as shared memory.
  Gpa shared_alias(unsigned v, Gpa gpa) const { return cpus_[v].guest->shared_alias(gpa); }

 private:
  struct Cpu {
    std::unique_ptr<CheckedExits> exits;
    std::unique_ptr<FunctionalCpu> cpu;
    uint32_t vm_type = 0;
    const backend::GuestSide* guest = nullptr;
  };

  config::ScenarioConfig sc_;
  bool hostile_;
  std::unique_ptr<scenario::PlatformCore> core_;
  std::unique_ptr<invariants::Checker> checker_;
  scenario::ExpectationLog log_;
  std::unique_ptr<scenario::StepExecutor> exec_;
  std::vector<Cpu> cpus_;
  bool checking_ = true;
  std::vector<kvm::Violation> found_;
};

ExitAction CheckedExits::handle_exit(unsigned id, const VmExit& e) {
  ExitAction a = inner_.handle_exit(id, e);
  s_.after_exit();
  return a;
}

ExitAction CheckedExits::handle_machine_check(unsigned id, const MachineCheck& mc) {
  ExitAction a = inner_.handle_machine_check(id, mc);
  s_.after_exit();
  return a;
}

// ---------------------------------------------------------------------------------------------
// The operation mix

struct Weighted {
  StepOp op;
  unsigned weight;
  bool hostile;
};

// docs/explore.md, "The operation mix" lists these.
constexpr Weighted kMix[] = {
    // vCPUs
    {StepOp::kStore, 14, false},
    {StepOp::kLoad, 14, false},
    {StepOp::kGuestConvert, 8, false},
    // the VMM
    {StepOp::kSetMemoryAttributes, 6, false},
    {StepOp::kConvert, 6, false},
    {StepOp::kFallocate, 8, false},  // 5/8 punch a hole, 3/8 allocate
    {StepOp::kSetUserMemoryRegion2, 4, false},
    {StepOp::kDeleteMemslot, 2, false},
    {StepOp::kCreateGuestMemfd, 2, false},
    {StepOp::kClose, 1, false},  // a guest_memfd, or (half the time when there is one) a created VM
    {StepOp::kCreateVm, 1, false},
    {StepOp::kDiscardShared, 3, false},
    // host userspace
    {StepOp::kHostRead, 5, false},
    {StepOp::kHostWrite, 5, false},
    // a hostile host kernel (--policy hostile)
    {StepOp::kHostileMap, 3, true},
    {StepOp::kHostileUnmapNoFlush, 3, true},
    {StepOp::kHostileWrite, 3, true},
    {StepOp::kHostileRead, 3, true},
};

class Generator {
 public:
  Generator(uint64_t seed, Session& s) : rng_(seed, "explore"), s_(s) {
    for (unsigned v = 0; v < s.vms(); ++v)
      for (unsigned r = 0; r < 2; ++r)
        if (s.has_gmem(v, r)) live_.push_back({static_cast<int32_t>(2 * v + r), v});
    for (const auto& w : kMix)
      if (!w.hostile || s.hostile()) total_ += w.weight;
  }

  Op next() {
    for (;;) {
      uint64_t r = rng_.below(total_);
      StepOp pick = StepOp::kLoad;
      for (const auto& w : kMix) {
        if (w.hostile && !s_.hostile()) continue;
        if (r < w.weight) {
          pick = w.op;
          break;
        }
        r -= w.weight;
      }
      if (auto op = make(pick)) return *op;
    }
  }

  // Keeps track of the names the operation created or closed.
  void observe(const Op& op, const Outcome& out) {
    if (op.op == StepOp::kCreateGuestMemfd && out.errno_name == "OK")
      live_.push_back({op.gmem, op.vm});
    if (op.op == StepOp::kCreateVm && out.errno_name == "OK") live_vms_.push_back(op.vm);
    if (op.op == StepOp::kClose && op.flag) {
      std::erase(live_vms_, op.vm);
      return;
    }
    if (op.op == StepOp::kClose) {
      auto it =
          std::find_if(live_.begin(), live_.end(), [&](const auto& g) { return g.id == op.gmem; });
      if (it != live_.end()) {
        closed_.push_back(it->id);
        live_.erase(it);
      }
    }
  }

 private:
  struct Gmem {
    int32_t id;
    unsigned owner;
  };

  bool is_live(int32_t gmem) const {
    return std::any_of(live_.begin(), live_.end(), [&](const Gmem& g) { return g.id == gmem; });
  }
  unsigned pick_vm() { return static_cast<unsigned>(rng_.below(s_.vms())); }
  uint64_t page_in_region() { return rng_.below(kRegionPages) * kPageBytes; }
  // A page of the VMM's RAM region (3/4) or of an extra memslot window.
  uint64_t any_page() {
    if (rng_.below(4) != 0) return page_in_region();
    return kExtraBase + rng_.below(kExtraSlots) * kRegionBytes + page_in_region();
  }
  uint64_t pages(uint64_t max) { return (1 + rng_.below(max)) * kPageBytes; }
  uint64_t alias(unsigned v, uint64_t gpa) {
    // A guest whose shared memory has its own addresses (a shared bit) reaches a page through
    // either address.
    const Gpa shared = s_.shared_alias(v, Gpa(gpa));
    if (shared.value() != gpa && rng_.below(2)) return shared.value();
    return gpa;
  }

  std::optional<Op> make(StepOp pick) {
    Op op;
    op.op = pick;
    op.vm = static_cast<uint8_t>(pick_vm());
    switch (pick) {
      case StepOp::kStore:
      case StepOp::kLoad:
      case StepOp::kGuestConvert: {
        std::vector<unsigned> alive;
        for (unsigned v = 0; v < s_.vms(); ++v)
          if (!s_.cpu_stopped(v)) alive.push_back(v);
        if (alive.empty()) return std::nullopt;
        const unsigned v = alive[rng_.below(alive.size())];
        op.vm = static_cast<uint8_t>(v);
        op.actor = static_cast<uint8_t>(2 + v);
        if (pick == StepOp::kGuestConvert) {
          op.gpa = any_page();
          op.size = pages(2);
          op.flag = rng_.below(2);
          return op;
        }
        // Guests touch memory, not holes: an access where no memslot is would be MMIO with no
        // device behind it, and one to a dead slot (its guest_memfd closed) would fault for good;
        // either stops the vCPU, which then runs nothing more.
        for (int tries = 0; tries < 4; ++tries) {
          const uint64_t g = any_page();
          const kvm::Memslot* slot = s_.vm(v).memslots().find_gfn(gpa_to_gfn(Gpa(g)));
          if (!slot || (slot->gmem.bound && !slot->gmem.file)) continue;
          // Nor where the VMM closed its own guest_memfd of the region: its implicit conversion
          // of a page there (a TD's shared-alias access) fails with EBADF and stops the vCPU.
          // (The VMM's fd number stays in its table after a close step; the generator knows.)
          if (s_.vm_type(v) != kvm::KVM_X86_DEFAULT_VM &&
              !is_live(static_cast<int32_t>(2 * v + (g >= kExtraBase ? 1 : 0))))
            continue;
          op.gpa = alias(v, g + rng_.below(kPageBytes / 64) * 64);
          op.size = 8;
          op.value = rng_.next();
          return op;
        }
        return std::nullopt;
      }
      case StepOp::kSetMemoryAttributes:
      case StepOp::kConvert:
        op.actor = 0;
        op.gpa = any_page();
        op.size = pages(4);
        op.flag = rng_.below(2);
        return op;
      case StepOp::kFallocate: {
        op.actor = 0;
        if (!pick_gmem(op)) return std::nullopt;
        op.offset = page_in_region();
        op.size = pages(4);
        op.flag = rng_.below(8) < 5;
        return op;
      }
      case StepOp::kSetUserMemoryRegion2: {
        op.actor = 0;
        if (!live_vms_.empty() && rng_.below(3) == 0) {
          // A created VM's memory: memslot 0 over 64 KiB at GPA 0, bound to a file of its own.
          op.vm = live_vms_[rng_.below(live_vms_.size())];
          op.slot = 0;
          op.gpa = 0;
          op.size = kRegionBytes;
          op.flag = s_.backend_type() != kvm::KVM_X86_DEFAULT_VM;
          if (op.flag && !pick_gmem(op, op.vm, true)) return std::nullopt;
          return op;
        }
        op.slot = static_cast<uint32_t>(rng_.below(kExtraSlots + 1));
        op.gpa = op.slot == 0 ? 0 : kExtraBase + (op.slot - 1) * kRegionBytes;
        op.size = kRegionBytes;
        op.flag = s_.vm_type(op.vm) != kvm::KVM_X86_DEFAULT_VM;
        if (op.flag && !pick_gmem(op, op.vm)) return std::nullopt;
        // The VMM's region-1 file covers all four windows: each window at its own offset.
        op.offset = op.gmem >= 0 && op.gmem < kNamedGmem && op.gmem % 2 == 1 && op.slot > 0
                        ? (op.slot - 1) * kRegionBytes
                        : 0;
        return op;
      }
      case StepOp::kDeleteMemslot:
        op.actor = 0;
        // The VMM's own slot 0 rarely (a guest touching it then stops: no device there).
        op.slot = rng_.below(8) == 0 ? 0 : static_cast<uint32_t>(1 + rng_.below(kExtraSlots));
        return op;
      case StepOp::kCreateGuestMemfd: {
        // At most kMaxCreated open at once: a bounded state keeps the mix on interactions (and
        // the checker's frame-owner lookups, which scan the live files, cheap).
        size_t created = 0;
        for (const auto& g : live_) created += g.id >= kNamedGmem;
        if (created >= kMaxCreated) return std::nullopt;
        op.actor = 0;
        // One time in 3, for a VM a create_vm step made (it gets memory: see the memslot case).
        if (!live_vms_.empty() && rng_.below(3) == 0)
          op.vm = live_vms_[rng_.below(live_vms_.size())];
        op.size = kRegionBytes;
        op.gmem = kNamedGmem + next_gmem_++;
        return op;
      }
      case StepOp::kCreateVm:
        // A VM of the backend's type (no vCPU): VMs come and go, and a teardown frees the VM's
        // key for the next one (key reuse policies).
        if (live_vms_.size() >= kMaxCreatedVms || next_vm_ == UINT16_MAX) return std::nullopt;
        op.actor = 0;
        op.vm = next_vm_++;
        op.slot = s_.backend_type();
        return op;
      case StepOp::kClose: {
        op.actor = 0;
        if (!live_vms_.empty() && rng_.below(2) == 0) {
          op.flag = true;
          op.vm = live_vms_[rng_.below(live_vms_.size())];
          return op;
        }
        // Files the explorer created; a VMM's own only when none is open, one time in 8 (its
        // memory is then gone for good, and cross-VM binding, which only uses the VMMs' files,
        // loses a candidate).
        std::vector<int32_t> ids;
        for (const auto& g : live_)
          if (g.id >= kNamedGmem) ids.push_back(g.id);
        if (ids.empty() && rng_.below(8) == 0)
          for (const auto& g : live_) ids.push_back(g.id);
        if (ids.empty()) return std::nullopt;
        op.gmem = ids[rng_.below(ids.size())];
        return op;
      }
      case StepOp::kDiscardShared:
      case StepOp::kHostRead:
      case StepOp::kHostWrite:
        op.actor = pick == StepOp::kDiscardShared ? 0 : 1;
        op.gpa = any_page();
        op.size = pick == StepOp::kDiscardShared ? pages(2) : 8;
        if (pick != StepOp::kDiscardShared) op.gpa += rng_.below(kPageBytes / 64) * 64;
        op.value = rng_.next();
        return op;
      case StepOp::kHostileMap:
      case StepOp::kHostileUnmapNoFlush:
      case StepOp::kHostileWrite:
      case StepOp::kHostileRead: {
        op.actor = 1;
        kvm::Vm& vm = s_.vm(op.vm);
        const bool direct = pick == StepOp::kHostileWrite || pick == StepOp::kHostileRead;
        // The executor needs something mapped at gpa: try a few pages.
        for (int tries = 0; tries < 4; ++tries) {
          const Gpa g(alias(op.vm, any_page()));
          const Stage2Lookup lk = direct && vm.backend().translates_privately(vm, g)
                                      ? vm.backend().lookup_private(vm, g)
                                      : vm.stage2().lookup(g);
          if (!lk.mapped()) continue;
          op.gpa = g.value();
          op.size = 8;
          op.value = rng_.next();
          op.to_vm = static_cast<uint8_t>((op.vm + 1) % s_.vms());
          return op;
        }
        return std::nullopt;
      }
      default:
        return std::nullopt;
    }
  }

  // A guest_memfd for a vmm step: mostly a live one, sometimes a closed one (EBADF). For a
  // memslot of VM `bind_to` (>= 0): its own files, or the VMMs' files of any VM (binding another
  // VM's is what gmem_rebind decides). Not another VM's created files: the fd passed to the
  // binding VMM stays open there (the step does not close it), so such a file would never be
  // released, and the live files (which the checker scans) would pile up.
  // `own_only`: only `bind_to`'s own files (a VM a create_vm step made: bound to a VMM's file, it
  // would hold that file's range, and the file would keep the VM alive, for the rest of the run).
  bool pick_gmem(Op& op, int bind_to = -1, bool own_only = false) {
    if (!closed_.empty() && rng_.below(16) == 0) {
      op.gmem = closed_[rng_.below(closed_.size())];
      return true;
    }
    std::vector<int32_t> ids;
    for (const auto& g : live_)
      if (bind_to < 0 || (g.id < kNamedGmem && !own_only) ||
          g.owner == static_cast<unsigned>(bind_to))
        ids.push_back(g.id);
    if (ids.empty()) return false;
    op.gmem = ids[rng_.below(ids.size())];
    return true;
  }

  Rng rng_;
  Session& s_;
  uint64_t total_ = 0;
  std::vector<Gmem> live_;
  std::vector<int32_t> closed_;
  int32_t next_gmem_ = 0;
  std::vector<uint16_t> live_vms_;  // VMs create_vm steps made, not closed
  uint16_t next_vm_ = kVms;
};

config::ScenarioConfig load(const Json& base, bool* hostile) {
  Json doc = base;
  *hostile = doc.value("explore_hostile", false);
  doc.erase("explore_hostile");
  return config::load_scenario_text(doc.dump(), "<explore>", ".", {}).config;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Replay, shrinking, the reproducer

void replay(const Json& base, const std::vector<Op>& ops, std::vector<Outcome>& outcomes) {
  bool hostile = false;
  const config::ScenarioConfig sc = load(base, &hostile);
  Session s(sc, hostile);
  outcomes.clear();
  for (const auto& op : ops) {
    outcomes.push_back(s.run(op, true));
    if (!outcomes.back().violations.empty()) break;
  }
}

Json to_scenario(const Json& base, const std::vector<Op>& ops,
                 const std::vector<Outcome>& outcomes) {
  Json doc = base;
  doc.erase("explore_hostile");
  Json steps = Json::array();
  auto barrier = [&](const std::string& actor, const std::string& name) {
    StepConfig b;
    b.actor = actor;
    b.op = StepOp::kBarrier;
    b.barrier = name;
    b.given = {"actor", "op", "barrier"};
    steps.push_back(config::JsonWriter::write_object(b));
  };
  unsigned nb = 0;
  // Where the barrier before the previous step went (to add an actor to it after a stop).
  std::string prev_barrier;
  for (size_t i = 0; i < ops.size() && i < outcomes.size(); ++i) {
    StepConfig s = to_step(ops[i]);
    const Outcome& o = outcomes[i];
    s.label = "op " + std::to_string(i);
    s.given.insert("label");
    if (!o.errno_name.empty() && o.errno_name != "OK") {
      s.expect.errno_name = o.errno_name;
      s.expect.given.insert("errno");
    }
    if (o.stopped) {
      s.expect.stops = true;
      s.expect.given.insert("stops");
    }
    if (ops[i].op == StepOp::kGuestConvert && o.ret != 0 && !o.stopped) {
      s.expect.ret = o.ret;
      s.expect.given.insert("ret");
    }
    if (!o.violations.empty()) {
      std::string ids;
      for (const auto& v : o.violations) ids += (ids.empty() ? "" : "|") + v;
      s.expect.violation = ids;
      s.expect.given.insert("violation");
    }
    if (!s.expect.given.empty()) s.given.insert("expect");
    // Actors run concurrently in the replay: a barrier between two steps of different actors
    // puts them in the explored order. A vCPU that stopped reaches no further barrier: the next
    // actor joins the barrier before the stopping step instead and waits a little after it.
    if (i > 0 && ops[i].actor != ops[i - 1].actor) {
      const std::string a = actor_name(ops[i].actor), p = actor_name(ops[i - 1].actor);
      if (outcomes[i - 1].stopped) {
        const std::string name = prev_barrier.empty() ? "b" + std::to_string(++nb) : prev_barrier;
        if (prev_barrier.empty()) {
          // No barrier before the stopping step yet: put one there.
          Json b = steps.back();
          steps.erase(steps.end() - 1);
          barrier(p, name);
          steps.push_back(b);
        }
        barrier(a, name);
        StepConfig w;
        w.actor = a;
        w.op = StepOp::kWait;
        w.time_ns = 1000;
        w.given = {"actor", "op", "time_ns"};
        steps.push_back(config::JsonWriter::write_object(w));
        prev_barrier.clear();
      } else {
        const std::string name = "b" + std::to_string(++nb);
        barrier(p, name);
        barrier(a, name);
        prev_barrier = name;
      }
    } else {
      prev_barrier.clear();
    }
    steps.push_back(config::JsonWriter::write_object(s));
  }
  doc["steps"] = std::move(steps);
  return doc;
}

Result explore(const Options& o) {
  Result res;
  res.scenario_base = base_scenario(o);
  bool hostile = false;
  const config::ScenarioConfig sc = load(res.scenario_base, &hostile);
  const uint64_t every = o.check_every ? o.check_every : 1;
  // Long runs do not keep their operations as they go (each takes ~60 bytes): on a violation
  // the same seed regenerates them, as the stream is deterministic.
  const bool keep_now = o.keep_sequence && o.ops <= o.keep_limit;
  {
    Session s(sc, hostile);
    Generator gen(o.seed, s);
    const auto t0 = std::chrono::steady_clock::now();
    for (uint64_t i = 0; i < o.ops; ++i) {
      const Op op = gen.next();
      const Outcome out = s.run(op, (i + 1) % every == 0);
      gen.observe(op, out);
      if (keep_now) res.sequence.push_back(op);
      ++res.ops_executed;
      if (!out.errno_name.empty() && out.errno_name != "OK") ++res.errnos;
      if (out.stopped) ++res.stops;
      if (!out.violations.empty()) {
        res.violation = Found{out.violations.front(), out.first_message, i};
        break;
      }
    }
    res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  if (!res.violation || !o.keep_sequence) return res;
  if (!keep_now) {
    Session s(sc, hostile);
    Generator gen(o.seed, s);
    for (uint64_t i = 0; i <= res.violation->op_index; ++i) {
      const Op op = gen.next();
      gen.observe(op, s.run(op, (i + 1) % every == 0));
      res.sequence.push_back(op);
    }
  }

  const auto t1 = std::chrono::steady_clock::now();
  const std::string target = res.violation->invariant;
  // A candidate fails if its first violation includes the target invariant and every step on
  // the way is one a scenario can expect.
  std::function<std::optional<size_t>(const std::vector<Op>&)> fails =
      [&](const std::vector<Op>& cand) -> std::optional<size_t> {
    std::vector<Outcome> outs;
    replay(res.scenario_base, cand, outs);
    for (const auto& out : outs)
      if (!out.clean) return std::nullopt;
    if (outs.empty() || outs.back().violations.empty()) return std::nullopt;
    const auto& v = outs.back().violations;
    if (std::find(v.begin(), v.end(), target) == v.end()) return std::nullopt;
    return outs.size();
  };
  std::vector<Op> seq = res.sequence;
  if (!fails(seq)) {
    // The explored sequence itself has steps a scenario cannot expect (a hostile access to a
    // page unmapped by then, ...): drop those first.
    std::vector<Outcome> outs;
    replay(res.scenario_base, seq, outs);
    std::vector<Op> kept;
    for (size_t i = 0; i < outs.size(); ++i)
      if (outs[i].clean) kept.push_back(seq[i]);
    seq = kept;
  }
  res.shrink_runs = 1;
  if (fails(seq)) {
    if (o.shrink) seq = shrink_sequence<Op>(seq, fails, o.max_shrink_runs, &res.shrink_runs);
    res.shrunk = seq;
    std::vector<Outcome> outs;
    replay(res.scenario_base, res.shrunk, outs);
    res.reproducer = to_scenario(res.scenario_base, res.shrunk, outs).dump(2) + "\n";
  }
  res.shrink_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  return res;
}

}  // namespace cvmsim::explore
