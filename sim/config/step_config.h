// Scenario steps: every uAPI call, guest operation, host operation and VMM action as a JSON
// object belonging to an actor, with an optional expectation (docs/scenario-format.md, "Steps").
//
// A step's fields depend on its operation: the operation table (kStepOps) says which fields
// each one needs and accepts, and StepConfig::validate enforces it, so a misspelt or misplaced
// field is an error naming the step, never silently ignored.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hw/base/pattern.h"
#include "hw/base/schema.h"

namespace cvmsim::config {

enum class StepOp : uint8_t {
  // vmm: KVM uAPI (models/kvm/kvm.h)
  kCreateVm,
  kCheckExtension,
  kSetUserMemoryRegion,
  kSetUserMemoryRegion2,
  kDeleteMemslot,
  kCreateGuestMemfd,
  kSetMemoryAttributes,
  kEnableCap,
  kPreFaultMemory,
  kFallocate,
  kClose,
  kGmemRead,
  kGmemWrite,
  kGmemTruncate,
  kGmemFstat,
  // vmm: actions of the VMM model
  kConvert,
  kDiscardShared,
  // host: host userspace accesses (in the VMM's process)
  kHostRead,
  kHostWrite,
  kGmemMmap,
  kGmemMunmap,
  kMapRead,
  kMapWrite,
  // vCPU: guest operations
  kLoad,
  kStore,
  kGuestConvert,
  kHypercall,
  kCompute,
  kGuestIo,
  // any actor
  kWait,
  kBarrier,
  // host: hostile host-kernel actions (attack scenarios)
  kHostileMap,
  kHostileUnmapNoFlush,
  kHostileWrite,
  kHostileRead,
};

inline constexpr EnumName<StepOp> kStepOpNames[] = {
    {StepOp::kCreateVm, "create_vm"},
    {StepOp::kCheckExtension, "check_extension"},
    {StepOp::kSetUserMemoryRegion, "set_user_memory_region"},
    {StepOp::kSetUserMemoryRegion2, "set_user_memory_region2"},
    {StepOp::kDeleteMemslot, "delete_memslot"},
    {StepOp::kCreateGuestMemfd, "create_guest_memfd"},
    {StepOp::kSetMemoryAttributes, "set_memory_attributes"},
    {StepOp::kEnableCap, "enable_cap"},
    {StepOp::kPreFaultMemory, "pre_fault_memory"},
    {StepOp::kFallocate, "fallocate"},
    {StepOp::kClose, "close"},
    {StepOp::kGmemRead, "gmem_read"},
    {StepOp::kGmemWrite, "gmem_write"},
    {StepOp::kGmemTruncate, "gmem_truncate"},
    {StepOp::kGmemFstat, "gmem_fstat"},
    {StepOp::kConvert, "convert"},
    {StepOp::kDiscardShared, "discard_shared"},
    {StepOp::kHostRead, "host_read"},
    {StepOp::kHostWrite, "host_write"},
    {StepOp::kGmemMmap, "gmem_mmap"},
    {StepOp::kGmemMunmap, "gmem_munmap"},
    {StepOp::kMapRead, "map_read"},
    {StepOp::kMapWrite, "map_write"},
    {StepOp::kLoad, "load"},
    {StepOp::kStore, "store"},
    {StepOp::kGuestConvert, "guest_convert"},
    {StepOp::kHypercall, "hypercall"},
    {StepOp::kCompute, "compute"},
    {StepOp::kGuestIo, "guest_io"},
    {StepOp::kWait, "wait"},
    {StepOp::kBarrier, "barrier"},
    {StepOp::kHostileMap, "hostile_map"},
    {StepOp::kHostileUnmapNoFlush, "hostile_unmap_no_flush"},
    {StepOp::kHostileWrite, "hostile_write"},
    {StepOp::kHostileRead, "hostile_read"},
};

enum class ActorKind : uint8_t { kVmm = 1, kHost = 2, kVcpu = 4, kAny = 7 };

struct StepOpInfo {
  StepOp op;
  std::string_view name;
  ActorKind actors;
  std::string_view required;  // space-separated field names
  std::string_view optional;  // space-separated field names (beyond actor, op, label, expect)
  std::string_view description;
};

std::span<const StepOpInfo> step_ops();

// The value of a step's `flags` (or, with attributes = true, `attributes`) string: names joined
// by |, each from the table of that operation (memslot: LOG_DIRTY_PAGES, READONLY, GUEST_MEMFD;
// create_guest_memfd: MMAP, INIT_SHARED; fallocate: KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE;
// attributes: PRIVATE), or numbers ("0x8", "0"). nullopt on an unknown name, with `bad` set.
std::optional<uint64_t> parse_step_flags(StepOp op, const std::string& s, bool attributes,
                                         std::string* bad);
const StepOpInfo& step_op_info(StepOp op);

inline constexpr EnumName<PatternKind> kStepPatternNames[] = {
    {PatternKind::kValue, "value"}, {PatternKind::kSeeded, "seeded"}, {PatternKind::kZero, "zero"}};

// What a step expects. Only the keys written are checked; with no `errno`, success is
// expected (a failing step without an expectation is reported as a failed expectation).
struct ExpectConfig {
  std::string errno_name;  // "EINVAL", ..., or "OK" for success
  std::string exit;        // vCPU steps: a KVM_RUN exit seen during the step
  std::string exit_flags;  // "PRIVATE" or "0"
  uint64_t exit_gpa = 0;
  uint64_t exit_size = 0;
  bool stops = false;                         // vCPU steps: the vCPU stops at this step
  std::string signal;                         // host map steps: "SIGBUS", "SIGSEGV" or "none"
  PatternKind pattern = PatternKind::kValue;  // data read back
  uint64_t value = 0;     // data pattern value/seed, or the ioctl's return value
  uint64_t ret = 0;       // hypercall/convert: value returned to the guest (two's complement)
  uint64_t gpa = 0;       // pre_fault_memory: gpa after the call
  uint64_t size = 0;      // pre_fault_memory: size left after the call; fstat: st_size
  std::string violation;  // an invariant this step must violate (attack scenarios)
  mutable std::set<std::string> given;

