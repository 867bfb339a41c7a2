// TDX platform set-up shared by the SystemC platform (sim/platform/run.cpp) and random
// exploration (sim/explore), so that both build the same TDX module and the same TD guest kernel
// from a scenario (docs/tdx-model.md). Pure C++ (no SystemC).
#pragma once

#include <memory>

#include "hw/memory/phys_mem.h"
#include "models/guest/tdx_guest_kernel.h"
#include "models/tdx/kvm_tdx.h"
#include "sim/config/scenario_config.h"

namespace cvmsim::scenario {

// True if some VM of the scenario is a TD or a step creates one (other platforms keep their key
// layout: a TDX module is built only then).
bool uses_tdx(const config::ScenarioConfig& sc);

// A TDX platform for `sc`, or nullptr if !uses_tdx(sc): KeyIDs [0, 64), private from 16
// (tdx-snp.md A1), one TDMR over all memory, the glue's HKID-reuse policy
// (platform.tdx.hkid_reuse: unsafe_no_flush also selects the module's FREEID erratum), and each
// TD's options (vms[].tdx: SEPT_VE_DISABLE, huge private pages, accept interrupts). Throws
// std::runtime_error if the key configuration fails.
std::unique_ptr<tdx::TdxHost> make_tdx_host(const config::ScenarioConfig& sc, PhysMem& mem);

// The guest kernel of TD `vmc` (models/guest/tdx_guest_kernel.h), attached to its glue as the
// guest side (#VE, MapGPA completions) and booted on vCPU 0 (accept "boot": every private region
// accepted now). Call it after TDH.MR.FINALIZE. Throws std::runtime_error naming the TD if the
// boot fails. The kernel must outlive the VM's vCPUs.
std::unique_ptr<guest::TdxGuestKernel> boot_tdx_guest(tdx::KvmTdxBackend& td,
                                                      const config::VmConfig& vmc);

}  // namespace cvmsim::scenario
