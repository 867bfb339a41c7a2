// KVM_PRE_FAULT_MEMORY (kvm-guest-memfd.md §9): the generic checks in order, one check per rule
// asserting the errno; the in/out struct reporting partial progress; the mainline selftest's
// 2 MiB + 4 KiB cases for each VM type, shared and private; the x86 arch part (pre_fault_allowed,
// fault type = the gfn's current type, errors of the fault path). Every test runs against both
// attribute stores.
#include <catch2/catch.hpp>

#include "kvm_test_util.h"

using namespace cvmsim;
using namespace cvmsim::kvmtest;

namespace {

struct PfFx {
  KvmFixture fx;
  int vm_fd, vcpu_fd;
  explicit PfFx(uint32_t type = kSwProt) : fx(any_store()) {
    vm_fd = fx.new_vm(type);
    vcpu_fd = fx.new_vcpu(vm_fd);
  }
  Vm& vm() { return fx.vm(vm_fd); }
  Status prefault(kvm_pre_fault_memory& r) { return fx.kvm.pre_fault_memory(fx.proc, vcpu_fd, &r); }
};

kvm_pre_fault_memory pf(uint64_t gpa, uint64_t size, uint64_t flags = 0) {
  kvm_pre_fault_memory r;
  r.gpa = gpa;
  r.size = size;
  r.flags = flags;
  return r;
}

// The selftest's loop: re-issue while size > 0, asserting on each call that (size decreased)
// XOR (ret < 0). Returns 0 or the final errno; `left` is the final size.
int prefault_loop(PfFx& t, uint64_t gpa, uint64_t size, uint64_t& left) {
  kvm_pre_fault_memory r = pf(gpa, size);
  Status st;
  do {
    const uint64_t prev = r.size;
    st = t.prefault(r);
    CHECK((r.size < prev) != !st.ok());
  } while (st.ok() && r.size > 0);
  left = r.size;
  return st.ok() ? 0 : static_cast<int>(st.error().errno_value());
}

}  // namespace

// ---- Generic checks, in order
// ---------------------------------------------------------------------

TEST_CASE("PRE_FAULT_MEMORY rule: a failed copy -> EFAULT", "[kvm][prefault]") {
  PfFx t;
  CHECK(err(t.fx.kvm.pre_fault_memory(t.fx.proc, t.vcpu_fd, nullptr)) == Errno::kEFAULT);
}

TEST_CASE("PRE_FAULT_MEMORY rule: flags != 0 -> EINVAL", "[kvm][prefault]") {
  PfFx t;
  t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage);
  auto r = pf(0x100000, kPage, 1);
  CHECK(err(t.prefault(r)) == Errno::kEINVAL);
  CHECK(r.size == kPage);
  CHECK(KvmFixture::leaf_count(t.vm()) == 0);
}

TEST_CASE("PRE_FAULT_MEMORY rule: gpa or size unaligned -> EINVAL", "[kvm][prefault]") {
  PfFx t;
  t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage);
  auto r = pf(0x100800, kPage);
  CHECK(err(t.prefault(r)) == Errno::kEINVAL);
  r = pf(0x100000, kPage + 1);
  CHECK(err(t.prefault(r)) == Errno::kEINVAL);
  CHECK(KvmFixture::leaf_count(t.vm()) == 0);
}

TEST_CASE("PRE_FAULT_MEMORY rule: gpa + size <= gpa (size 0, wrap) -> EINVAL", "[kvm][prefault]") {
  PfFx t;
  auto r = pf(0x100000, 0);
  CHECK(err(t.prefault(r)) == Errno::kEINVAL);
  r = pf(~uint64_t{0} & ~(kPage - 1), 2 * kPage);
  CHECK(err(t.prefault(r)) == Errno::kEINVAL);
}

TEST_CASE("PRE_FAULT_MEMORY: not allowed yet (pre_fault_allowed false) -> EOPNOTSUPP",
          "[kvm][prefault]") {
  PfFx t;
  t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage);
  CHECK(t.vm().pre_fault_allowed);   // true at creation for DEFAULT and SW_PROTECTED
  t.vm().pre_fault_allowed = false;  // as a CoCo VM before finalisation
  auto r = pf(0x100000, kPage);
  CHECK(err(t.prefault(r)) == Errno::kEOPNOTSUPP);
  CHECK(r.gpa == 0x100000);
  CHECK(r.size == kPage);
  CHECK(KvmFixture::leaf_count(t.vm()) == 0);
}

// ---- Progress reported in place
// ---------------------------------------------------------------------