  template <class V>
  void visit(V& v) {
    v(string_field("errno", errno_name,
                   "errno the call fails with (EINVAL, EEXIST, EFAULT, ...), or OK"));
    v(string_field("exit", exit,
                   "vCPU steps: KVM_RUN exit seen while the step ran (KVM_EXIT_MEMORY_FAULT, "
                   "KVM_EXIT_HYPERCALL, KVM_EXIT_MMIO)"));
    v(string_field("exit_flags", exit_flags, "with exit KVM_EXIT_MEMORY_FAULT: PRIVATE or 0"));
    v(uint_field("exit_gpa", exit_gpa, "with exit: memory_fault.gpa / mmio.phys_addr").bytes());
    v(uint_field("exit_size", exit_size, "with exit KVM_EXIT_MEMORY_FAULT: memory_fault.size")
          .bytes());
    v(bool_field("stops", stops,
                 "vCPU steps: the vCPU stops at this step (the VMM cannot resolve its exit)"));
    v(string_field("signal", signal, "host mapping accesses: SIGBUS, SIGSEGV or none"));
    v(enum_field("pattern", pattern, kStepPatternNames,
                 "data read back: value, seeded or zero (with value)"));
    v(uint_field(
        "value", value,
        "with pattern: the pattern's value or seed; for check_extension: the returned value"));
    v(uint_field("ret", ret,
                 "guest_convert/hypercall: value returned to the guest (negative values as two's "
                 "complement, e.g. -22 is 18446744073709551594)"));
    v(uint_field("gpa", gpa, "pre_fault_memory: gpa after the call").bytes());
    v(uint_field("size", size, "pre_fault_memory: size left after the call; gmem_fstat: st_size")
          .bytes());
    v(string_field("violation", violation,
                   "invariant ids joined by | (ISO-1, ISO-1|ISO-7) the step must be caught "
                   "violating: an attack scenario passes when the checker catches it"));
  }
  bool has(std::string_view k) const { return given.count(std::string(k)) != 0; }
  void validate(const std::string& ptr) const;
};

struct StepConfig {
  std::string actor;
  StepOp op = StepOp::kWait;
  std::string label;
  std::string vm;  // VM name (default: the actor's VM, else the only VM)
  std::string as;  // name given to the fd or mapping the step creates
  std::string vm_type = "default";
  uint64_t slot = 0;
  std::string flags;  // names joined by |, e.g. "GUEST_MEMFD" or "KEEP_SIZE|PUNCH_HOLE"
  uint64_t gpa = 0;
  uint64_t size = 0;
  std::string hva;          // "" = the VM's shared backing at gpa, else a number
  std::string guest_memfd;  // name of a guest_memfd created by an earlier step (or "vm0.mem0")
  uint64_t offset = 0;
  std::string attributes;  // "PRIVATE" or "0"
  std::string cap;         // KVM_CAP_* name
  uint64_t arg = 0;        // enable_cap args[0]
  uint64_t vcpu = 0;
  std::string to;  // convert: "private" or "shared"
  PatternKind pattern = PatternKind::kValue;
  uint64_t value = 0;
  uint64_t nr = 0;
  uint64_t cycles = 0;
  uint64_t time_ns = 0;
  std::string barrier;
  std::string to_vm;        // hostile_map: the VM that gets the mapping
  std::string prot = "rw";  // gmem_mmap: r, rw, rwx
  bool shared = true;       // gmem_mmap: MAP_SHARED
  ExpectConfig expect;
  mutable std::set<std::string> given;  // keys written in the file
  mutable std::set<std::string>
      shown;  // keys the effective configuration shows (given + the op's optional fields)

