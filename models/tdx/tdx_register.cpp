// The TDX backend's descriptor (models/backend/registry.h): KVM_X86_TDX_VM with the TDX module
// as its firmware, the scenario options of tdx_options.h, the VMM's launch of a TD (the initial
// image through KVM_TDX_INIT_MEM_REGION, KVM_TDX_FINALIZE_VM) and the TD's guest kernel
// (models/guest/tdx_guest_kernel.h), whose conversions use TDG.VP.VMCALL<MapGPA>.
#include <stdexcept>

#include "hw/base/pattern.h"
#include "models/backend/registry.h"
#include "models/guest/tdx_guest_kernel.h"
#include "models/kvm/kvm.h"
#include "models/tdx/kvm_tdx.h"
#include "models/tdx/tdx_machines.h"
#include "models/tdx/tdx_options.h"

namespace cvmsim::tdx {

namespace {

template <class T>
const T& options_or_default(const config::Section* s) {
  static const T defaults{};
  const auto* typed = dynamic_cast<const config::SectionOf<T>*>(s);
  return typed ? typed->value : defaults;
}

// The platform's TDX: KeyIDs [0, 64) with the private ones from 16 (tdx-snp.md A1), one TDMR
// over all memory, the module and the HKID allocator every TD shares.
class TdxPlatform final : public backend::PlatformPart {
 public:
  TdxPlatform(PhysMem& mem, const TdxPlatformOptions& o) {
    if (Status st = mem.set_key_config(KeyConfig::tdx(64, 16)); !st.ok())
      throw std::runtime_error("TDX key configuration: " + st.error().to_string());
    TdxConfig tc = TdxHost::config_for(mem);
    tc.costs = o.costs;
    TdxGlueConfig glue;
    if (o.hkid_reuse == HkidReuse::kUnsafeNoFlush) {
      // A buggy KVM that skips CACHE.WB on a module whose FREEID does not insist on it.
      glue.hkid_reuse = HkidReuse::kUnsafeNoFlush;
      tc.erratum_freeid_ignores_cache_wb = true;
    }
    host_ = std::make_unique<TdxHost>(mem, std::move(tc), glue);
  }
  std::unique_ptr<kvm::KvmBackend> make_backend(const config::Section* vm_options) override {
    if (!vm_options) return make_tdx_backend(*host_);
    const TdxVmOptions& o = options_or_default<TdxVmOptions>(vm_options);
    // KVM_TDX_INIT_VM's attributes and the TD's mapping options.
    return make_tdx_backend(
        *host_, TdxTdOptions{o.sept_ve_disable, o.huge_private, o.accept_interrupt_cycles});
  }
  void set_coverage(sm::Coverage* c) override { host_->module().set_coverage(c); }
  bool has_stats() const override { return true; }
  void describe_stats(StatVisitor& v) const override { host_->describe_stats(v); }

 private:
  std::unique_ptr<TdxHost> host_;
};

// A TD's guest side: its guest kernel, which converts with TDG.VP.VMCALL<MapGPA> and accesses
// shared memory at gpa | SHARED (tdx-snp.md A1, A8).
class TdxGuest final : public backend::GuestSide {
 public:
  TdxGuest(std::unique_ptr<guest::TdxGuestKernel> kernel, Gpa shared_bit, uint64_t boot_cycles,
           std::string summary)
      : kernel_(std::move(kernel)),
        shared_bit_(shared_bit),
        boot_cycles_(boot_cycles),
        summary_(std::move(summary)) {}

  std::vector<GuestOp> conversion_ops(Gpa gpa, uint64_t bytes, bool to_private) const override {
    // TDG.VP.VMCALL<MapGPA> (tdx-snp.md A8): R11 = 0x10001, R12 = GPA (S bit set: to shared),
    // R13 = size. The guest kernel accepts what became private when the call returns.
    GuestOp op;
    op.kind = OpKind::kHypercall;
    op.nr = kTdvmcallMapGpa;
    op.args[0] = to_private ? gpa.value() : shared_alias(gpa).value();
    op.args[1] = bytes;
    return {op};
  }
  Gpa shared_alias(Gpa gpa) const override { return Gpa(gpa.value() | shared_bit_.value()); }
  Range bounce_buffer() const override {
    const auto& bb = kernel_->config().bounce_buffer;
    return Range{bb.start, bb.size};
  }
  uint64_t boot_cycles() const override { return boot_cycles_; }
  std::string summary_line() const override { return summary_; }
  bool has_stats() const override { return true; }
  void describe_stats(StatVisitor& v) const override { kernel_->describe_stats(v); }

