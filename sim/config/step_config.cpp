#include "sim/config/step_config.h"

#include <sstream>

#include "hw/base/result.h"
#include "models/backend/registry.h"
#include "models/kvm/uapi.h"

namespace cvmsim::config {

namespace {

constexpr StepOpInfo kOps[] = {
    // vmm: uAPI
    {StepOp::kCreateVm, "create_vm", ActorKind::kVmm, "as", "vm_type vm",
     "KVM_CREATE_VM: a further VM with no memory (an attacker, say), in the process of `vm`'s VMM "
     "(default: the first VM's); `as` names it for later steps"},
    {StepOp::kCheckExtension, "check_extension", ActorKind::kVmm, "cap", "vm",
     "KVM_CHECK_EXTENSION on the VM fd (or /dev/kvm without `vm`); expect.value is the answer"},
    {StepOp::kSetUserMemoryRegion, "set_user_memory_region", ActorKind::kVmm, "slot gpa size",
     "vm flags hva", "KVM_SET_USER_MEMORY_REGION (v1 struct)"},
    {StepOp::kSetUserMemoryRegion2, "set_user_memory_region2", ActorKind::kVmm, "slot gpa size",
     "vm flags hva guest_memfd offset", "KVM_SET_USER_MEMORY_REGION2; size 0 deletes"},
    {StepOp::kDeleteMemslot, "delete_memslot", ActorKind::kVmm, "slot", "vm",
     "KVM_SET_USER_MEMORY_REGION2 with memory_size 0"},
    {StepOp::kCreateGuestMemfd, "create_guest_memfd", ActorKind::kVmm, "size as", "vm flags",
     "KVM_CREATE_GUEST_MEMFD; `as` names the fd"},
    {StepOp::kSetMemoryAttributes, "set_memory_attributes", ActorKind::kVmm, "gpa size",
     "vm attributes flags", "KVM_SET_MEMORY_ATTRIBUTES over [gpa, gpa+size)"},
    {StepOp::kEnableCap, "enable_cap", ActorKind::kVmm, "cap", "vm arg flags", "KVM_ENABLE_CAP"},
    {StepOp::kPreFaultMemory, "pre_fault_memory", ActorKind::kVmm, "gpa size", "vm vcpu flags",
     "KVM_PRE_FAULT_MEMORY on a vCPU; expect.gpa/size are the values written back"},
    {StepOp::kFallocate, "fallocate", ActorKind::kVmm, "guest_memfd offset size", "flags",
     "fallocate on a guest_memfd; flags default KEEP_SIZE (allocate), KEEP_SIZE|PUNCH_HOLE "
     "punches"},
    {StepOp::kClose, "close", ActorKind::kVmm, "", "guest_memfd vm",
     "close(2) of a guest_memfd or a VM fd"},
    {StepOp::kGmemRead, "gmem_read", ActorKind::kVmm, "guest_memfd", "size",
     "read(2) on a guest_memfd"},
    {StepOp::kGmemWrite, "gmem_write", ActorKind::kVmm, "guest_memfd", "size",
     "write(2) on a guest_memfd"},
    {StepOp::kGmemTruncate, "gmem_truncate", ActorKind::kVmm, "guest_memfd size", "",
     "ftruncate(2) on a guest_memfd"},
    {StepOp::kGmemFstat, "gmem_fstat", ActorKind::kVmm, "guest_memfd", "",
     "fstat(2); expect.size is st_size"},
    // vmm: actions
    {StepOp::kConvert, "convert", ActorKind::kVmm, "gpa size to", "vm",
     "the VMM converts a range as for a guest request: attributes, then discard the opposite "
     "backing per policy"},
    {StepOp::kDiscardShared, "discard_shared", ActorKind::kVmm, "gpa size", "vm",
     "madvise(MADV_DONTNEED) of the shared backing of [gpa, gpa+size)"},
    // host
    {StepOp::kHostRead, "host_read", ActorKind::kHost, "gpa size", "vm",
     "host userspace reads the VM's shared backing at gpa (through the VMM's mapping)"},
    {StepOp::kHostWrite, "host_write", ActorKind::kHost, "gpa size", "vm pattern value",
     "host userspace writes the VM's shared backing at gpa"},
    {StepOp::kGmemMmap, "gmem_mmap", ActorKind::kHost, "guest_memfd as", "size offset prot shared",
     "mmap of a guest_memfd (size 0: the whole file); `as` names the mapping"},
    {StepOp::kGmemMunmap, "gmem_munmap", ActorKind::kHost, "as", "",
     "munmap of a guest_memfd mapping"},
    {StepOp::kMapRead, "map_read", ActorKind::kHost, "as size", "offset",
     "read through a guest_memfd mapping; expect.signal SIGBUS for private memory"},
    {StepOp::kMapWrite, "map_write", ActorKind::kHost, "as size", "offset pattern value",
     "write through a guest_memfd mapping"},
    // vCPU
    {StepOp::kLoad, "load", ActorKind::kVcpu, "gpa size", "",
     "guest load; expect.pattern/value check the data"},
    {StepOp::kStore, "store", ActorKind::kVcpu, "gpa size", "pattern value",
     "guest store of a pattern"},
    {StepOp::kGuestConvert, "guest_convert", ActorKind::kVcpu, "gpa size to", "",
     "the guest kernel asks to convert a range through the backend's ABI (sw_protected: "
     "KVM_HC_MAP_GPA_RANGE)"},
    {StepOp::kHypercall, "hypercall", ActorKind::kVcpu, "nr", "gpa size value",
     "raw hypercall: args[0]=gpa, args[1]=size/4096, args[2]=value; expect.ret"},
    {StepOp::kCompute, "compute", ActorKind::kVcpu, "cycles", "", "spend cycles"},
    {StepOp::kGuestIo, "guest_io", ActorKind::kVcpu, "gpa size", "offset pattern value",
     "guest I/O through the VM's bounce buffer (its backend's bounce_buffer option, e.g. a TD's): "
     "the guest reads [gpa, gpa+size) of its private memory (checked against pattern/value) and "
     "copies it to the bounce buffer at offset, through the address the guest uses for shared "
     "memory (a TD: gpa | SHARED bit), for the host to read; the "
     "copy is written as the same pattern at the buffer's shared alias, so use pattern value "
     "(address-independent) when the host checks the copy (seeded patterns are keyed by address, S "
     "bit included)"},
    // any
    {StepOp::kWait, "wait", ActorKind::kAny, "time_ns", "", "advance this actor's simulated time"},
    {StepOp::kBarrier, "barrier", ActorKind::kAny, "barrier", "",
     "wait until every actor with a step on this barrier has reached it"},
    // host: hostile host-kernel actions
    {StepOp::kHostileMap, "hostile_map", ActorKind::kHost, "gpa to_vm", "vm",
     "attack: the host kernel writes `to_vm`'s stage-2 table to map the frame `vm` has at gpa (at "
     "the same gpa), behind KVM's back (a TD-private gpa: the frame its S-EPT maps)"},
    {StepOp::kHostileUnmapNoFlush, "hostile_unmap_no_flush", ActorKind::kHost, "gpa", "vm",
     "attack: the host kernel clears `vm`'s stage-2 leaf at gpa and flushes no TLB (stale "
     "translations survive); a TD's private gpa is refused (the host cannot write the S-EPT): use "
     "gpa | SHARED bit"},
    {StepOp::kHostileWrite, "hostile_write", ActorKind::kHost, "gpa size", "vm pattern value",
     "attack: the host kernel writes through its direct map, with key 0 (not full-line), into the "
     "frame `vm` has at gpa, private or shared (a TD: the shared side at gpa | SHARED bit); size "
     "1..4096 within one page"},
    {StepOp::kHostileRead, "hostile_read", ActorKind::kHost, "gpa size", "vm",
     "attack: the host kernel reads the frame `vm` has at gpa through its direct map with key 0; "
     "expect the data (a TD-private page reads as zeros, sw_protected returns the plaintext)"},
};

std::set<std::string> words(std::string_view s) {
  std::set<std::string> out;
  std::istringstream in{std::string(s)};
  for (std::string w; in >> w;) out.insert(w);
  return out;
}

struct FlagName {
  const char* name;
  uint64_t value;
};
constexpr FlagName kMemslotFlags[] = {{"LOG_DIRTY_PAGES", kvm::KVM_MEM_LOG_DIRTY_PAGES},
                                      {"READONLY", kvm::KVM_MEM_READONLY},
                                      {"GUEST_MEMFD", kvm::KVM_MEM_GUEST_MEMFD}};
constexpr FlagName kGmemFlags[] = {{"MMAP", kvm::GUEST_MEMFD_FLAG_MMAP},
                                   {"INIT_SHARED", kvm::GUEST_MEMFD_FLAG_INIT_SHARED}};
constexpr FlagName kFallocFlags[] = {{"KEEP_SIZE", kvm::FALLOC_FL_KEEP_SIZE},
                                     {"PUNCH_HOLE", kvm::FALLOC_FL_PUNCH_HOLE},
                                     {"ZERO_RANGE", kvm::FALLOC_FL_ZERO_RANGE}};
constexpr FlagName kAttrFlags[] = {{"PRIVATE", kvm::KVM_MEMORY_ATTRIBUTE_PRIVATE}};

std::span<const FlagName> flag_table(StepOp op, bool attributes) {
  if (attributes) return kAttrFlags;
  switch (op) {
    case StepOp::kSetUserMemoryRegion:
    case StepOp::kSetUserMemoryRegion2:
      return kMemslotFlags;
    case StepOp::kCreateGuestMemfd:
      return kGmemFlags;
    case StepOp::kFallocate:
      return kFallocFlags;
    default:
      return {};  // numbers only (kvm_memory_attributes.flags, enable_cap, pre_fault)
  }
}

}  // namespace

std::optional<uint64_t> parse_step_flags(StepOp op, const std::string& s, bool attributes,
                                         std::string* bad) {
  uint64_t v = 0;
  std::stringstream in(s);
  for (std::string w; std::getline(in, w, '|');) {
    if (w.empty()) continue;
    bool found = false;
    for (const auto& f : flag_table(op, attributes))
      if (w == f.name) {
        v |= f.value;
        found = true;
      }
    if (found) continue;
    if (auto n = parse_size(w)) {
      v |= *n;
      continue;
    }
    if (bad) *bad = w;
    return std::nullopt;
  }
  return v;
}

std::span<const StepOpInfo> step_ops() {
  return kOps;
}

const StepOpInfo& step_op_info(StepOp op) {
  for (const auto& i : kOps)
    if (i.op == op) return i;
  return kOps[0];
}

void ExpectConfig::validate(const std::string& ptr) const {
  if (has("errno") && errno_name != "OK") {
    Errno e;
    if (!parse_errno(errno_name, &e))
      throw ConfigError(ptr + "/errno", "unknown errno \"" + errno_name +
                                            "\" (use a Linux name such as EINVAL, or OK)");
  }
  if (has("exit") && !kvm::parse_exit_reason(exit))
    throw ConfigError(ptr + "/exit",
                      "unknown exit reason \"" + exit +
                          "\" (KVM_EXIT_MEMORY_FAULT, KVM_EXIT_HYPERCALL, KVM_EXIT_MMIO)");
  if (has("exit_flags") && exit_flags != "PRIVATE" && exit_flags != "0")
    throw ConfigError(ptr + "/exit_flags", "must be PRIVATE or 0, got \"" + exit_flags + "\"");
  if ((has("exit_flags") || has("exit_gpa") || has("exit_size")) && !has("exit"))
    throw ConfigError(ptr, "exit_flags/exit_gpa/exit_size need exit");
  if (has("signal") && signal != "SIGBUS" && signal != "SIGSEGV" && signal != "none")
    throw ConfigError(ptr + "/signal", "must be SIGBUS, SIGSEGV or none, got \"" + signal + "\"");
}

void StepConfig::validate(const std::string& ptr) const {
  const StepOpInfo& info = step_op_info(op);
  // The actor's kind.
  ActorKind kind = ActorKind::kVcpu;
  if (actor == "vmm")
    kind = ActorKind::kVmm;
  else if (actor == "host")
    kind = ActorKind::kHost;
  else if (actor.find(".cpu") == std::string::npos || actor.rfind(".cpu") + 4 >= actor.size() ||
           actor.find_first_not_of("0123456789", actor.rfind(".cpu") + 4) != std::string::npos)
    throw ConfigError(ptr + "/actor",
                      "unknown actor \"" + actor + "\": use vmm, host, or <vm>.cpu<index>");
  if (!(static_cast<uint8_t>(info.actors) & static_cast<uint8_t>(kind))) {
    const char* who = info.actors == ActorKind::kVmm    ? "the vmm actor"
                      : info.actors == ActorKind::kHost ? "the host actor"
                                                        : "a vCPU actor (<vm>.cpu<i>)";
    throw ConfigError(ptr + "/op", "operation " + std::string(info.name) + " belongs to " + who +
                                       ", not \"" + actor + "\"");
  }
  // Fields: the required ones present, nothing the operation does not use.
  const auto req = words(info.required), opt = words(info.optional);
  for (const auto& r : req)
    if (!has(r))
      throw ConfigError(ptr, "operation " + std::string(info.name) + " needs field \"" + r + "\"");
  static const std::set<std::string> common{"actor", "op", "label", "expect"};
  for (const auto& g : given) {
    if (common.count(g) || req.count(g) || opt.count(g)) continue;
    std::string allowed;
    for (const auto& w : req) allowed += (allowed.empty() ? "" : ", ") + w;
    for (const auto& w : opt) allowed += (allowed.empty() ? "" : ", ") + w;
    throw ConfigError(ptr + "/" + g,
                      "field \"" + g + "\" is not used by operation " + std::string(info.name) +
                          " (its fields: " + (allowed.empty() ? "none" : allowed) + ")");
  }
  if (op == StepOp::kClose && has("guest_memfd") == has("vm"))
    throw ConfigError(ptr, "close needs exactly one of guest_memfd or vm");
  if ((op == StepOp::kConvert || op == StepOp::kGuestConvert) && to != "private" && to != "shared")
    throw ConfigError(ptr + "/to", "must be private or shared, got \"" + to + "\"");
  if (has("vm_type") && !backend::find(vm_type))
    throw ConfigError(ptr + "/vm_type",
                      "unknown VM type \"" + vm_type + "\" (known: " + backend::names() + ")");
  if (has("cap") && !kvm::parse_capability(cap))
    throw ConfigError(ptr + "/cap", "unknown capability \"" + cap + "\"");
  for (const char* field : {"flags", "attributes"}) {
    const bool attr = std::string_view(field) == "attributes";
    std::string bad;
    if (has(field) && !parse_step_flags(op, attr ? attributes : flags, attr, &bad)) {
      std::string names;
      for (const auto& f : flag_table(op, attr))
        names += (names.empty() ? "" : ", ") + std::string(f.name);
      throw ConfigError(
          ptr + "/" + field,
          "unknown name \"" + bad + "\" for " + std::string(info.name) +
              (names.empty() ? " (only numbers here)" : " (names: " + names + ", or a number)"));
    }
  }
  if (has("prot") && prot != "r" && prot != "rw" && prot != "rwx")
    throw ConfigError(ptr + "/prot", "must be r, rw or rwx");
  if (op == StepOp::kGuestIo && (size == 0 || (size & 4095)))
    throw ConfigError(ptr + "/size",
                      "guest_io copies whole 4 KiB pages (size a non-zero multiple of 4096)");
  if ((op == StepOp::kLoad || op == StepOp::kStore) && (size == 0 || size > 4096))
    throw ConfigError(ptr + "/size", "guest loads and stores are 1..4096 bytes");
  if ((op == StepOp::kHostileWrite || op == StepOp::kHostileRead) &&
      (size == 0 || size > 4096 || (gpa & 4095) + size > 4096))
    throw ConfigError(ptr + "/size",
                      "hostile_read/hostile_write access 1..4096 bytes within one 4 KiB page");
  if (has("hva") && !hva.empty() && !parse_size(hva))
    throw ConfigError(ptr + "/hva", "not a number: \"" + hva + "\"");
  // Expectations that make sense only for some actors.
  if (expect.has("errno") && kind == ActorKind::kVcpu)
    throw ConfigError(ptr + "/expect/errno",
                      "guest operations have no errno: expect exit, stops, ret or data instead");
  if ((expect.has("exit") || expect.has("stops")) && kind != ActorKind::kVcpu)
    throw ConfigError(ptr + "/expect", "exit and stops are expectations of vCPU steps");
  if (expect.has("signal") && op != StepOp::kMapRead && op != StepOp::kMapWrite)
    throw ConfigError(ptr + "/expect/signal", "signal is an expectation of map_read/map_write");
  // The effective configuration shows every field the operation uses, defaults resolved.
  shown = opt;
}

}  // namespace cvmsim::config