  template <class V>
  void visit(V& v) {
    v(string_field("actor", actor, "who performs the step: vmm, host, or a vCPU as <vm>.cpu<i>")
          .required_non_empty());
    v(enum_field("op", op, kStepOpNames,
                 "the operation (table in docs/scenario-format.md, Steps)"));
    v(string_field("label", label, "a name for messages"));
    v(string_field("vm", vm, "VM the step acts on (default: the actor's VM, or the only VM)"));
    v(string_field("as", as, "name for the fd, VM or mapping the step creates"));
    v(string_field("vm_type", vm_type, "create_vm: a registered VM type (vms[].type lists them)"));
    v(uint_field("slot", slot, "memslot: bits 0-15 slot id, bits 16-31 address space")
          .max(0xffffffffull));
    v(string_field(
        "flags", flags,
        "flag names joined by | (memslot: GUEST_MEMFD, READONLY, LOG_DIRTY_PAGES; guest_memfd: "
        "MMAP, INIT_SHARED; fallocate: KEEP_SIZE, PUNCH_HOLE) or a number"));
    v(uint_field("gpa", gpa,
                 "guest physical address (memory_region: guest_phys_addr; attributes: address)")
          .bytes());
    v(uint_field("size", size, "bytes").bytes());
    v(string_field(
        "hva", hva,
        "memory_region: userspace_addr; empty means the VM's own shared backing of gpa"));
    v(string_field(
        "guest_memfd", guest_memfd,
        "a guest_memfd named by an earlier step's `as`, or <vm>.mem<i> for the VMM's own"));
    v(uint_field("offset", offset,
                 "guest_memfd offset (memory_region2, fallocate, mmap, map_read/map_write); "
                 "guest_io: offset into the bounce buffer")
          .bytes());
    v(string_field("attributes", attributes, "set_memory_attributes: PRIVATE, 0, or a number"));
    v(string_field("cap", cap, "capability name, e.g. KVM_CAP_GUEST_MEMFD_FLAGS"));
    v(uint_field("arg", arg, "enable_cap: args[0]"));
    v(uint_field("vcpu", vcpu, "pre_fault_memory: vCPU index").max(255));
    v(string_field("to", to, "convert: private or shared"));
    v(enum_field("pattern", pattern, kStepPatternNames,
                 "store/host_write/map_write/hostile_write: data written"));
    v(uint_field("value", value, "pattern value or seed"));
    v(uint_field("nr", nr, "hypercall number (args: gpa, size/4096, value)"));
    v(uint_field("cycles", cycles, "compute: cycles to spend").unit("cycles"));
    v(uint_field("time_ns", time_ns, "wait: simulated nanoseconds").unit("ns"));
    v(string_field("barrier", barrier,
                   "barrier name: every actor with a step on it waits until all have arrived"));
    v(string_field("to_vm", to_vm,
                   "hostile_map: the VM whose stage-2 table gets the stolen mapping"));
    v(string_field("prot", prot, "gmem_mmap: r, rw or rwx"));
    v(bool_field("shared", shared, "gmem_mmap: MAP_SHARED (false: MAP_PRIVATE)"));
    v(object_field("expect", expect, "what must happen"));
  }
  bool has(std::string_view k) const { return given.count(std::string(k)) != 0; }
  void validate(const std::string& ptr) const;
};

}  // namespace cvmsim::config
