// TDX invariants T1, T3-T6 and the generic ISO-8 (key hygiene) on a TD built through KVM's uAPI:
// each holds on the correct state and fails on a hand-made broken one (structures written
// behind the module's back, as a buggy or hostile kernel, or a module erratum, would).
#include <catch2/catch.hpp>

#include "hw/mmu/pwc.h"
#include "lazy_td.h"
#include "models/guest/tdx_guest_kernel.h"
#include "models/tdx/kvm_tdx.h"
#include "sim/invariants/invariants.h"

namespace cvmsim::kvmtest {
namespace {

using tdx::KvmTdxBackend;
using tdx::TdxHost;

constexpr uint32_t kTdx = KVM_X86_TDX_VM;

struct Td : LazyTd {
  using LazyTd::LazyTd;
  // The TDX invariants as the platform registers them (with this host), run as a full check.
  std::vector<Violation> tdx_check(bool full = true) {
    std::vector<Violation> out;
    CheckScope scope{f.kvm, f.mem, full, nullptr, nullptr, nullptr};
    for (const auto& d : be().invariants()) d.check(scope, out);
    return out;
  }
  std::vector<Violation> generic_check() {
    invariants::Checker c(f.kvm, f.mem, invariants::CheckMode::kFull,
                          invariants::generic_invariants());
    return c.check();
  }
};

bool has(const std::vector<Violation>& v, const std::string& id) {
  for (const auto& x : v)
    if (x.invariant == id) return true;
  return false;
}

std::string ids(const std::vector<Violation>& v) {
  std::string s;
  for (const auto& x : v) s += x.invariant + ": " + x.message + "\n";
  return s;
}

TEST_CASE("T1-T6 and ISO-8 hold on a built, running TD", "[tdx_kvm][invariants]") {
  Td t;
  t.fault_in(0x1000);
  t.fault_in(0x2000);
  REQUIRE(t.m().vcpu_info(*t.be().tdvpr_of(0))->in_td);
  // A TLB entry the S-EPT backs (what the hardware walk would fill).
  t.tlb.fill(t.vm().asid(), Gpa(0x1000), t.pfn_of(0x1000), PageSize::k4K, kPermsRWX);
  const auto v = t.tdx_check();
  INFO(ids(v));
  CHECK(v.empty());
  const auto g = t.generic_check();
  INFO(ids(g));
  CHECK_FALSE(has(g, "ISO-8"));
  // Incremental T1/T5 (PAMT journal) agree.
  CHECK(t.tdx_check(false).empty());
  t.fault_in(0x3000);
  CHECK(t.tdx_check(false).empty());
}

TEST_CASE(
    "T1 catches a PAMT entry owned by no TD, a second leaf for a frame, and a CHLDCNT mismatch",
    "[tdx_kvm][invariants]") {
  Td t;
  t.fault_in(0x1000);
  REQUIRE(t.tdx_check().empty());
  auto& pamt = const_cast<tdx::Pamt&>(t.m().pamt());
  SECTION("owner is not a TDR") {
    auto stray = t.f.frames.alloc(PageSize::k4K);
    REQUIRE(stray.ok());
    pamt.assign(*stray, PageSize::k4K, tdx::PageType::kReg, Pfn(0x7777));
    const auto v = t.tdx_check(false);  // the journal brings the change to an incremental check
    CHECK(has(v, "T1"));
    CHECK(has(t.tdx_check(), "T1"));
  }
  SECTION("a 2M entry over an assigned 4K entry") {
    const Pfn p = t.pfn_of(0x1000);
    pamt.assign(p.align_down(PageSize::k2M), PageSize::k2M, tdx::PageType::kReg,
                hpa_to_pfn(t.be().tdr()));
    CHECK(has(t.tdx_check(), "T1"));
  }
  SECTION("a page dropped from the PAMT behind the module's back") {
    pamt.make_nda(t.pfn_of(0x1000), PageSize::k4K);
    const auto v = t.tdx_check();
    CHECK(has(v, "T1"));  // CHLDCNT no longer matches
  }
}

TEST_CASE("T3 catches a vCPU in the TD translating through a removed or changed leaf",
          "[tdx_kvm][invariants]") {
  Td t;
  t.fault_in(0x1000);
  REQUIRE(t.m().vcpu_info(*t.be().tdvpr_of(0))->in_td);
  SECTION("no leaf at all (removed without BLOCK + TRACK)") {
    t.tlb.fill(t.vm().asid(), Gpa(0x5000), t.pfn_of(0x1000), PageSize::k4K, kPermsRWX);
    const auto v = t.tdx_check();
    CHECK(has(v, "T3"));
    CHECK_FALSE(has(v, "T4"));
  }
  SECTION("the leaf maps another frame") {
    auto other = t.f.frames.alloc(PageSize::k4K);
    REQUIRE(other.ok());
    t.tlb.fill(t.vm().asid(), Gpa(0x1000), *other, PageSize::k4K, kPermsRWX);
    CHECK(has(t.tdx_check(), "T3"));
  }
  SECTION("a vCPU outside the TD may hold stale entries: it flushes at entry") {
    t.tlb.fill(t.vm().asid(), Gpa(0x5000), t.pfn_of(0x1000), PageSize::k4K, kPermsRWX);
    REQUIRE(t.m().td_exit(*t.be().tdvpr_of(0)).ok());
    CHECK_FALSE(has(t.tdx_check(), "T3"));
  }
}

TEST_CASE(
    "T4 catches a translation through a PENDING leaf and a PENDING page holding the TD's data",
    "[tdx_kvm][invariants]") {
  Td t;
  t.fault_in(0x1000);
  REQUIRE(t.fault(0x2000).kind == ExitAction::kRetry);  // AUG only: PENDING
  REQUIRE(t.m().sept_lookup(t.be().tdr(), Gpa(0x2000)).entry.state == SeptState::kPending);
  t.fault_in(0x3000);  // leaves the vCPU inside the TD
  REQUIRE(t.m().vcpu_info(*t.be().tdvpr_of(0))->in_td);
  CHECK(t.tdx_check().empty());
  SECTION("TLB entry through the PENDING leaf") {
    t.tlb.fill(t.vm().asid(), Gpa(0x2000), t.pfn_of(0x2000), PageSize::k4K, kPermsRWX);
    const auto v = t.tdx_check();
    CHECK(has(v, "T4"));
    CHECK_FALSE(has(v, "T3"));
  }
  SECTION("the TD's data in the PENDING page (written without ACCEPT)") {
    const uint8_t data[64] = {1, 2, 3};
    (void)t.f.mem.write_keyed(pfn_to_hpa(t.pfn_of(0x2000)), data,
                              KeyedAccess{t.be().hkid(), t.vm().principal(), false});
    CHECK(has(t.tdx_check(), "T4"));
  }
}

TEST_CASE("T5 catches TD-owned lines in a host frame and under a foreign HKID",
          "[tdx_kvm][invariants]") {
  Td t;
  t.fault_in(0x1000);
  CHECK(t.tdx_check().empty());
  const uint8_t data[64] = {9};
  SECTION("a host page (PT_NDA) not cleared after it left a TD") {
    auto stray = t.f.frames.alloc(PageSize::k4K);
    REQUIRE(stray.ok());
    (void)t.f.mem.write_keyed(pfn_to_hpa(*stray), data,
                              KeyedAccess{t.be().hkid(), t.vm().principal(), false});
    CHECK(has(t.tdx_check(), "T5"));
    // Cleared with MOVDIR64B under key 0, as the host does: holds again.
    (void)t.f.mem.fill_keyed(pfn_to_hpa(*stray), kPage, 0, KeyedAccess{0, kNobody, true});
    CHECK_FALSE(has(t.tdx_check(), "T5"));
  }
  SECTION("a TD page whose lines carry another HKID") {
    (void)t.f.mem.write_keyed(pfn_to_hpa(t.pfn_of(0x1000)), data,
                              KeyedAccess{40, t.vm().principal(), true});
    CHECK(has(t.tdx_check(), "T5"));
  }
}

TEST_CASE("T6 catches cached lines of a FREE HKID and a KOT that disagrees with the TDs",
          "[tdx_kvm][invariants]") {
  Td t;
  t.fault_in(0x1000);
  CHECK_FALSE(has(t.tdx_check(), "T6"));
  const uint8_t data[64] = {7};
  // A line written under HKID 30, which no TD holds (KOT FREE), still in the cache.
  auto stray = t.f.frames.alloc(PageSize::k4K);
  REQUIRE(stray.ok());
  (void)t.f.mem.write_keyed(pfn_to_hpa(*stray), data, KeyedAccess{30, t.vm().principal(), true});
  REQUIRE(t.f.mem.line_state(*stray).cached != 0);
  CHECK(has(t.tdx_check(), "T6"));
  // Written back (WBINVD of that key): holds.
  CHECK(t.f.mem.writeback_key(30) == 1);
  CHECK_FALSE(has(t.tdx_check(), "T6"));
}

// A TD whose frames hold its data (a stray frame it wrote under its HKID stands for a page it
// had), torn down, then a second TD that gets the same HKID.
void teardown_and_reuse(Td& t, Pfn* victim_frame) {
  t.fault_in(0x1000);
  auto stray = t.f.frames.alloc(PageSize::k4K);
  REQUIRE(stray.ok());
  *victim_frame = *stray;
  const uint8_t secret[64] = {0x5e, 0xc7};
  (void)t.f.mem.write_keyed(pfn_to_hpa(*stray), secret,
                            KeyedAccess{t.be().hkid(), t.vm().principal(), true});
  // The host takes the page back and clears it with MOVDIR64B under key 0 (another cache tag:
  // the line written under the HKID is still cached until a write-back).
  (void)t.f.mem.fill_keyed(pfn_to_hpa(*stray), kPage, 0, KeyedAccess{0, kNobody, true});
  const KeyId hkid = t.be().hkid();
  t.detach.reset();
  t.vcpu().attach(nullptr, nullptr);
  REQUIRE(t.f.proc.close(t.vcpu_fd).ok());
  REQUIRE(t.f.proc.close(t.gmem_fd).ok());
  REQUIRE(t.f.proc.close(t.vm_fd).ok());  // last reference: teardown
  REQUIRE(t.host->hkids_in_use() == 0);
  t.vm_fd = t.f.new_vm(kTdx);
  REQUIRE(tdx::tdx_backend_of(t.f.vm(t.vm_fd))->hkid() == hkid);
}

TEST_CASE("HKID reuse: mainline teardown writes the lines back; unsafe_no_flush trips T6 and ISO-8",
          "[tdx_kvm][invariants]") {
  SECTION("flush (mainline)") {
    Td t(tdx::HkidReuse::kFlush);
    Pfn victim;
    teardown_and_reuse(t, &victim);
    CHECK(t.f.mem.line_state(victim).cached == 0);
    const auto g = t.generic_check();
    INFO(ids(g));
    CHECK_FALSE(has(g, "ISO-8"));
    CHECK_FALSE(has(t.tdx_check(), "T6"));
  }
  SECTION("unsafe_no_flush") {
    Td t(tdx::HkidReuse::kUnsafeNoFlush);
    Pfn victim;
    teardown_and_reuse(t, &victim);
    const LineState ls = t.f.mem.line_state(victim);
    CHECK(ls.cached != 0);
    CHECK(ls.cached_key == t.be().hkid());
    CHECK(ls.cached_owner != t.vm().principal());  // the previous TD's lines
    const auto g = t.generic_check();
    CHECK(has(g, "ISO-8"));
    CHECK(has(t.tdx_check(), "T6"));
  }
}

}  // namespace
}  // namespace cvmsim::kvmtest

