// The scenario file's schema. Every field is declared once here (see schema.h) with its default,
// its constraints and a one-line description; docs/scenario-format.md is generated from these
// declarations by `cvmsim list --markdown`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hw/base/page_size.h"
#include "hw/base/pattern.h"
#include "hw/memory/phys_mem.h"
#include "hw/mmu/pte_format.h"
#include "models/guest/tdx_guest_kernel.h"
#include "models/guest/workload.h"
#include "models/kvm/kvm_config.h"
#include "models/kvm/uapi.h"
#include "sim/config/schema.h"
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
struct CostConfig {
  uint64_t tlb_hit_cycles = 1;
  uint64_t walk_ref_cycles = 30;
  uint64_t pwc_hit_cycles = 2;
  uint64_t mem_access_cycles = 4;
  uint64_t mem_bytes_per_cycle = 32;
  uint64_t interconnect_cycles = 0;
  uint64_t vm_exit_round_trip_cycles = 2530;
  uint64_t hypercall_cycles = 200;
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
                 "SVM exit on Zen, ~2,530 cycles (tdx-snp.md Part C, LKML 2020)")
          .unit("cycles")
          .max(100000000));
    v(uint_field("hypercall_cycles", hypercall_cycles,
                 "hypervisor work for a hypercall, on top of the exit round trip (estimate)")
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

inline constexpr EnumName<kvm::AttrStoreKind> kAttrStoreNames[] = {
    {kvm::AttrStoreKind::kXarray, "xarray"}, {kvm::AttrStoreKind::kRange, "range"}};

// The simulated KVM: policies and the cost of each KVM operation (docs/costs.md).
// Costs of KVM operations, in core cycles (docs/costs.md). Zeroing uses mem_bytes_per_cycle.
struct KvmCostConfig {
  uint64_t ioctl_cycles = 400;
  uint64_t exit_to_userspace_cycles = 8000;
  uint64_t fault_cycles = 800;
  uint64_t attr_entry_cycles = 120;
  uint64_t attr_range_cycles = 300;
  uint64_t zap_leaf_cycles = 60;
  uint64_t map_leaf_cycles = 150;
  uint64_t tlb_flush_cycles = 2000;
  uint64_t gup_cycles = 400;
  uint64_t memslot_update_cycles = 6000;
  template <class V>
  void visit(V& v) {
    v(uint_field("ioctl_cycles", ioctl_cycles,
                 "syscall entry/exit and ioctl dispatch of every KVM ioctl and guest_memfd file "
                 "operation (estimate)")
          .unit("cycles")
          .max(1'000'000'000));
    v(uint_field("exit_to_userspace_cycles", exit_to_userspace_cycles,
                 "KVM_RUN returning to the VMM and re-entering the guest, on top of the VM exit "
                 "round trip (estimate: a heavyweight exit costs several microseconds)")
          .unit("cycles")
          .max(1'000'000'000));
    v(uint_field("fault_cycles", fault_cycles,
                 "software path of one KVM stage-2 fault, excluding the pieces below (estimate)")
          .unit("cycles")
          .max(1'000'000'000));
    v(uint_field("attr_entry_cycles", attr_entry_cycles,
                 "attribute update or lookup, per entry touched (xarray store: per page; estimate)")
          .unit("cycles")
          .max(1'000'000'000));
    v(uint_field("attr_range_cycles", attr_range_cycles,
                 "attribute update, per range inserted, split or merged (range store; estimate)")
          .unit("cycles")
          .max(1'000'000'000));
    v(uint_field("zap_leaf_cycles", zap_leaf_cycles,
                 "clearing one stage-2 leaf during an invalidation (estimate)")
          .unit("cycles")
          .max(1'000'000'000));
    v(uint_field("map_leaf_cycles", map_leaf_cycles,
                 "installing one stage-2 leaf on a fault (estimate)")
          .unit("cycles")
          .max(1'000'000'000));
    v(uint_field(
          "tlb_flush_cycles", tlb_flush_cycles,
          "kvm_flush_remote_tlbs: flushing every vCPU's TLB of the VM (IPIs + INVEPT, estimate)")
          .unit("cycles")
          .max(1'000'000'000));
    v(uint_field("gup_cycles", gup_cycles,
                 "resolving a host frame: get_user_pages or a guest_memfd folio lookup (estimate)")
          .unit("cycles")
          .max(1'000'000'000));
    v(uint_field("memslot_update_cycles", memslot_update_cycles,
                 "creating, moving or deleting a memslot (SRCU swap, estimate)")
          .unit("cycles")
          .max(1'000'000'000));
  }
  kvm::KvmCosts to_costs(double zero_bytes_per_cycle, uint64_t hypercall_cycles) const {
    kvm::KvmCosts c;
    c.ioctl = Cycles(ioctl_cycles);
    c.exit_to_userspace = Cycles(exit_to_userspace_cycles);
    c.fault_base = Cycles(fault_cycles);
    c.attr_per_entry = Cycles(attr_entry_cycles);
    c.attr_per_range = Cycles(attr_range_cycles);
    c.zap_per_leaf = Cycles(zap_leaf_cycles);
    c.map_per_leaf = Cycles(map_leaf_cycles);
    c.tlb_flush = Cycles(tlb_flush_cycles);
    c.gup_per_page = Cycles(gup_cycles);
    c.memslot_update = Cycles(memslot_update_cycles);
    c.zero_bytes_per_cycle = zero_bytes_per_cycle;
    c.hypercall = Cycles(hypercall_cycles);
    return c;
  }
};

inline constexpr EnumName<kvm::GmemRebindPolicy> kRebindNames[] = {
    {kvm::GmemRebindPolicy::kForbid, "forbid"},
    {kvm::GmemRebindPolicy::kZeroOnUnbind, "zero_on_unbind"},
    {kvm::GmemRebindPolicy::kZeroOnBind, "zero_on_bind"},
    {kvm::GmemRebindPolicy::kUnsafeNoScrub, "unsafe_no_scrub"}};

struct KvmPlatformConfig {
  kvm::AttrStoreKind attr_store = kvm::AttrStoreKind::kXarray;
  kvm::GmemRebindPolicy gmem_rebind = kvm::GmemRebindPolicy::kForbid;
  bool gmem_zero_on_handout = true;
  bool gmem_huge_folios = false;
  bool flush_tlb_after_zap = true;
  KvmCostConfig costs;
  template <class V>
  void visit(V& v) {
    v(enum_field(
        "attr_store", attr_store, kAttrStoreNames,
        "memory-attribute storage: xarray (per page, as Linux) or range (interval store)"));
    v(enum_field(
        "gmem_rebind", gmem_rebind, kRebindNames,
        "binding a guest_memfd to a VM other than its own: forbid (mainline, EINVAL), "
        "zero_on_unbind (allowed; pages zeroed when the last binding goes), zero_on_bind (allowed "
        "once unbound; zeroed when another VM binds it), unsafe_no_scrub (allowed, pages handed "
        "over as they are: unsafe, the checker's ISO-6 catches it)"));
    v(bool_field("gmem_zero_on_handout", gmem_zero_on_handout,
                 "zero a guest_memfd page before the guest first gets it (mainline); false is "
                 "UNSAFE: freed frames reach the next owner with their old contents"));
    v(bool_field("gmem_huge_folios", gmem_huge_folios,
                 "guest_memfd hands out 2 MiB folios where a whole aligned 2 MiB block of the file "
                 "is unallocated (hugetlb-backed guest_memfd, PROPOSED upstream; mainline is "
                 "order-0, false); private memory can then be mapped at 2 MiB where the backend "
                 "allows it (vms[].tdx.huge_private)"));
    v(bool_field("flush_tlb_after_zap", flush_tlb_after_zap,
                 "flush every vCPU's TLB after KVM zaps mappings (mainline); false is UNSAFE: "
                 "stale translations survive"));
    v(object_field("costs", costs, "cost of KVM operations"));
  }
};

// platform.tdx.hkid_reuse (models/tdx/kvm_tdx.h HkidReuse; docs/tdx-model.md "HKID reuse").
enum class HkidReusePolicy : uint8_t { kFlush, kUnsafeNoFlush };
inline constexpr EnumName<HkidReusePolicy> kHkidReuseNames[] = {
    {HkidReusePolicy::kFlush, "flush"}, {HkidReusePolicy::kUnsafeNoFlush, "unsafe_no_flush"}};

struct TdxPlatformConfig {
  HkidReusePolicy hkid_reuse = HkidReusePolicy::kFlush;
  template <class V>
  void visit(V& v) {
    v(enum_field("hkid_reuse", hkid_reuse, kHkidReuseNames,
                 "how a TD's HKID goes back to the allocator at teardown: flush (mainline: "
                 "VP.FLUSH, VPFLUSHDONE, TDH.PHYMEM.CACHE.WB on every package, KEY.FREEID, then "
                 "reuse) or unsafe_no_flush (UNSAFE: KVM skips CACHE.WB on a module with a "
                 "modelled FREEID erratum, so the next TD gets the HKID while lines tagged with it "
                 "are still cached; ISO-8 and T6 catch it)"));
  }
};

struct PlatformConfig {
  uint64_t cpu_frequency_hz = 2'000'000'000;
  uint64_t quantum_cycles = 20'000;
  MemoryConfig memory;
  MmuConfig mmu;
  CostConfig costs;
  KvmPlatformConfig kvm;
  TdxPlatformConfig tdx;
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
    v(object_field("tdx", tdx, "the TDX platform (used when a scenario creates a TD)"));
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
        "allow 2M (vms[].tdx.huge_private)"));
    v(bool_field("private", is_private,
                 "back the region with a guest_memfd too and make it private from the start (needs "
                 "a VM type with private memory)"));
  }
  void validate(const std::string& ptr) const;
};

inline constexpr EnumName<uint32_t> kVmTypeNames[] = {
    {kvm::KVM_X86_DEFAULT_VM, "default"},
    {kvm::KVM_X86_SW_PROTECTED_VM, "sw_protected"},
    {kvm::KVM_X86_TDX_VM, "tdx"}};

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

// One piece of a TD's initial image (KVM_TDX_INIT_MEM_REGION before KVM_TDX_FINALIZE_VM).
struct InitialImageConfig {
  uint64_t gpa = 0;
  uint64_t size = 4 * kKiB;
  PatternKind pattern = PatternKind::kSeeded;
  uint64_t value = 1;
  bool measure = true;
  template <class V>
  void visit(V& v) {
    v(uint_field(
          "gpa", gpa,
          "first guest physical address (private, without the SHARED bit) the piece is added at")
          .bytes()
          .aligned(4 * kKiB));
    v(uint_field("size", size, "bytes added: every 4 KiB page gets TDH.MEM.PAGE.ADD")
          .bytes()
          .min(4 * kKiB)
          .aligned(4 * kKiB));
    v(enum_field("pattern", pattern, kPatternNames,
                 "contents of the VMM's source buffer, keyed by guest physical address as guest "
                 "loads check them"));
    v(uint_field("value", value, "pattern parameter (see docs/scenario-format.md, patterns)"));
    v(bool_field("measure", measure,
                 "also extend the MRTD with the contents (TDH.MR.EXTEND x16 per page, "
                 "KVM_TDX_MEASURE_MEMORY_REGION); PAGE.ADD extends it with the GPA either way"));
  }
};

// A TD's bounce buffer (swiotlb): shared memory guest I/O copies into.
struct BounceBufferConfig {
  uint64_t gpa = 0;
  uint64_t size = 0;
  template <class V>
  void visit(V& v) {
    v(uint_field("gpa", gpa,
                 "first guest physical address (without the SHARED bit); must lie in a shared "
                 "(private: false) memory region of the VM")
          .bytes()
          .aligned(4 * kKiB));
    v(uint_field("size", size, "bytes; 0: no bounce buffer").bytes().aligned(4 * kKiB));
  }
};

inline constexpr EnumName<guest::AcceptPolicy> kAcceptPolicyNames[] = {
    {guest::AcceptPolicy::kBoot, "boot"}, {guest::AcceptPolicy::kLazy, "lazy"}};

struct TdxVmConfig {
  std::vector<InitialImageConfig> initial_image;
  guest::AcceptPolicy accept = guest::AcceptPolicy::kBoot;
  bool sept_ve_disable = true;
  bool huge_private = false;
  uint64_t accept_interrupt_cycles = 0;
  BounceBufferConfig bounce_buffer;
  template <class V>
  void visit(V& v) {
    v(array_field(
        "initial_image", initial_image,
        "pages the VMM adds before the TD is finalized (PAGE.ADD: MAPPED, no ACCEPT needed); each "
        "piece lies in a private region of the VM; pieces must not overlap"));
    v(enum_field("accept", accept, kAcceptPolicyNames,
                 "the guest kernel's acceptance of private memory: boot (TDG.MEM.PAGE.ACCEPT of "
                 "every private region before the workload, 2 MiB where aligned, 4 KiB after "
                 "PAGE_SIZE_MISMATCH) or lazy (accept a page when its first access gets a #VE; "
                 "needs sept_ve_disable false). Conversions to private accept at once either way"));
    v(bool_field("sept_ve_disable", sept_ve_disable,
                 "TD ATTRIBUTES.SEPT_VE_DISABLE (bit 28; Linux guests require it): a guest access "
                 "to a PENDING page is then a TD exit, which KVM treats as fatal (the vCPU stops), "
                 "instead of a #VE to the guest"));
    v(bool_field(
        "huge_private", huge_private,
        "map private memory with 2 MiB S-EPT leaves (SEPT.ADD to level 2, PAGE.AUG 2M) where "
        "guest_memfd hands out a 2 MiB folio (platform.kvm.gmem_huge_folios) and the attributes "
        "allow; KVM's TDX huge-page support is not in mainline (false: 4 KiB)"));
    v(uint_field("accept_interrupt_cycles", accept_interrupt_cycles,
                 "an interrupt becomes pending for the guest every this many cycles of its "
                 "TDG.MEM.PAGE.ACCEPT work (0: never); a 2 MiB ACCEPT with one pending zeroes one "
                 "4 KiB chunk, saves its ACCEPT_COUNTER and returns interrupted, and the guest "
                 "re-issues it (platform.tdx.accept_interrupts counts them)")
          .unit("cycles"));
    v(object_field("bounce_buffer", bounce_buffer,
                   "a shared area guest I/O copies private data into (step guest_io): a deliberate "
                   "share the leak checker does not report"));
  }
};

struct VmConfig {
  std::string name;
  uint32_t type = kvm::KVM_X86_DEFAULT_VM;
  uint64_t vcpus = 1;
  std::vector<MemRegionConfig> memory{MemRegionConfig{}};
  VmmPolicyConfig vmm;
  TdxVmConfig tdx;
  template <class V>
  void visit(V& v) {
    v(string_field("name", name, "unique VM name, referenced by workloads").required_non_empty());
    v(enum_field("type", type, kVmTypeNames,
                 "KVM VM type: default (no private memory), sw_protected (private memory from "
                 "guest_memfd, no hardware enforcement) or tdx (a TD: private memory in the TDX "
                 "module's Secure EPT under the TD's HKID; shared GPAs have bit 47 set)"));
    v(uint_field("vcpus", vcpus, "number of vCPUs").min(1).max(256));
    v(array_field("memory", memory,
                  "guest physical memory regions, one memslot each; must not overlap")
          .items(1));
    v(object_field("vmm", vmm, "the VMM's conversion policy"));
    v(object_field("tdx", tdx,
                   "TD options (type tdx only): the initial image added and measured before "
                   "TDH.MR.FINALIZE, the guest kernel's acceptance policy, SEPT_VE_DISABLE, 2 MiB "
                   "private pages, the bounce buffer"));
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

}  // namespace cvmsim::config