TEST_CASE("PRE_FAULT_MEMORY: outside every memslot -> ENOENT, nothing consumed",
          "[kvm][prefault]") {
  PfFx t;
  t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage);
  auto r = pf(0x200000, 2 * kPage);
  CHECK(err(t.prefault(r)) == Errno::kENOENT);
  CHECK(r.gpa == 0x200000);
  CHECK(r.size == 2 * kPage);
}

TEST_CASE("PRE_FAULT_MEMORY: partial progress returns 0 with the leftover gpa and size",
          "[kvm][prefault]") {
  PfFx t;
  t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage);
  auto r = pf(0x10e000, 4 * kPage);  // two pages in the slot, two beyond its end
  REQUIRE(t.prefault(r).ok());
  CHECK(r.gpa == 0x110000);
  CHECK(r.size == 2 * kPage);
  CHECK(KvmFixture::mapped(t.vm(), 0x10e000));
  CHECK(KvmFixture::mapped(t.vm(), 0x10f000));
  // Re-issued, it makes no progress: the last error.
  CHECK(err(t.prefault(r)) == Errno::kENOENT);
  CHECK(r.gpa == 0x110000);
  CHECK(r.size == 2 * kPage);
}

// ---- The mainline selftest (pre_fault_memory_test.c)
// ----------------------------------------------------

TEST_CASE("PRE_FAULT_MEMORY selftest: TEST_SIZE = 2M + 4K, each VM type, shared and private",
          "[kvm][prefault]") {
  struct Variant {
    uint32_t type;
    bool is_private;
  };
  for (Variant var : {Variant{kDefault, false}, Variant{kSwProt, false}, Variant{kSwProt, true}}) {
    CAPTURE(var.type, var.is_private);
    PfFx t(var.type);
    constexpr uint64_t kTestSize = k2M + kPage;
    constexpr uint64_t gpa = 0x10000000;
    int gmem = -1;
    if (var.is_private) gmem = t.fx.new_gmem(t.vm_fd, kTestSize);
    t.fx.add_slot(t.vm_fd, 10, gpa, kTestSize, gmem);
    if (var.is_private)
      REQUIRE(t.fx.set_attrs(t.vm_fd, gpa, kTestSize, kPriv).ok());  // vm_mem_set_private
    uint64_t left = 0;
    CHECK(prefault_loop(t, gpa, k2M, left) == 0);
    CHECK(left == 0);
    CHECK(prefault_loop(t, gpa + k2M, 2 * kPage, left) == static_cast<int>(Errno::kENOENT));
    CHECK(left == kPage);
    CHECK(prefault_loop(t, gpa + kTestSize, kPage, left) == static_cast<int>(Errno::kENOENT));
    CHECK(left == kPage);
    // Every page of the slot is now mapped, from the right backing.
    uint64_t unmapped = 0, wrong = 0;
    for (uint64_t off = 0; off < kTestSize; off += kPage) {
      const Stage2Lookup l = KvmFixture::s2(t.vm(), gpa + off);
      if (!l.mapped()) {
        ++unmapped;
        continue;
      }
      if (var.is_private && l.pfn_for(Gpa(gpa + off)) != t.fx.gmem_pfn(gmem, off / kPage)) ++wrong;
    }
    CHECK(unmapped == 0);
    CHECK(wrong == 0);
    CHECK_FALSE(KvmFixture::mapped(t.vm(), gpa + kTestSize));
  }
}

// ---- Arch part: fault type and errors
// ------------------------------------------------------------------

TEST_CASE("PRE_FAULT_MEMORY: maps private gfns from guest_memfd after set-private on sw_protected",
          "[kvm][prefault]") {
  PfFx t;
  const int g = t.fx.new_gmem(t.vm_fd, 16 * kPage);
  const Hva h = t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage, g);
  REQUIRE(t.fx.set_attrs(t.vm_fd, 0x104000, 4 * kPage, kPriv).ok());
  auto r = pf(0x103000, 6 * kPage);
  REQUIRE(t.prefault(r).ok());
  CHECK(r.size == 0);
  CHECK(r.gpa == 0x109000);
  CHECK(KvmFixture::mapped_pfn(t.vm(), 0x103000) == t.fx.host_pfn(h + 0x3000));  // shared
  for (uint64_t p = 4; p < 8; ++p)
    CHECK(KvmFixture::mapped_pfn(t.vm(), 0x100000 + p * kPage) == t.fx.gmem_pfn(g, p));
  CHECK(KvmFixture::mapped_pfn(t.vm(), 0x108000) == t.fx.host_pfn(h + 0x8000));  // shared
  CHECK(t.fx.gmem(g)->inode().nr_folios() == 4);
}

