// A backend defined entirely in this file, to show that adding a backend is adding files: it
// registers itself (models/backend/registry.h) with one platform option and one invariant, and
// `cvmsim list`, validation, `run`, `check` and `explore` find it without any other change.
// Linked into the cvmsim_testbackend executable only (tests/CMakeLists.txt).
//
// "testbe" behaves like KVM's software-protected VM type (private memory from guest_memfd, the
// attribute decides what is private, KVM_HC_MAP_GPA_RANGE converts), with one rule of its own:
// a VM may have at most platform.testbe.max_private_pages private pages mapped at once
// (invariant TB-1).
#include <memory>

#include "hw/base/schema.h"
#include "models/backend/registry.h"
#include "models/kvm/backend.h"
#include "models/kvm/kvm.h"
#include "models/kvm/vm.h"

namespace cvmsim::testbe {

namespace {

constexpr uint32_t kTestVmType = 42;

struct Options {
  uint64_t max_private_pages = 1u << 20;
  template <class V>
  void visit(V& v) {
    v(config::uint_field("max_private_pages", max_private_pages,
                         "private pages a testbe VM may have mapped at once (invariant TB-1)")
          .min(1)
          .max(1u << 30));
  }
};

std::vector<kvm::InvariantDef> invariants(uint64_t limit) {
  return {{"TB-1",
           "a testbe VM has at most platform.testbe.max_private_pages private pages mapped",
           "tests/backend/test_backend.cpp",
           {"testbe"},
           [limit](const kvm::CheckScope& s, std::vector<kvm::Violation>& out) {
             for (const auto& vm : s.kvm.vms()) {
               if (vm->backend().vm_type() != kTestVmType) continue;
               uint64_t pages = 0;
               vm->stage2().for_each_leaf([&](const Stage2Leaf& l) {
                 if (l.valid && vm->mem_is_private(gpa_to_gfn(l.gpa)))
                   pages += bytes_of(l.size) / kPageBytes;
               });
               if (pages <= limit) continue;
               kvm::Violation v;
               v.invariant = "TB-1";
               v.message = vm->name() + " has " + std::to_string(pages) +
                           " private pages mapped, more than " + std::to_string(limit);
               v.vm = vm->name();
               out.push_back(std::move(v));
             }
           }}};
}

class Backend final : public kvm::KvmBackend {
 public:
  explicit Backend(uint64_t limit) : limit_(limit) {}
  uint32_t vm_type() const override { return kTestVmType; }
  std::string_view name() const override { return "testbe"; }
  bool has_private_mem() const override { return true; }
  kvm::ConversionContents conversion_contents() const override {
    return kvm::ConversionContents::kLost;
  }
  bool fault_is_private(const kvm::Vm& vm, Gfn gfn, const VmExit&) const override {
    return vm.mem_is_private(gfn);
  }
  kvm::HypercallDecode decode_hypercall(const kvm::Vm&, const VmExit& e) const override {
    return kvm::decode_map_gpa_range(e);
  }
  std::vector<kvm::InvariantDef> invariants() const override { return testbe::invariants(limit_); }

 private:
  uint64_t limit_;
};

class Platform final : public backend::PlatformPart {
 public:
  explicit Platform(uint64_t limit) : limit_(limit) {}
  std::unique_ptr<kvm::KvmBackend> make_backend(const config::Section*) override {
    return std::make_unique<Backend>(limit_);
  }

 private:
  uint64_t limit_;
};

const bool registered = backend::register_backend([] {
  backend::Descriptor d;
  d.name = "testbe";
  d.vm_type = kTestVmType;
  d.summary = "a test backend defined in one file under tests/";
  d.platform_options = [] { return std::make_unique<config::SectionOf<Options>>(); };
  d.platform_options_doc = "the test backend";
  d.make_platform = [](PhysMem&, const config::Section* s) {
    const auto* o = dynamic_cast<const config::SectionOf<Options>*>(s);
    return std::make_unique<Platform>(o ? o->value.max_private_pages : Options{}.max_private_pages);
  };
  d.invariants = [] { return invariants(Options{}.max_private_pages); };
  return d;
}());

}  // namespace

}  // namespace cvmsim::testbe