namespace cvmsim::kvmtest {
namespace {

TEST_CASE(
    "incremental T2 reads the S-EPT walk of each changed GFN only, and still catches a bad leaf "
    "there",
    "[tdx_kvm][invariants]") {
  Td t;
  t.fault_in(0x1000);
  invariants::Checker c(t.f.kvm, t.f.mem, invariants::CheckMode::kIncremental, t.be().invariants());
  CHECK(c.check().empty());
  t.fault_in(0x2000);  // AUG marks gfn 2 changed
  // Corrupt the new leaf and, behind everyone's back, the old one (gfn 1: not changed).
  auto corrupt = [&](uint64_t gpa) {
    const tdx::SeptLookup l = t.m().sept_entry(t.be().tdr(), Gpa(gpa), 0);
    REQUIRE(l.found);
    auto stray = t.f.frames.alloc(PageSize::k4K);
    REQUIRE(stray.ok());
    const uint64_t raw = t.f.mem.read_u64(l.entry_hpa);
    t.f.mem.write_u64(l.entry_hpa, (raw & ~0x000FFFFFFFFFF000ull) | (stray->value() << kPageShift));
    return *stray;
  };
  const Pfn bad2 = corrupt(0x2000);
  const Pfn bad1 = corrupt(0x1000);
  const auto v = c.check();
  std::vector<Pfn> t2;
  for (const auto& x : v)
    if (x.invariant == "T2") t2.push_back(x.frames.at(0));
  CHECK(t2 == std::vector<Pfn>{bad2});  // the changed GFN's leaf, not the untouched one
  // A full check reads every entry.
  invariants::Checker full(t.f.kvm, t.f.mem, invariants::CheckMode::kFull, t.be().invariants());
  size_t n = 0;
  for (const auto& x : full.check())
    n += x.invariant == "T2" && (x.frames.at(0) == bad1 || x.frames.at(0) == bad2);
  CHECK(n == 2);
}

}  // namespace
}  // namespace cvmsim::kvmtest
