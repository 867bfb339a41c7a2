// Backends register themselves (ARCHITECTURE.md "Backends behind one KVM interface, each a
// folder"; CONVENTIONS.md: Ramulator 2's self-registering implementations). A backend is a VM
// type of KVM together with everything the rest of the simulator needs to know about it, given
// once, in the backend's own folder, by a Descriptor:
//
//   name and KVM VM type    the one table of VM-type names (scenarios, --backend, create_vm steps)
//   configuration           its platform-level and per-VM option sections, declared with visit()
//                           like every other section (hw/base/schema.h): they are read,
//                           validated, written to effective_config.json and listed by `cvmsim
//                           list` through the same visitors
//   firmware                what it builds over physical memory once per platform (the TDX
//                           module and its HKID allocator) and the KvmBackend of each VM
//   launch                  what the VMM and the guest do between set-up and the first guest
//                           instruction (the VM-scoped encryption commands, the guest kernel's
//                           boot), and the guest side it leaves: how this guest asks for a
//                           conversion, its bounce buffer
//   invariants, machines    for `cvmsim list` and transition coverage
//   exploration             policy knobs and per-VM options for `cvmsim explore`
//
// sim/ builds platforms, validates scenarios, runs, lists and explores from descriptors only, so
// adding a backend is adding a folder. Registration happens during static initialisation, from a
// `const bool` in the backend's own file; every executable links the backends whole (CMake
// WHOLE_ARCHIVE), since nothing refers to those objects by name.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "hw/base/addr.h"
#include "hw/base/schema_json.h"
#include "hw/base/stat_visitor.h"
#include "hw/base/state_machine.h"
#include "hw/cpu/guest_op.h"
#include "hw/memory/frame_allocator.h"
#include "hw/memory/phys_mem.h"
#include "models/kvm/backend.h"
#include "models/kvm/invariant.h"

namespace cvmsim::kvm {
class Kvm;
class Process;
class Vm;
}  // namespace cvmsim::kvm

namespace cvmsim::backend {

// A memory region of a VM as the scenario declares it.
struct RegionView {
  Gpa gpa;
  uint64_t size = 0;
  bool is_private = false;
};

// What a backend's validation and launch see of a VM's declaration.
struct VmView {
  std::string name;
  uint32_t type = 0;
  std::vector<RegionView> memory;
  // Contains a private region holding [gpa, gpa + size) entirely (is_private), or a shared one.
  bool inside(uint64_t gpa, uint64_t size, bool is_private) const {
    for (const auto& r : memory)
      if (r.is_private == is_private && gpa >= r.gpa.value() && size <= r.size &&
          gpa - r.gpa.value() <= r.size - size)
        return true;
    return false;
  }
};

// What a backend builds once per platform when a scenario uses it: its firmware and whatever it
// shares across its VMs. It makes the KvmBackend of every VM of its type.
class PlatformPart {
 public:
  virtual ~PlatformPart() = default;
  // The backend of a new VM; `vm_options` is the VM's section of this backend (nullptr: a VM
  // created by a step, with the defaults).
  virtual std::unique_ptr<kvm::KvmBackend> make_backend(const config::Section* vm_options) = 0;
  // Where its firmware counts the transitions of its state machines (a run's coverage).
  virtual void set_coverage(sm::Coverage*) {}
  // Statistics under platform.<backend name>; false: none.
  virtual bool has_stats() const { return false; }
  virtual void describe_stats(StatVisitor&) const {}
};

// The guest side of one VM: its guest kernel model, if the backend has one, and the ABI the
// guest uses to ask for conversions (kvm-guest-memfd.md §11). The default is a guest that uses
// KVM_HC_MAP_GPA_RANGE and has no bounce buffer.
class GuestSide {
 public:
  virtual ~GuestSide() = default;
  // The guest operations that ask the host to convert [gpa, gpa + bytes) (a hypercall, and
  // whatever the guest does when it returns).
  virtual std::vector<GuestOp> conversion_ops(Gpa gpa, uint64_t bytes, bool to_private) const;
  // The address at which the guest accesses gpa as shared memory (TDX: with the SHARED bit).
  virtual Gpa shared_alias(Gpa gpa) const { return gpa; }
  // The guest's bounce buffer for I/O (swiotlb), as a guest physical range; size 0: none.
  struct Range {
    Gpa gpa;
    uint64_t size = 0;
  };
  virtual Range bounce_buffer() const { return {}; }
  // Cycles of boot work every vCPU of the VM runs before its program (simulated time).
  virtual uint64_t boot_cycles() const { return 0; }
  // A line for the run's summary (e.g. a launch measurement), or "".
  virtual std::string summary_line() const { return {}; }
  // Statistics under platform.<vm>.guest; false: none.
  virtual bool has_stats() const { return false; }
  virtual void describe_stats(StatVisitor&) const {}
};

// What launch() gets: the VM as the VMM has set it up, before any vCPU runs.
struct LaunchContext {
  kvm::Kvm& kvm;
  kvm::Process& vmm;  // the VMM's process: its fds
  int vm_fd = -1;
  kvm::Vm& vm;
  PhysMem& mem;
  FrameAllocator& frames;
  const VmView& decl;
  const config::Section* options;  // the VM's section of this backend (nullptr if it has none)
};

// A policy `cvmsim explore --policy NAME` can switch (docs/explore.md).
struct ExploreKnob {
  std::string name;
  std::string path;      // dotted scenario field, e.g. platform.tdx.hkid_reuse
  std::string mainline;  // default value
  std::string unsafe;    // the value --policy NAME alone selects
  std::string description;
};

struct Descriptor {
  std::string name;  // the VM type's name in scenarios ("tdx")
  uint32_t vm_type = 0;
  std::string summary;  // one line: what the VM type is
  // Registered with KVM on every platform (true), or only when a scenario uses the type (a VM of
  // it, or a step creating one), because building it changes the platform (e.g. the key layout).
  bool always_available = true;
  // kvm_arch_has_private_mem for the type (kvm-guest-memfd.md §2): regions may be private.
  bool has_private_mem = true;

