#include "sim/scenario/tdx_setup.h"

#include <stdexcept>

#include "models/kvm/kvm.h"

namespace cvmsim::scenario {

bool uses_tdx(const config::ScenarioConfig& sc) {
  for (const auto& vm : sc.vms)
    if (vm.type == kvm::KVM_X86_TDX_VM) return true;
  for (const auto& s : sc.steps)
    if (s.vm_type == "tdx") return true;
  return false;
}

std::unique_ptr<tdx::TdxHost> make_tdx_host(const config::ScenarioConfig& sc, PhysMem& mem) {
  if (!uses_tdx(sc)) return nullptr;
  if (Status st = mem.set_key_config(KeyConfig::tdx(64, 16)); !st.ok())
    throw std::runtime_error("TDX key configuration: " + st.error().to_string());
  tdx::TdxConfig tc = tdx::TdxHost::config_for(mem);
  tdx::TdxGlueConfig glue;
  if (sc.platform.tdx.hkid_reuse == config::HkidReusePolicy::kUnsafeNoFlush) {
    // A buggy KVM that skips CACHE.WB on a module whose FREEID does not insist on it.
    glue.hkid_reuse = tdx::HkidReuse::kUnsafeNoFlush;
    tc.erratum_freeid_ignores_cache_wb = true;
  }
  auto host = std::make_unique<tdx::TdxHost>(mem, std::move(tc), glue);
  // KVM_TDX_INIT_VM's attributes and the TD's mapping options, per VM.
  for (const auto& vmc : sc.vms)
    if (vmc.type == kvm::KVM_X86_TDX_VM)
      host->set_td_options(vmc.name,
                           tdx::TdxTdOptions{vmc.tdx.sept_ve_disable, vmc.tdx.huge_private,
                                             vmc.tdx.accept_interrupt_cycles});
  return host;
}

std::unique_ptr<guest::TdxGuestKernel> boot_tdx_guest(tdx::KvmTdxBackend& td,
                                                      const config::VmConfig& vmc) {
  guest::TdxGuestKernelConfig gk;
  gk.accept = vmc.tdx.accept;
  for (const auto& r : vmc.memory)
    if (r.is_private) gk.private_ranges.push_back(guest::GpaRange{Gpa(r.gpa), r.size});
  gk.bounce_buffer = guest::GpaRange{Gpa(vmc.tdx.bounce_buffer.gpa), vmc.tdx.bounce_buffer.size};
  auto kernel = std::make_unique<guest::TdxGuestKernel>(std::move(gk));
  td.set_guest_side(kernel.get());
  if (std::string err = kernel->boot(td, 0); !err.empty())
    throw std::runtime_error("booting TD " + vmc.name + ": " + err);
  return kernel;
}

}  // namespace cvmsim::scenario
