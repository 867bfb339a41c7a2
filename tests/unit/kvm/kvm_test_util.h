// Shared fixture for the KVM uAPI facade and KVM MMU tests (kvm-guest-memfd.md §2-§9, §11, §13):
// a few MiB of PhysMem, the host page allocator as the FrameAllocator, a Kvm with the default and
// sw_protected backends registered (plus a test backend, below), and a VMM process with its own
// HostMm. Everything goes through the facade (Kvm methods taking Process&), as a VMM would.
//
// Every test case builds its fixture from any_store(), a Catch2 GENERATE over both attribute
// stores, so each test runs identically against xarray and range storage (the issue's "run
// identically against both attribute stores").
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "hw/cpu/vm_exit.h"
#include "hw/memory/phys_mem.h"
#include "hw/mmu/pwc.h"
#include "hw/mmu/stage2_table.h"
#include "hw/mmu/tlb.h"
#include "models/host/host_mm.h"
#include "models/host/page_allocator.h"
#include "models/kvm/backend.h"
#include "models/kvm/kvm.h"
#include "models/kvm/kvm_machines.h"
#include "models/kvm/uapi.h"
#include "models/kvm/vcpu.h"
#include "models/kvm/vm.h"
#include "models/sw_protected/sw_protected_backend.h"

namespace cvmsim::kvmtest {

using namespace cvmsim::kvm;

inline constexpr uint64_t kPage = 4096;
inline constexpr uint64_t k2M = 2ull << 20;
inline constexpr uint64_t kPriv = KVM_MEMORY_ATTRIBUTE_PRIVATE;
inline constexpr uint32_t kDefault = KVM_X86_DEFAULT_VM;
inline constexpr uint32_t kSwProt = KVM_X86_SW_PROTECTED_VM;

// A VM type that is not Linux's: a TDX-like backend whose private-ness comes from the access
// (a "shared bit" in the faulting GPA, stripped from the gfn, §7 TDX) instead of the attribute,
// so that the generic fault path's mismatch exit (§7 step 2, §8) can be driven through
// Vcpu::handle_exit. Private memory lives in the one stage-2 table (no private root), as for
// sw_protected. Knobs let a test observe the pre-set hook and turn READONLY support off.
inline constexpr uint32_t kTestVmType = 62;
inline constexpr uint64_t kSharedBit = 1ull << 46;

struct TestBackendKnobs {
  bool has_readonly_mem = true;
  ConversionContents contents = ConversionContents::kLost;
  std::function<void(Vm&, GfnRange, uint64_t)> on_pre_set;
};

class SharedBitTestBackend final : public KvmBackend {
 public:
  explicit SharedBitTestBackend(TestBackendKnobs& k) : k_(k) {}
  uint32_t vm_type() const override { return kTestVmType; }
  std::string_view name() const override { return "test_shared_bit"; }
  bool has_private_mem() const override { return true; }
  bool has_readonly_mem() const override { return k_.has_readonly_mem; }
  ConversionContents conversion_contents() const override { return k_.contents; }
  Gfn fault_gfn(const Vm&, Gpa gpa) const override {
    return gpa_to_gfn(Gpa(gpa.value() & ~kSharedBit));
  }
  bool fault_is_private(const Vm&, Gfn, const VmExit& e) const override {
    return !(e.gpa.value() & kSharedBit);
  }
  HypercallDecode decode_hypercall(const Vm&, const VmExit& e) const override {
    return decode_map_gpa_range(e);
  }
  bool pre_set_memory_attributes(Vm& vm, GfnRange r, uint64_t attrs) override {
    if (k_.on_pre_set) k_.on_pre_set(vm, r, attrs);
    return false;
  }