  // Options: a platform-level section (platform.<name>) and a per-VM one (vms[].<name>), each
  // created with its defaults; nullptr: none.
  std::function<std::unique_ptr<config::Section>()> platform_options;
  std::string platform_options_doc;
  std::function<std::unique_ptr<config::Section>()> vm_options;
  std::string vm_options_doc;
  // Cross-field checks of a VM of this type with its section (throw config::ConfigError naming
  // `ptr` + the field). nullptr: none.
  std::function<void(const VmView&, const config::Section&, const std::string& ptr)> validate_vm;
  // The bounce buffer a VM's section declares (scenario step guest_io); nullptr: none.
  std::function<GuestSide::Range(const config::Section&)> declared_bounce_buffer;

  // The platform part; nullptr: the backend has no firmware and `make_vm_backend` is used.
  std::function<std::unique_ptr<PlatformPart>(PhysMem&, const config::Section* platform_options)>
      make_platform;
  std::function<std::unique_ptr<kvm::KvmBackend>()> make_vm_backend;
  // Launch after the VMM's set-up: returns the guest side (nullptr: the default one). Throws
  // std::runtime_error naming the VM if launching fails.
  std::function<std::unique_ptr<GuestSide>(LaunchContext&)> launch;

  // For listing (`cvmsim list`, docs): the backend's invariants, without a platform.
  std::function<std::vector<kvm::InvariantDef>()> invariants;
  // The state machines its runs exercise (transition coverage), in report order.
  std::function<std::vector<sm::Machine*>()> machines;

  std::vector<ExploreKnob> explore_knobs;
  // The options `cvmsim explore` gives VM v of this type (a vms[].<name> object; empty: none).
  std::function<config::Json(unsigned v)> explore_vm_options;
};

// Registers `d` (call from a static initialiser in the backend's own file). Returns true.
// Aborts with a message if the name or the VM type is taken: two registrations of one type are
// a build error, not a choice made by link order.
bool register_backend(Descriptor d);

// Every registered backend, ordered by VM type (deterministic, whatever the link order).
const std::vector<const Descriptor*>& all();
const Descriptor* find(std::string_view name);
const Descriptor* find(uint32_t vm_type);
// "default, sw_protected, tdx": the registered names, for messages.
std::string names();
// Name of a VM type ("type 7" if none is registered).
std::string name_of(uint32_t vm_type);
// The names as an enum table for schema fields (config::enum_field).
std::span<const config::EnumName<uint32_t>> vm_type_names();

// The default guest side (KVM_HC_MAP_GPA_RANGE, no bounce buffer).
std::unique_ptr<GuestSide> default_guest_side();

}  // namespace cvmsim::backend