 private:
  std::unique_ptr<guest::TdxGuestKernel> kernel_;
  Gpa shared_bit_;
  uint64_t boot_cycles_;
  std::string summary_;
};

// The VMM's part (QEMU's TDX launch): the initial image from a source buffer in the VMM's own
// memory, KVM_TDX_INIT_MEM_REGION page by page (KVM: SEPT.ADD as needed, PAGE.ADD, MR.EXTEND x16
// when measured), then KVM_TDX_FINALIZE_VM (TDH.MR.FINALIZE) before any vCPU runs; the rest of
// the TD's memory is added at run time (AUG + the guest's ACCEPT).
void add_initial_image(backend::LaunchContext& ctx, const TdxVmOptions& o) {
  if (o.initial_image.empty()) return;
  const std::string& name = ctx.decl.name;
  HostMm& mm = ctx.vmm.mm();
  auto src = mm.mmap_anon(kPageBytes);
  if (!src.ok())
    throw std::runtime_error("initial image of " + name + ": no memory for the source buffer");
  std::vector<uint8_t> buf(kPageBytes);
  for (const auto& piece : o.initial_image) {
    for (uint64_t off = 0; off < piece.size; off += kPageBytes) {
      const uint64_t gpa = piece.gpa + off;
      fill_pattern(piece.pattern, piece.value, gpa, buf);
      (void)mm.write(*src, buf);
      kvm_tdx_init_mem_region region{src->value(), gpa, 1};
      kvm::kvm_memory_encrypt_cmd cmd{KVM_TDX_INIT_MEM_REGION,
                                      piece.measure ? KVM_TDX_MEASURE_MEMORY_REGION : 0, &region};
      if (Status st = ctx.kvm.memory_encrypt_op(ctx.vmm, ctx.vm_fd, &cmd); !st.ok())
        throw std::runtime_error("initial image of " + name + ": adding gpa " +
                                 std::to_string(gpa) + ": " + st.error().to_string());
    }
  }
  (void)mm.munmap(*src, kPageBytes);
}

std::unique_ptr<backend::GuestSide> launch(backend::LaunchContext& ctx) {
  const TdxVmOptions& o = options_or_default<TdxVmOptions>(ctx.options);
  const std::string& name = ctx.decl.name;
  add_initial_image(ctx, o);
  kvm::kvm_memory_encrypt_cmd fin{KVM_TDX_FINALIZE_VM, 0, nullptr};
  if (Status st = ctx.kvm.memory_encrypt_op(ctx.vmm, ctx.vm_fd, &fin); !st.ok())
    throw std::runtime_error("finalizing TD " + name + ": " + st.error().to_string());
  // The backend is this folder's own type: KVM made it with this descriptor's factory.
  auto& td = static_cast<KvmTdxBackend&>(ctx.vm.backend());
  std::string summary;
  if (auto mrtd = td.mrtd_hex()) {
    ctx.kvm.trace("platform." + name + ".tdx", "mrtd", *mrtd);
    summary = "TD " + name + " MRTD   " + *mrtd;
  }
  // The guest kernel (models/guest/tdx_guest_kernel.h): it gets #VE and MapGPA completions from
  // the glue and, with accept "boot", accepts every private region on vCPU 0 now, before the
  // workload (its cost shows in the module's statistics, not in run time).
  (void)ctx.kvm.take_cost();  // the build's cost is not the guest's
  guest::TdxGuestKernelConfig gk;
  gk.accept = o.accept;
  for (const auto& r : ctx.decl.memory)
    if (r.is_private) gk.private_ranges.push_back(guest::GpaRange{r.gpa, r.size});
  gk.bounce_buffer = guest::GpaRange{Gpa(o.bounce_buffer.gpa), o.bounce_buffer.size};
  auto kernel = std::make_unique<guest::TdxGuestKernel>(std::move(gk));
  td.set_guest_side(kernel.get());
  if (std::string err = kernel->boot(td, 0); !err.empty())
    throw std::runtime_error("booting TD " + name + ": " + err);
  // The boot's cycles (TDCALLs, exits, KVM's faults) become simulated time: every vCPU of the
  // TD starts with them (secondary vCPUs come up after the boot vCPU has accepted).
  const uint64_t boot = ctx.kvm.take_cost().count();
  return std::make_unique<TdxGuest>(std::move(kernel), td.shared_bit(), boot, std::move(summary));
}

void validate_vm(const backend::VmView& vm, const config::Section& s, const std::string& p) {
  const TdxVmOptions& tc = options_or_default<TdxVmOptions>(&s);
  if (tc.accept == guest::AcceptPolicy::kLazy && tc.sept_ve_disable)
    throw config::ConfigError(p + "/accept",
                              "accept \"lazy\" accepts on #VE, which the module injects only with "
                              "SEPT_VE_DISABLE clear: set " +
                                  p +
                                  "/sept_ve_disable to false (with it set, a PENDING access is a "
                                  "TD exit KVM treats as fatal)");
  if (tc.bounce_buffer.size && !vm.inside(tc.bounce_buffer.gpa, tc.bounce_buffer.size, false))
    throw config::ConfigError(
        p + "/bounce_buffer",
        "the bounce buffer is not inside one shared (private: false) memory region of the VM");
  const auto& img = tc.initial_image;
  for (size_t k = 0; k < img.size(); ++k) {
    const std::string ip = p + "/initial_image/" + std::to_string(k);
    if (!vm.inside(img[k].gpa, img[k].size, true))
      throw config::ConfigError(ip, "the piece is not inside one private memory region of the VM");
    for (size_t q = 0; q < k; ++q)
      if (img[k].gpa < img[q].gpa + img[q].size && img[q].gpa < img[k].gpa + img[k].size)
        throw config::ConfigError(ip, "overlaps " + p + "/initial_image/" + std::to_string(q));
  }
}

backend::Descriptor descriptor() {
  backend::Descriptor d;
  d.name = "tdx";
  d.vm_type = kvm::KVM_X86_TDX_VM;
  d.summary =
      "a TD: private memory in the TDX module's Secure EPT under the TD's HKID; shared GPAs "
      "have bit 47 set";
  // Building the module reserves KeyIDs (the key layout of every access changes), so a platform
  // has one only when a scenario uses TDs.
  d.always_available = false;
  d.platform_options = [] { return std::make_unique<config::SectionOf<TdxPlatformOptions>>(); };
  d.platform_options_doc = "the TDX platform (used when a scenario creates a TD)";
  d.vm_options = [] { return std::make_unique<config::SectionOf<TdxVmOptions>>(); };
  d.vm_options_doc =
      "TD options (type tdx only): the initial image added and measured before TDH.MR.FINALIZE, "
      "the guest kernel's acceptance policy, SEPT_VE_DISABLE, 2 MiB private pages, the bounce "
      "buffer";
  d.validate_vm = validate_vm;
  d.declared_bounce_buffer = [](const config::Section& s) {
    const auto& bb = options_or_default<TdxVmOptions>(&s).bounce_buffer;
    return backend::GuestSide::Range{Gpa(bb.gpa), bb.size};
  };
  d.make_platform = [](PhysMem& mem, const config::Section* s) {
    return std::make_unique<TdxPlatform>(mem, options_or_default<TdxPlatformOptions>(s));
  };
  d.launch = launch;
  d.invariants = [] { return tdx_invariants(); };
  d.machines = [] {
    return std::vector<sm::Machine*>{&sept_machine(), &td_machine(), &kot_machine()};
  };
  d.explore_knobs = {{"hkid_reuse", "platform.tdx.hkid_reuse", "flush", "unsafe_no_flush",
                      "tearing a TD down: unsafe_no_flush skips TDH.PHYMEM.CACHE.WB on a module "
                      "whose KEY.FREEID lets it pass, so the freed HKID still tags cached lines "
                      "(T6) when the next TD gets it (ISO-8)"}};
  // Each TD gets the guest kernel the platform gives it, one of each acceptance policy, with
  // SEPT_VE_DISABLE clear (set, a random host kills the TD at its first PENDING access;
  // docs/explore.md).
  d.explore_vm_options = [](unsigned v) {
    return config::Json{{"accept", v == 0 ? "boot" : "lazy"}, {"sept_ve_disable", false}};
  };
  return d;
}

const bool registered = backend::register_backend(descriptor());

}  // namespace

}  // namespace cvmsim::tdx
