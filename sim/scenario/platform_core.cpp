#include "sim/scenario/platform_core.h"

#include <stdexcept>

namespace cvmsim::scenario {

namespace {

// Whether the scenario uses VM type `d`: a declared VM of it, or a step creating one.
bool uses(const config::ScenarioConfig& sc, const backend::Descriptor& d) {
  for (const auto& vm : sc.vms)
    if (vm.type == d.vm_type) return true;
  for (const auto& s : sc.steps)
    if (s.op == config::StepOp::kCreateVm && s.vm_type == d.name) return true;
  return false;
}

kvm::KvmConfig kvm_config(const config::PlatformConfig& p) {
  kvm::KvmConfig k = p.kvm;
  // KVM zeroes and copies at the memory's bandwidth.
  k.costs.zero_bytes_per_cycle = static_cast<double>(p.costs.mem_bytes_per_cycle);
  return k;
}

backend::VmView view_of(const config::VmConfig& vm) {
  backend::VmView v;
  v.name = vm.name;
  v.type = vm.type;
  for (const auto& r : vm.memory) v.memory.push_back({Gpa(r.gpa), r.size, r.is_private});
  return v;
}

}  // namespace

PlatformCore::PlatformCore(const config::ScenarioConfig& sc, sm::Coverage* coverage)
    : sc_(sc),
      mem_(sc.platform.memory.size, sc.platform.memory.mode),
      alloc_(Pfn(0), mem_.num_frames()) {
  for (const backend::Descriptor* d : backend::all()) {
    if (!d->make_platform || (!d->always_available && !uses(sc, *d))) continue;
    parts_.push_back({d, d->make_platform(mem_, sc.platform.backends.find(d->name))});
    if (coverage) parts_.back().part->set_coverage(coverage);
  }
  kvm_ = std::make_unique<kvm::Kvm>(kvm::Kvm::Env{mem_, alloc_, sc.platform.mmu.format},
                                    kvm_config(sc.platform));
  if (coverage) kvm_->set_coverage(coverage);
  for (const backend::Descriptor* d : backend::all()) {
    backend::PlatformPart* part = nullptr;
    for (auto& p : parts_)
      if (p.d == d) part = p.part.get();
    if (part)
      kvm_->register_backend(d->vm_type,
                             [part](const config::Section* o) { return part->make_backend(o); });
    else if (d->make_vm_backend && d->always_available)
      kvm_->register_backend(
          d->vm_type, [make = d->make_vm_backend](const config::Section*) { return make(); });
  }
}

PlatformCore::~PlatformCore() {
  shutdown();
}

void PlatformCore::build_vms() {
  for (size_t v = 0; v < sc_.vms.size(); ++v) {
    const auto& vmc = sc_.vms[v];
    PlatformVm vm;
    vm.cfg = &vmc;
    vm.backend = backend::find(vmc.type);
    // The VMM sets the VM up through KVM's uAPI: guest memory is faulted in by KVM on first
    // touch, private regions from guest_memfd (kvm-guest-memfd.md §4, §7).
    vmm::VmmConfig vc;
    vc.vm_name = vmc.name;
    vc.vm_type = vmc.type;
    vc.vcpus = static_cast<unsigned>(vmc.vcpus);
    vc.principal = vm_principal(static_cast<uint32_t>(v));
    vc.asid = static_cast<uint16_t>(v + 1);
    for (const auto& r : vmc.memory)
      vc.ram.push_back(vmm::RamRegion{Gpa(r.gpa), r.size, r.page_size, r.is_private, r.is_private});
    vc.policy = vmm::VmmPolicy{vmc.vmm.discard_on_convert, vmc.vmm.implicit_conversion,
                               vmc.vmm.allocate_on_private};
    if (vm.backend) vc.backend_options = vmc.backends.find(vm.backend->name);
    vm.vmm = std::make_unique<vmm::Vmm>(*kvm_, mem_, alloc_, vc);
    if (std::string err = vm.vmm->setup(); !err.empty())
      throw std::runtime_error("setting up VM " + vmc.name + ": " + err);
    // The backend's launch (the type's encryption commands, the guest kernel's boot).
    if (vm.backend && vm.backend->launch) {
      const backend::VmView decl = view_of(vmc);
      backend::LaunchContext ctx{
          *kvm_, vm.vmm->process(), vm.vmm->vm_fd(), vm.vmm->vm(), mem_, alloc_,
          decl,  vc.backend_options};
      vm.guest = vm.backend->launch(ctx);
    }
    if (!vm.guest) vm.guest = backend::default_guest_side();
    (void)kvm_->take_cost();  // set-up happens before simulated time starts
    vms_.push_back(std::move(vm));
  }
}

std::vector<vmm::Vmm*> PlatformCore::vmms() const {
  std::vector<vmm::Vmm*> out;
  for (const auto& vm : vms_) out.push_back(vm.vmm.get());
  return out;
}

std::vector<kvm::InvariantDef> PlatformCore::invariants() const {
  auto defs = invariants::generic_invariants();
  for (auto& d : kvm_->backend_invariants()) defs.push_back(std::move(d));
  return defs;
}

void PlatformCore::register_platform_stats(StatsRegistry& reg) {
  reg.add("platform.host.page_allocator", [this](StatVisitor& v) { alloc_.describe_stats(v); });
  reg.add("platform.kvm", [this](StatVisitor& v) { kvm_->describe_stats(v); });
  for (auto& p : parts_)
    if (p.part->has_stats())
      reg.add("platform." + p.d->name,
              [part = p.part.get()](StatVisitor& v) { part->describe_stats(v); });
}

void PlatformCore::register_vm_stats(StatsRegistry& reg, size_t i) {
  PlatformVm& vm = vms_.at(i);
  const std::string base = "platform." + vm.cfg->name;
  vmm::Vmm* vmmp = vm.vmm.get();
  // A VM whose fd a step closed still reports while a vCPU fd or a guest_memfd file holds it
  // (kvm-guest-memfd.md §6.2); a destroyed one has no statistics (docs/scenario-format.md).
  reg.add(base + ".kvm", [vmmp](StatVisitor& v) {
    if (vmmp->vm_alive()) vmmp->vm().describe_stats(v);
  });
  reg.add(base + ".vmm", [vmmp](StatVisitor& v) { vmmp->describe_stats(v); });
  if (vm.guest && vm.guest->has_stats())
    reg.add(base + ".guest", [g = vm.guest.get()](StatVisitor& v) { g->describe_stats(v); });
}

void PlatformCore::close_vmms() {
  for (auto& vm : vms_) vm.vmm.reset();
}

void PlatformCore::shutdown() {
  close_vmms();
  kvm_.reset();
  vms_.clear();  // the guests: they outlive KVM's VMs (a TD's teardown may still reach them)
  parts_.clear();
}

}  // namespace cvmsim::scenario