 private:
  TestBackendKnobs& k_;
};

// The userspace side of KVM_RUN as a test double: records every exit with the errno KVM_RUN
// returned and a copy of kvm_run, answers hypercalls with `hypercall_ret`.
struct RecordingUserspace final : UserspaceExitHandler {
  struct Exit {
    int err;
    kvm_run run;
  };
  std::vector<Exit> exits;
  bool resume = true;
  uint64_t hypercall_ret = 0;
  bool on_exit(Vcpu&, int err, kvm_run& run, std::string& stop_reason) override {
    exits.push_back({err, run});
    if (run.exit_reason == KVM_EXIT_HYPERCALL) run.hypercall.ret = hypercall_ret;
    if (!resume) stop_reason = "stopped by the test";
    return resume;
  }
};

inline AttrStoreKind any_store() {
  return GENERATE(AttrStoreKind::kXarray, AttrStoreKind::kRange);
}

inline Errno err(const Status& s) {
  REQUIRE_FALSE(s.ok());
  REQUIRE(s.error().is_errno());
  return s.error().errno_value();
}
template <class T>
Errno err(const Result<T>& r) {
  REQUIRE_FALSE(r.ok());
  REQUIRE(r.error().is_errno());
  return r.error().errno_value();
}

inline kvm_userspace_memory_region2 region2(uint32_t slot, uint64_t gpa, uint64_t size,
                                            uint64_t uaddr, uint32_t flags = 0, int gmem_fd = 0,
                                            uint64_t offset = 0) {
  kvm_userspace_memory_region2 r;
  r.slot = slot;
  r.flags = flags;
  r.guest_phys_addr = gpa;
  r.memory_size = size;
  r.userspace_addr = uaddr;
  r.guest_memfd = static_cast<uint32_t>(gmem_fd);
  r.guest_memfd_offset = offset;
  return r;
}

inline kvm_memory_attributes attrs(uint64_t address, uint64_t size, uint64_t attributes,
                                   uint64_t flags = 0) {
  kvm_memory_attributes a;
  a.address = address;
  a.size = size;
  a.attributes = attributes;
  a.flags = flags;
  return a;
}

inline VmExit stage2_exit(uint64_t gpa, bool write = false) {
  VmExit e;
  e.reason = ExitReason::kStage2Fault;
  e.gpa = Gpa(gpa);
  e.write = write;
  return e;
}

inline VmExit hypercall_exit(uint64_t nr, uint64_t a0 = 0, uint64_t a1 = 0, uint64_t a2 = 0) {
  VmExit e;
  e.reason = ExitReason::kHypercall;
  e.nr = nr;
  e.args[0] = a0;
  e.args[1] = a1;
  e.args[2] = a2;
  return e;
}

// A second host process with its own address space (another mm, §3 rule 1).
struct OtherProcess {
  HostMm mm;
  Process proc;
  OtherProcess(Kvm& kvm, PhysMem& mem, FrameAllocator& frames, std::string name)
      : mm(mem, frames, kHostUser, Hva(0x600000000000)), proc(kvm, mm, std::move(name)) {}
};

// Detaches a vCPU's hw TLB/PWC when it goes out of scope: declared after the caches (so it runs
// first), it keeps a later flush (closing the fixture's files) from reaching freed caches.
struct DetachOnExit {
  Vcpu& vcpu;
  ~DetachOnExit() { vcpu.attach(nullptr, nullptr); }
};

struct KvmFixture {
  static constexpr uint64_t kFrames = 8192;  // 32 MiB

  static KvmConfig config_for(AttrStoreKind k, uint64_t attr_max_bytes,
                              bool gmem_huge_folios = false) {
    KvmConfig c;
    c.attr_store = k;
    c.attr_store_max_bytes = attr_max_bytes;
    c.gmem_huge_folios = gmem_huge_folios;
    return c;
  }

  AttrStoreKind kind;
  PhysMem mem{kFrames * kPage, MemMode::kData};
  PageAllocator frames{Pfn(0), kFrames};
  TestBackendKnobs knobs;
  Kvm kvm;
  HostMm mm;
  Process proc;
  int kvm_fd = -1;
  unsigned vms_made = 0;

  // attr_max_bytes: the attribute store's host-memory limit (0 = unlimited; ENOMEM beyond it).
  // gmem_huge_folios: guest_memfd hands out 2 MiB folios (KvmConfig::gmem_huge_folios).
  explicit KvmFixture(AttrStoreKind k, uint64_t attr_max_bytes = 0, bool gmem_huge_folios = false)
      : kind(k),
        kvm(Kvm::Env{mem, frames, Stage2Format::kEpt4},
            config_for(k, attr_max_bytes, gmem_huge_folios)),
        mm(mem, frames),
        proc(kvm, mm, "vmm") {
    kvm.register_backend(KVM_X86_DEFAULT_VM, make_default_backend);
    kvm.register_backend(KVM_X86_SW_PROTECTED_VM, make_sw_protected_backend);
    kvm_fd = kvm.open_dev_kvm(proc);
  }
  // Every transition a test made KVM perform on a GFN must be one the declared machine allows
  // (docs/coverage.md: an undeclared transition is a model/spec mismatch).
  ~KvmFixture() {
    for (const sm::Machine* m : {&gfn_machine(false), &gfn_machine(true)}) {
      const sm::Counts& c = kvm.coverage().of(*m);
      for (const auto& [what, n] : c.undeclared())
        UNSCOPED_INFO(m->name() << ": " << what << " x" << n);
      CHECK(c.undeclared().empty());
    }
  }
  // Makes kTestVmType creatable (it then also appears in KVM_CAP_VM_TYPES).
  void register_test_backend() {
    kvm.register_backend(kTestVmType, [this](const config::Section*) {
      return std::make_unique<SharedBitTestBackend>(knobs);
    });
  }

