#include "models/sw_protected/sw_protected_backend.h"

#include "models/backend/registry.h"
#include "models/kvm/uapi.h"
#include "models/kvm/vm.h"

namespace cvmsim::kvm {

namespace {

class SwProtectedBackend final : public KvmBackend {
 public:
  uint32_t vm_type() const override { return KVM_X86_SW_PROTECTED_VM; }
  std::string_view name() const override { return "sw_protected"; }
  bool has_private_mem() const override { return true; }
  // Private and shared sides are different frames (guest_memfd vs userspace memory).
  ConversionContents conversion_contents() const override { return ConversionContents::kLost; }
  // §7: "SW_PROTECTED: set iff the gfn is currently PRIVATE in attributes".
  bool fault_is_private(const Vm& vm, Gfn gfn, const VmExit&) const override {
    return vm.mem_is_private(gfn);
  }
  HypercallDecode decode_hypercall(const Vm&, const VmExit& e) const override {
    return decode_map_gpa_range(e);
  }
};

}  // namespace

std::unique_ptr<KvmBackend> make_sw_protected_backend() {
  return std::make_unique<SwProtectedBackend>();
}

namespace {

// Registered with every platform: no firmware, no options, the default guest side
// (KVM_HC_MAP_GPA_RANGE).
const bool registered = backend::register_backend([] {
  backend::Descriptor d;
  d.name = "sw_protected";
  d.vm_type = KVM_X86_SW_PROTECTED_VM;
  d.summary = "private memory from guest_memfd, no hardware enforcement";
  d.make_vm_backend = make_sw_protected_backend;
  return d;
}());

}  // namespace

}  // namespace cvmsim::kvm
