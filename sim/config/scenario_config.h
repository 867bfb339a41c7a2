// The scenario file's schema. Every field is declared once here (see schema.h) with its default,
// its constraints and a one-line description; docs/scenario-format.md is generated from these
// declarations by `cvmsim list --markdown`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hw/base/page_size.h"
#include "hw/base/pattern.h"
#include "hw/base/schema_json.h"
#include "hw/memory/phys_mem.h"
#include "hw/mmu/pte_format.h"
#include "models/backend/registry.h"
#include "models/guest/workload.h"
#include "models/kvm/kvm_config.h"
#include "models/kvm/uapi.h"
#include "sim/config/step_config.h"
#include "sim/invariants/invariants.h"

namespace cvmsim::config {

inline constexpr uint64_t kKiB = 1ull << 10;
inline constexpr uint64_t kMiB = 1ull << 20;
inline constexpr uint64_t kGiB = 1ull << 30;
inline constexpr uint64_t kTiB = 1ull << 40;

// Spellings match name_of(Stage2Format) in hw/mmu/pte_format.h.
inline constexpr EnumName<Stage2Format> kStage2FormatNames[] = {{Stage2Format::kEpt4, "ept4"},
                                                                {Stage2Format::kEpt5, "ept5"},
                                                                {Stage2Format::kNpt4, "npt4"},
                                                                {Stage2Format::kNpt5, "npt5"},
                                                                {Stage2Format::kArmS2, "arm_s2"}};

inline constexpr EnumName<MemMode> kMemModeNames[] = {{MemMode::kData, "data"},
                                                      {MemMode::kMetadataOnly, "metadata"}};

inline constexpr EnumName<PageSize> kPageSizeNames[] = {
    {PageSize::k4K, "4K"}, {PageSize::k2M, "2M"}, {PageSize::k1G, "1G"}};

inline constexpr EnumName<PatternKind> kPatternNames[] = {
    {PatternKind::kValue, "value"}, {PatternKind::kSeeded, "seeded"}, {PatternKind::kZero, "zero"}};

// Latencies, in core cycles. Defaults are estimates unless a public figure is cited; see
// docs/costs.md for the reasoning behind each.
// The registered backends' sections with their defaults (models/backend/registry.h), in
// registry order.
SectionSet platform_sections();
SectionSet vm_sections();
// The description of vms[].type: every registered VM type with its summary.
std::string_view vm_type_doc();

struct CostConfig {
  uint64_t tlb_hit_cycles = 1;
  uint64_t walk_ref_cycles = 30;
  uint64_t pwc_hit_cycles = 2;
  uint64_t mem_access_cycles = 4;
  uint64_t mem_bytes_per_cycle = 32;
  uint64_t interconnect_cycles = 0;
  uint64_t vm_exit_round_trip_cycles = 2530;
  uint64_t fence_cycles = 30;