  // ---- VM, vCPU, guest_memfd ----
  int new_vm(uint32_t type = kSwProt) {
    const unsigned n = vms_made++;
    auto fd = kvm.create_vm(proc, kvm_fd, type, "vm" + std::to_string(n), vm_principal(n),
                            static_cast<uint16_t>(n + 1));
    REQUIRE(fd.ok());
    // Every VM of the fixture uses the attribute store under test.
    REQUIRE(vm(*fd).attributes().kind() == kind);
    return *fd;
  }
  Vm& vm(int fd) {
    Vm* v = kvm.vm_of(proc, fd);
    REQUIRE(v != nullptr);
    return *v;
  }
  int new_vcpu(int vm_fd, uint32_t id = 0) {
    auto fd = kvm.create_vcpu(proc, vm_fd, id);
    REQUIRE(fd.ok());
    return *fd;
  }
  Vcpu& vcpu(int fd) {
    Vcpu* v = kvm.vcpu_of(proc, fd);
    REQUIRE(v != nullptr);
    return *v;
  }
  Result<int> create_gmem(int vm_fd, uint64_t size, uint64_t flags = 0) {
    kvm_create_guest_memfd g;
    g.size = size;
    g.flags = flags;
    return kvm.create_guest_memfd(proc, vm_fd, &g);
  }
  int new_gmem(int vm_fd, uint64_t size, uint64_t flags = 0) {
    auto fd = create_gmem(vm_fd, size, flags);
    REQUIRE(fd.ok());
    return *fd;
  }
  std::shared_ptr<GmemFile> gmem(int fd) {
    auto g = kvm.gmem_of(proc, fd);
    REQUIRE(g != nullptr);
    return g;
  }
  // The frame in the guest_memfd page cache at `pgoff` (REQUIREs one).
  Pfn gmem_pfn(int gmem_fd, uint64_t pgoff) {
    const GmemFolio* f = gmem(gmem_fd)->inode().folio(GmemPgoff(pgoff));
    REQUIRE(f != nullptr);
    return f->pfn;
  }

  // ---- Memory ----
  Hva anon(uint64_t size, PageSize ps = PageSize::k4K) {
    auto h = mm.mmap_anon(size, ps);
    REQUIRE(h.ok());
    return *h;
  }
  Status set_region(int vm_fd, const kvm_userspace_memory_region2& r) {
    return kvm.set_user_memory_region2(proc, vm_fd, &r);
  }
  // A slot backed by fresh anonymous memory (shared side), with a guest_memfd if gmem_fd >= 0.
  Hva add_slot(int vm_fd, uint32_t slot, uint64_t gpa, uint64_t size, int gmem_fd = -1,
               uint64_t offset = 0, PageSize ps = PageSize::k4K, uint32_t extra_flags = 0) {
    const Hva h = anon(size, ps);
    const uint32_t flags = (gmem_fd >= 0 ? KVM_MEM_GUEST_MEMFD : 0) | extra_flags;
    REQUIRE(set_region(vm_fd, region2(slot, gpa, size, h.value(), flags, gmem_fd >= 0 ? gmem_fd : 0,
                                      offset))
                .ok());
    return h;
  }
  Status delete_slot(int vm_fd, uint32_t slot) { return set_region(vm_fd, region2(slot, 0, 0, 0)); }
  Status set_attrs(int vm_fd, uint64_t gpa, uint64_t size, uint64_t a) {
    const kvm_memory_attributes m = attrs(gpa, size, a);
    return kvm.set_memory_attributes(proc, vm_fd, &m);
  }
  Status enable_exit_hypercall(int vm_fd, uint64_t mask) {
    kvm_enable_cap c;
    c.cap = KVM_CAP_EXIT_HYPERCALL;
    c.args[0] = mask;
    return kvm.enable_cap(proc, vm_fd, &c);
  }

  // ---- Inspection ----
  static Stage2Lookup s2(Vm& v, uint64_t gpa) { return v.stage2().lookup(Gpa(gpa)); }
  static bool mapped(Vm& v, uint64_t gpa) { return s2(v, gpa).mapped(); }
  // The 4 KiB frame the stage-2 table maps gpa to (REQUIREs a leaf).
  static Pfn mapped_pfn(Vm& v, uint64_t gpa) {
    const Stage2Lookup l = s2(v, gpa);
    REQUIRE(l.mapped());
    return l.pfn_for(Gpa(gpa));
  }
  static uint64_t leaf_count(Vm& v) {
    uint64_t n = 0;
    v.stage2().for_each_leaf([&](const Stage2Leaf&) { ++n; });
    return n;
  }
  Pfn host_pfn(Hva h) {
    auto p = mm.lookup(h);
    REQUIRE(p.has_value());
    return p->pfn_for(h);
  }
  void scribble(Pfn pfn, uint8_t byte) { mem.fill(pfn_to_hpa(pfn), kPage, byte); }
  // True iff every byte of the frame equals `byte`.
  bool frame_is(Pfn pfn, uint8_t byte) {
    std::vector<uint8_t> buf(kPage);
    mem.read(pfn_to_hpa(pfn), std::span<uint8_t>(buf));
    for (uint8_t b : buf)
      if (b != byte) return false;
    return true;
  }
};

}  // namespace cvmsim::kvmtest