TEST_CASE("PRE_FAULT_MEMORY: private gfns without a usable guest_memfd -> EFAULT or EHWPOISON",
          "[kvm][prefault]") {
  PfFx t;
  const int g = t.fx.new_gmem(t.vm_fd, 16 * kPage);
  t.fx.add_slot(t.vm_fd, 0, 0x100000, 16 * kPage, g);
  t.fx.add_slot(t.vm_fd, 1, 0x200000, 16 * kPage);  // no guest_memfd
  REQUIRE(t.fx.set_attrs(t.vm_fd, 0x100000, 16 * kPage, kPriv).ok());
  REQUIRE(t.fx.set_attrs(t.vm_fd, 0x200000, 16 * kPage, kPriv).ok());
  auto r = pf(0x200000, kPage);
  CHECK(err(t.prefault(r)) == Errno::kEFAULT);  // private access to a slot without guest_memfd
  r = pf(0x102000, kPage);
  REQUIRE(t.prefault(r).ok());
  REQUIRE(t.fx.gmem(g)->memory_failure(GmemPgoff(2)).ok());
  r = pf(0x102000, kPage);
  CHECK(err(t.prefault(r)) == Errno::kEHWPOISON);
  REQUIRE(t.fx.proc.close(g).ok());
  r = pf(0x103000, kPage);
  CHECK(err(t.prefault(r)) == Errno::kEFAULT);  // dead slot
  CHECK(r.size == kPage);
}

TEST_CASE("PRE_FAULT_MEMORY: a huge mapping counts to the end of the huge page, clipped to size",
          "[kvm][prefault][huge]") {
  PfFx t(kDefault);
  t.fx.add_slot(t.vm_fd, 0, 0x200000, 2 * k2M, -1, 0, PageSize::k2M);
  auto r = pf(0x201000, 2 * kPage);
  REQUIRE(t.prefault(r).ok());
  CHECK(r.size == 0);
  CHECK(r.gpa == 0x203000);
  CHECK(KvmFixture::s2(t.vm(), 0x201000).size() == PageSize::k2M);
  r = pf(0x3ff000, 2 * kPage);  // the last page of the first 2M page, then the next one
  REQUIRE(t.prefault(r).ok());
  CHECK(r.size == 0);
  CHECK(KvmFixture::s2(t.vm(), 0x400000).size() == PageSize::k2M);
  CHECK(KvmFixture::leaf_count(t.vm()) == 2);
  CHECK(t.fx.vcpu(t.vcpu_fd).stats().prefault_bytes == 4 * kPage);
}

TEST_CASE(
    "PRE_FAULT_MEMORY maps every byte it reports, also over 4K leaves left in an unmixed 2M page",
    "[kvm][prefault][huge][lpage]") {
  PfFx t;
  const int g = t.fx.new_gmem(t.vm_fd, k2M);
  t.fx.add_slot(t.vm_fd, 0, 0x200000, k2M, g, 0, PageSize::k2M);
  // Mix the 2M page, map one shared gfn at 4K, then unmix it (the 4K leaf stays).
  REQUIRE(t.fx.set_attrs(t.vm_fd, 0x201000, kPage, kPriv).ok());
  PageFault f;
  f.gfn = gpa_to_gfn(Gpa(0x204000));
  REQUIRE(t.vm().page_fault(f).level == PageSize::k4K);
  REQUIRE(t.fx.set_attrs(t.vm_fd, 0x201000, kPage, 0).ok());
  REQUIRE(KvmFixture::mapped(t.vm(), 0x204000));
  // Prefault from the mapped gfn: whatever it reports as done must be mapped.
  auto r = pf(0x204000, 8 * kPage);
  REQUIRE(t.prefault(r).ok());
  uint64_t unmapped = 0;
  for (uint64_t a = 0x204000; a < r.gpa; a += kPage)
    if (!KvmFixture::mapped(t.vm(), a)) ++unmapped;
  CHECK(unmapped == 0);
  CHECK(r.gpa + r.size == 0x20c000);
}

TEST_CASE("PRE_FAULT_MEMORY is a read fault: a READONLY slot is mapped, without W",
          "[kvm][prefault]") {
  PfFx t(kDefault);
  t.fx.add_slot(t.vm_fd, 0, 0x100000, 4 * kPage, -1, 0, PageSize::k4K, KVM_MEM_READONLY);
  auto r = pf(0x100000, 4 * kPage);
  REQUIRE(t.prefault(r).ok());
  CHECK(r.size == 0);
  const Stage2Lookup l = KvmFixture::s2(t.vm(), 0x103000);
  REQUIRE(l.mapped());
  CHECK_FALSE(l.pte.perms.write());
}