  template <class V>
  void visit(V& v) {
    v(uint_field(
          "tlb_hit_cycles", tlb_hit_cycles,
          "cost of a TLB lookup that hits (estimate: L1 DTLB hit is folded into the load pipeline)")
          .unit("cycles")
          .max(1000000));
    v(uint_field("walk_ref_cycles", walk_ref_cycles,
                 "cost of each page-table entry read by a stage-2 walk (estimate: a PTE usually "
                 "hits in L2/LLC)")
          .unit("cycles")
          .max(1000000));
    v(uint_field("pwc_hit_cycles", pwc_hit_cycles,
                 "cost of a walk step served by the page-walk cache")
          .unit("cycles")
          .max(1000000));
    v(uint_field("mem_access_cycles", mem_access_cycles,
                 "fixed cost of a data access once translated (no data-cache model: an L1-hit-like "
                 "average, estimate)")
          .unit("cycles")
          .max(1000000));
    v(uint_field("mem_bytes_per_cycle", mem_bytes_per_cycle,
                 "bandwidth charged for the bytes of an access beyond the first 64, and for "
                 "zeroing/copying")
          .unit("bytes/cycle")
          .min(1)
          .max(4096));
    v(uint_field("interconnect_cycles", interconnect_cycles,
                 "latency the interconnect adds to each transaction that is not served by DMI")
          .unit("cycles")
          .max(1000000));
    v(uint_field("vm_exit_round_trip_cycles", vm_exit_round_trip_cycles,
                 "VM exit plus re-entry for an exit handled in the host kernel; default: minimal "
                 "SVM exit on Zen, ~2,530 cycles (LKML 2020 measurements of SVM exits)")
          .unit("cycles")
          .max(100000000));
    v(uint_field("fence_cycles", fence_cycles,
                 "cost of a fence (estimate: an MFENCE drains the store buffer)")
          .unit("cycles")
          .max(1000000));
  }
};

struct TlbConfig {
  uint64_t sets = 128;
  uint64_t ways = 12;
  template <class V>
  void visit(V& v) {
    v(uint_field("sets", sets, "TLB sets (default 128 x 12 = 1536 entries, like a recent x86 STLB)")
          .min(1)
          .max(1 << 20)
          .pow2());
    v(uint_field("ways", ways, "TLB associativity").min(1).max(64));
  }
};

struct PwcConfig {
  uint64_t entries = 32;
  uint64_t ways = 4;
  template <class V>
  void visit(V& v) {
    v(uint_field("entries", entries, "page-walk cache entries per upper level (0 disables the PWC)")
          .max(1 << 16));
    v(uint_field("ways", ways, "page-walk cache associativity").min(1).max(64));
  }
  void validate(const std::string& ptr) const {
    if (entries != 0 && (entries % ways != 0 || ((entries / ways) & (entries / ways - 1)) != 0))
      throw ConfigError(ptr + "/entries", "must be ways x a power of two (got " +
                                              std::to_string(entries) + " entries, " +
                                              std::to_string(ways) + " ways)");
  }
};

struct MmuConfig {
  Stage2Format format = Stage2Format::kEpt4;
  TlbConfig tlb;
  PwcConfig pwc;
  template <class V>
  void visit(V& v) {
    v(enum_field("format", format, kStage2FormatNames,
                 "stage-2 page-table format: Intel EPT (4/5 level), AMD NPT (4/5 level) or Arm "
                 "stage-2 (4K granule)"));
    v(object_field("tlb", tlb, "per-vCPU TLB"));
    v(object_field("pwc", pwc, "per-vCPU page-walk cache"));
  }
};

struct MemoryConfig {
  uint64_t size = 16 * kGiB;
  MemMode mode = MemMode::kData;
  template <class V>
  void visit(V& v) {
    v(uint_field("size", size, "host physical memory")
          .bytes()
          .min(64 * kMiB)
          .max(16 * kTiB)
          .aligned(2 * kMiB));
    v(enum_field("mode", mode, kMemModeNames,
                 "data: store bytes; metadata: keep only per-frame metadata and a content "
                 "fingerprint (large runs; loads read zeros and cannot verify)"));
  }
};

struct PlatformConfig {
  uint64_t cpu_frequency_hz = 2'000'000'000;
  uint64_t quantum_cycles = 20'000;
  MemoryConfig memory;
  MmuConfig mmu;
  CostConfig costs;
  kvm::KvmConfig kvm;
  // The registered backends' platform sections (platform.<backend>), defaults filled in.
  SectionSet backends = platform_sections();
  template <class V>
  void visit(V& v) {
    v(uint_field("cpu_frequency_hz", cpu_frequency_hz,
                 "core clock; converts cycles to simulated time")
          .unit("Hz")
          .min(1'000'000)
          .max(100'000'000'000ull));
    v(uint_field("quantum_cycles", quantum_cycles,
                 "temporal-decoupling quantum: how far a vCPU may run ahead of simulated time "
                 "before it synchronises")
          .unit("cycles")
          .min(1)
          .max(1'000'000'000));
    v(object_field("memory", memory, "host physical memory"));
    v(object_field("mmu", mmu, "translation hardware"));
    v(object_field("costs", costs, "latency parameters"));
    v(object_field("kvm", kvm, "the simulated KVM"));
    v(section_set(backends));
  }
};

struct MemRegionConfig {
  uint64_t gpa = 0;
  uint64_t size = 256 * kMiB;
  PageSize page_size = PageSize::k4K;
  bool is_private = false;
  template <class V>
  void visit(V& v) {
    v(uint_field("gpa", gpa, "first guest physical address of the region")
          .bytes()
          .aligned(4 * kKiB));
    v(uint_field("size", size, "region size").bytes().min(4 * kKiB).aligned(4 * kKiB));
    v(enum_field(
        "page_size", page_size, kPageSizeNames,
        "host page size of the region's shared backing (2M/1G: hugetlb) and so the largest stage-2 "
        "leaf KVM maps it with; gpa and size must be multiples of it. Private memory is mapped at "
        "4K (mainline guest_memfd is order-0) unless platform.kvm.gmem_huge_folios and the backend "
        "allow 2M (gmem_max_mapping_level: e.g. a TD's huge_private option)"));
    v(bool_field("private", is_private,
                 "back the region with a guest_memfd too and make it private from the start (needs "
                 "a VM type with private memory)"));
  }
  void validate(const std::string& ptr) const;
};

struct VmmPolicyConfig {
  bool discard_on_convert = true;
  bool implicit_conversion = true;
  bool allocate_on_private = false;
  template <class V>
  void visit(V& v) {
    v(bool_field("discard_on_convert", discard_on_convert,
                 "on conversion, free the opposite backing (punch the guest_memfd on "
                 "private->shared, drop the shared pages on shared->private), as QEMU does; false "
                 "keeps both (double allocation)"));
    v(bool_field("implicit_conversion", implicit_conversion,
                 "convert a page when KVM_RUN exits with KVM_EXIT_MEMORY_FAULT for an "
                 "access/attribute mismatch; false stops the vCPU instead"));
    v(bool_field("allocate_on_private", allocate_on_private,
                 "fallocate the guest_memfd range before converting it to private"));
  }
};

struct VmConfig {
  std::string name;
  uint32_t type = kvm::KVM_X86_DEFAULT_VM;
  uint64_t vcpus = 1;
  std::vector<MemRegionConfig> memory{MemRegionConfig{}};
  VmmPolicyConfig vmm;
  // The registered backends' per-VM sections (vms[].<backend>); only the VM's own type's may
  // differ from its defaults.
  SectionSet backends = vm_sections();
  template <class V>
  void visit(V& v) {
    v(string_field("name", name, "unique VM name, referenced by workloads").required_non_empty());
    v(enum_field("type", type, backend::vm_type_names(), vm_type_doc()));
    v(uint_field("vcpus", vcpus, "number of vCPUs").min(1).max(256));
    v(array_field("memory", memory,
                  "guest physical memory regions, one memslot each; must not overlap")
          .items(1));
    v(object_field("vmm", vmm, "the VMM's conversion policy"));
    v(section_set(backends));
  }
};

inline constexpr EnumName<WorkloadKind> kWorkloadKindNames[] = {
    {WorkloadKind::kSequential, "sequential"}, {WorkloadKind::kStrided, "strided"},
    {WorkloadKind::kUniform, "uniform"},       {WorkloadKind::kZipf, "zipf"},
    {WorkloadKind::kHotCold, "hotcold"},       {WorkloadKind::kTrace, "trace"},
    {WorkloadKind::kConvert, "convert"}};

inline constexpr EnumName<TraceFormat> kTraceFormatNames[] = {{TraceFormat::kAuto, "auto"},
                                                              {TraceFormat::kCvmsim, "cvmsim"},
                                                              {TraceFormat::kLackey, "lackey"}};

struct WorkloadConfig {
  std::string vm;
  uint64_t vcpu = 0;
  WorkloadKind kind = WorkloadKind::kUniform;
  uint64_t base = 0;
  uint64_t footprint = 64 * kMiB;
  uint64_t access_size = 8;
  uint64_t ops = 100'000;
  double read_fraction = 0.7;
  uint64_t stride = 4 * kKiB;
  double zipf_exponent = 0.99;
  double hot_fraction = 0.1;
  double hot_probability = 0.9;
  uint64_t compute_cycles = 0;
  PatternKind pattern = PatternKind::kSeeded;
  uint64_t value = 1;
  bool verify_loads = false;
  std::string trace;
  TraceFormat trace_format = TraceFormat::kAuto;
  bool trace_instructions = false;
  uint64_t trace_repeat = 1;
  bool trace_validate = true;

  template <class V>
  void visit(V& v) {
    v(string_field("vm", vm, "name of the VM whose vCPU runs this workload").required_non_empty());
    v(uint_field("vcpu", vcpu, "index of the vCPU in that VM").max(255));
    v(enum_field("kind", kind, kWorkloadKindNames,
                 "address stream: sequential, strided, uniform random, Zipf over pages, hot/cold, "
                 "trace replay, or convert (conversion round trips: each op converts one page to "
                 "private and back, storing on each side)"));
    v(uint_field("base", base, "first guest physical address of the footprint").bytes());
    v(uint_field("footprint", footprint, "bytes the stream covers, starting at base")
          .bytes()
          .min(1));
    v(uint_field("access_size", access_size, "bytes per load/store")
          .min(1)
          .max(4096)
          .unit("bytes"));
    v(uint_field("ops", ops,
                 "memory operations to issue (trace: at most this many; 0 = the whole trace)")
          .max(1ull << 40));
    v(double_field("read_fraction", read_fraction, "probability that an access is a load")
          .range(0, 1));
    v(uint_field("stride", stride, "strided: distance between consecutive accesses")
          .bytes()
          .min(1));
    v(double_field("zipf_exponent", zipf_exponent,
                   "zipf: exponent s of the page popularity law P(rank k) ~ 1/k^s")
          .range(0, 10));
    v(double_field("hot_fraction", hot_fraction, "hotcold: fraction of the footprint that is hot")
          .range(0, 1));
    v(double_field("hot_probability", hot_probability,
                   "hotcold: probability that an access goes to the hot set")
          .range(0, 1));
    v(uint_field("compute_cycles", compute_cycles,
                 "compute cycles between consecutive memory operations")
          .unit("cycles")
          .max(1'000'000'000));
    v(enum_field("pattern", pattern, kPatternNames,
                 "data stores write (see docs/scenario-format.md, patterns)"));
    v(uint_field("value", value, "pattern value (value) or seed (seeded)"));
    v(bool_field("verify_loads", verify_loads,
                 "check every loaded byte against the pattern (data mode only)"));
    v(string_field("trace", trace, "trace: path of the trace file, relative to the scenario file"));
    v(enum_field("trace_format", trace_format, kTraceFormatNames,
                 "trace: file format (docs/trace-format.md)"));
    v(bool_field("trace_instructions", trace_instructions,
                 "trace: replay lackey instruction fetches (I lines) as loads"));
    v(uint_field("trace_repeat", trace_repeat, "trace: how many times to replay the file")
          .min(1)
          .max(1'000'000));
    v(bool_field("trace_validate", trace_validate,
                 "trace: parse the whole file when the scenario is loaded, so that a bad line is "
                 "reported before the run (exit 2); false skips that pass for very large traces, "
                 "and a bad line then stops the vCPU when replay reaches it (exit 1)"));
  }
};

inline constexpr EnumName<invariants::CheckMode> kCheckModeNames[] = {
    {invariants::CheckMode::kIncremental, "incremental"},
    {invariants::CheckMode::kFull, "full"},
    {invariants::CheckMode::kOff, "off"}};
enum class OnViolation : uint8_t { kStop, kCount };
inline constexpr EnumName<OnViolation> kOnViolationNames[] = {{OnViolation::kStop, "stop"},
                                                              {OnViolation::kCount, "count"}};

struct InvariantsConfig {
  invariants::CheckMode mode = invariants::CheckMode::kIncremental;
  OnViolation on_violation = OnViolation::kStop;
  uint64_t trace_events = 16;
  template <class V>
  void visit(V& v) {
    v(uint_field("trace_events", trace_events,
                 "how many of the most recent trace events a violation report carries (stderr, "
                 "violations.txt); 0: none")
          .unit("events")
          .max(4096));
    v(enum_field(
        "mode", mode, kCheckModeNames,
        "when isolation invariants are checked: incremental (after every KVM exit and vmm/host "
        "step, re-reading only what changed), full (re-reading everything each time), off"));
    v(enum_field(
        "on_violation", on_violation, kOnViolationNames,
        "stop: an unexpected violation stops the run (exit status 1); count: report it and go on"));
  }
};

struct RunConfig {
  uint64_t max_time_ns = 0;
  bool trace = false;
  InvariantsConfig invariants;
  template <class V>
  void visit(V& v) {
    v(uint_field("max_time_ns", max_time_ns,
                 "stop after this much simulated time (0: run until every program ends)")
          .unit("ns"));
    v(bool_field("trace", trace,
                 "write trace.txt (one line per notable event) into the output directory"));
    v(object_field("invariants", invariants, "isolation invariant checking (docs/invariants.md)"));
  }
};

struct ScenarioConfig {
  std::string name = "unnamed";
  std::string description;
  uint64_t seed = 1;
  PlatformConfig platform;
  std::vector<VmConfig> vms;
  std::vector<WorkloadConfig> workloads;
  std::vector<StepConfig> steps;
  RunConfig run;

  template <class V>
  void visit(V& v) {
    v(string_field("name", name, "scenario name, echoed in outputs"));
    v(string_field("description", description, "free text"));
    v(uint_field("seed", seed,
                 "master seed; every component's random stream derives from it and its name "
                 "(--seed overrides)"));
    v(object_field("platform", platform, "the simulated machine"));
    v(array_field("vms", vms, "virtual machines").items(1, 64));
    v(array_field("workloads", workloads, "guest programs, one per vCPU at most"));
    v(array_field("steps", steps,
                  "scripted operations of the vmm, host and vCPU actors, with expectations "
                  "(docs/scenario-format.md, Steps)"));
    v(object_field("run", run, "run control"));
  }
  // Cross-field checks: references, overlaps, sizes against memory.
  void validate(const std::string& ptr) const;
  void validate_steps(const std::string& ptr,
                      const std::vector<std::pair<size_t, uint64_t>>& workload_cpus) const;
};

// A VM's backend sections: its own type's checked by the backend (validate_vm), every other
// one left at its defaults. Throws ConfigError naming the field.
void validate_backend_sections(const VmConfig& vm, const std::string& vm_ptr);
// The bounce buffer the VM's options declare (size 0: none).
backend::GuestSide::Range declared_bounce_buffer(const VmConfig& vm);

}  // namespace cvmsim::config
