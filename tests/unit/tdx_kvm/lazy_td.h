// A finalized TD "vm0" built through KVM's uAPI, for the tests of the TDX invariants and of the
// ownership graph: a 2 MiB private guest_memfd slot at GPA 0 and one vCPU with a TLB, whose guest
// kernel accepts lazily (on #VE: SEPT_VE_DISABLE clear), so that the second touch of a page maps
// it. The HKID-reuse policy is a parameter (unsafe_no_flush also selects the module's FREEID
// erratum, as the TDX backend's platform part does).
#pragma once

#include <memory>

#include "../kvm/kvm_test_util.h"
#include "hw/mmu/pwc.h"
#include "models/guest/tdx_guest_kernel.h"
#include "models/tdx/kvm_tdx.h"

namespace cvmsim::kvmtest {

struct LazyTd {
  static constexpr uint32_t kTdx = KVM_X86_TDX_VM;
  std::unique_ptr<tdx::TdxHost> host;  // outlives the Kvm (teardown calls the module)
  KvmFixture f{AttrStoreKind::kXarray};
  int vm_fd = -1, vcpu_fd = -1, gmem_fd = -1;
  RecordingUserspace user;
  Tlb tlb{16, 4};
  Pwc pwc;
  std::unique_ptr<DetachOnExit> detach;
  std::unique_ptr<guest::TdxGuestKernel> kernel;

  explicit LazyTd(tdx::HkidReuse reuse = tdx::HkidReuse::kFlush) {
    REQUIRE(f.mem.set_key_config(KeyConfig::tdx(64, 16)).ok());
    tdx::TdxConfig c = tdx::TdxHost::config_for(f.mem);
    tdx::TdxGlueConfig g;
    g.hkid_reuse = reuse;
    c.erratum_freeid_ignores_cache_wb = reuse == tdx::HkidReuse::kUnsafeNoFlush;
    g.sept_ve_disable = false;
    host = std::make_unique<tdx::TdxHost>(f.mem, c, g);
    f.kvm.register_backend(kTdx,
                           [this, o = tdx::TdxTdOptions{false, false, 0}](const config::Section*) {
                             return tdx::make_tdx_backend(*host, o);
                           });
    vm_fd = f.new_vm(kTdx);
    gmem_fd = f.new_gmem(vm_fd, k2M);
    f.add_slot(vm_fd, 0, 0, k2M, gmem_fd);
    REQUIRE(f.set_attrs(vm_fd, 0, k2M, kPriv).ok());
    vcpu_fd = f.new_vcpu(vm_fd);
    vcpu().set_userspace(&user);
    vcpu().attach(&tlb, &pwc);
    detach.reset(new DetachOnExit{vcpu()});  // (a temporary's destructor would detach)
    guest::TdxGuestKernelConfig gk;
    gk.accept = guest::AcceptPolicy::kLazy;
    gk.private_ranges.push_back(guest::GpaRange{Gpa(0), k2M});
    kernel = std::make_unique<guest::TdxGuestKernel>(gk);
    be().set_guest_side(kernel.get());
    REQUIRE(be().finalize(vm()).ok());
  }
  ~LazyTd() { detach.reset(); }
  Vm& vm() { return f.vm(vm_fd); }
  Vcpu& vcpu() { return f.vcpu(vcpu_fd); }
  tdx::KvmTdxBackend& be() { return *tdx::tdx_backend_of(vm()); }
  tdx::TdxModule& m() { return host->module(); }
  ExitAction fault(uint64_t gpa) { return vcpu().handle_exit(0, stage2_exit(gpa, true)); }
  // First touch: SEPT.ADD + AUG (PENDING); second: #VE, the guest kernel's ACCEPT (MAPPED).
  void fault_in(uint64_t gpa) {
    REQUIRE(fault(gpa).kind == ExitAction::kRetry);
    REQUIRE(fault(gpa).kind == ExitAction::kRetry);
  }
  Pfn pfn_of(uint64_t gpa) {
    const tdx::SeptLookup l = m().sept_lookup(be().tdr(), Gpa(gpa));
    REQUIRE(l.found);
    return l.entry.pfn;
  }
};

}  // namespace cvmsim::kvmtest
