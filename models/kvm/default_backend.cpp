#include "models/backend/registry.h"
#include "models/kvm/backend.h"
#include "models/kvm/uapi.h"

namespace cvmsim::kvm {

HypercallDecode decode_map_gpa_range(const VmExit& e) {
  HypercallDecode d;
  if (e.nr != KVM_HC_MAP_GPA_RANGE) return d;
  const uint64_t gpa = e.args[0], npages = e.args[1], attrs = e.args[2];
  // kvm-guest-memfd.md §11: gpa page-aligned, npages != 0, no gfn overflow; else -KVM_EINVAL.
  const uint64_t gfn = gpa >> kPageShift;
  if ((gpa & (kPageBytes - 1)) || npages == 0 || gfn + npages <= gfn) {
    d.kind = HypercallDecode::kInvalid;
    d.guest_ret = static_cast<uint64_t>(-static_cast<int64_t>(KVM_EINVAL));
    return d;
  }
  d.kind = HypercallDecode::kConversion;
  d.req.gpa = Gpa(gpa);
  d.req.npages = npages;
  d.req.to_private = (attrs & KVM_MAP_GPA_RANGE_ENCRYPTED) != 0;
  d.req.attrs_arg = attrs;
  return d;
}

namespace {

class DefaultBackend final : public KvmBackend {
 public:
  uint32_t vm_type() const override { return KVM_X86_DEFAULT_VM; }
  std::string_view name() const override { return "default"; }
  bool has_private_mem() const override { return false; }
  ConversionContents conversion_contents() const override { return ConversionContents::kLost; }
  bool fault_is_private(const Vm&, Gfn, const VmExit&) const override { return false; }
  HypercallDecode decode_hypercall(const Vm&, const VmExit& e) const override {
    return decode_map_gpa_range(e);
  }
};

}  // namespace

std::unique_ptr<KvmBackend> make_default_backend() {
  return std::make_unique<DefaultBackend>();
}

namespace {

const bool registered = backend::register_backend([] {
  backend::Descriptor d;
  d.name = "default";
  d.vm_type = KVM_X86_DEFAULT_VM;
  d.summary = "no private memory";
  d.has_private_mem = false;
  d.make_vm_backend = make_default_backend;
  return d;
}());

}  // namespace

}  // namespace cvmsim::kvm
