// Fixtures for the TDX module tests: 256 MiB of data-mode memory, one TDMR over all of it, a bump
// allocator for host pages handed to the module, and helpers that build a TD the way KVM does
// (tdx-snp.md A10).
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "hw/memory/phys_mem.h"
#include "models/tdx/tdx_machines.h"
#include "models/tdx/tdx_module_core.h"

namespace cvmsim::tdx::test {

inline constexpr uint64_t kMemBytes = 256ull << 20;
inline constexpr uint64_t k2M = 2ull << 20;
inline constexpr Principal kTdOwner = vm_principal(0);
inline constexpr Principal kTdOwner2 = vm_principal(1);

inline TdxConfig default_config() {
  TdxConfig c;
  c.tdmrs.push_back(Tdmr{Hpa(0), kMemBytes, {}});
  return c;
}

// Status with its name, for readable failures.
inline std::string st(uint64_t s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llx ", static_cast<unsigned long long>(s));
  return buf + std::string(status_name(s));
}
#define REQUIRE_OK(r) REQUIRE(::cvmsim::tdx::test::st((r).status) == ::cvmsim::tdx::test::st(0))
#define CHECK_STATUS(r, s) CHECK(::cvmsim::tdx::test::st((r).status) == ::cvmsim::tdx::test::st(s))

struct Td {
  Hpa tdr;
  KeyId hkid = 0;
  std::vector<Hpa> tdcx;
  std::vector<Hpa> vcpus;
};

class Env {
 public:
  explicit Env(TdxConfig cfg = default_config()) : mem(kMemBytes, MemMode::kData), m(mem, cfg) {}
  // Whatever a test made the module do, every transition it performed must be one the declared
  // machines allow (docs/coverage.md: an undeclared transition is a model/spec mismatch).
  ~Env() {
    for (const sm::Machine* mach : {&sept_machine(), &td_machine(), &kot_machine()}) {
      const sm::Counts& c = m.coverage().of(*mach);
      for (const auto& [what, n] : c.undeclared())
        UNSCOPED_INFO(mach->name() << ": " << what << " x" << n);
      CHECK(c.undeclared().empty());
    }
  }

  // A fresh 4 KiB host page (frames from 1 MiB up; 2 MiB pages come from 128 MiB up).
  Hpa page() {
    const Hpa h = pfn_to_hpa(next4k_);
    ++next4k_;
    return h;
  }
  Hpa page_2m() {
    const Hpa h = pfn_to_hpa(next2m_);
    next2m_ = next2m_ + 512;
    return h;
  }

  // MNG.CREATE, KEY.CONFIG (all packages), ADDCX x num_tdcs_pages, MNG.INIT, then per vCPU
  // VP.CREATE, VP.ADDCX x (num_tdvps_pages-1), VP.INIT; MR.FINALIZE if `finalize`.
  Td build_td(KeyId hkid, unsigned vcpus = 1, bool finalize = true, TdParams params = {},
              Principal owner = kTdOwner) {
    Td td;
    td.hkid = hkid;
    td.tdr = page();
    REQUIRE_OK(m.mng_create(td.tdr, hkid, owner));
    for (unsigned p = 0; p < m.config().num_packages; ++p) REQUIRE_OK(m.mng_key_config(td.tdr, p));
    for (unsigned i = 0; i < m.config().num_tdcs_pages; ++i) {
      td.tdcx.push_back(page());
      REQUIRE_OK(m.mng_addcx(td.tdr, td.tdcx.back()));
    }
    params.max_vcpus = std::max(params.max_vcpus, vcpus);
    REQUIRE_OK(m.mng_init(td.tdr, params));
    for (unsigned v = 0; v < vcpus; ++v) {
      const Hpa tdvpr = page();
      REQUIRE_OK(m.vp_create(td.tdr, tdvpr));
      for (unsigned i = 1; i < m.config().num_tdvps_pages; ++i)
        REQUIRE_OK(m.vp_addcx(tdvpr, page()));
      REQUIRE_OK(m.vp_init(tdvpr));
      td.vcpus.push_back(tdvpr);
    }
    if (finalize) REQUIRE_OK(m.mr_finalize(td.tdr));
    return td;
  }

  // SEPT.ADD for every missing S-EPT level above `level` on gpa's path (A10.2).
  void ensure_sept(const Td& td, Gpa gpa, unsigned level = 0) {
    const unsigned top = m.td_info(td.tdr)->sept_levels - 1;
    for (unsigned l = top; l > level; --l) {
      const SeptLookup e = m.sept_entry(td.tdr, gpa, l);
      REQUIRE(e.found);
      if (e.entry.level == l && e.entry.state == SeptState::kFree) {
        const uint64_t span = uint64_t{1} << (12 + 9 * l);
        REQUIRE_OK(m.mem_sept_add(td.tdr, Gpa(gpa.value() & ~(span - 1)), l, page()));
      }
    }
  }

  // Runtime fault-in (A10.2): S-EPT levels, AUG (PENDING), VP.ENTER, ACCEPT (MAPPED).
  Hpa fault_in(const Td& td, Gpa gpa, unsigned vcpu = 0) {
    ensure_sept(td, gpa);
    const Hpa p = page();
    REQUIRE_OK(m.mem_page_aug(td.tdr, gpa, PageSize::k4K, p));
    enter(td, vcpu);
    const TdxResult a = m.tdg_mem_page_accept(td.vcpus[vcpu], gpa, PageSize::k4K);
    REQUIRE_OK(a);
    return p;
  }

  void enter(const Td& td, unsigned vcpu = 0) {
    if (!m.vcpu_info(td.vcpus[vcpu])->in_td) REQUIRE_OK(m.vp_enter(td.vcpus[vcpu], vcpu));
  }
  void leave(const Td& td, unsigned vcpu = 0) {
    if (m.vcpu_info(td.vcpus[vcpu])->in_td) {
      const TdxResult r = m.td_exit(td.vcpus[vcpu]);
      REQUIRE(r.outcome == GuestOutcome::kTdExit);
    }
  }

  SeptState state(const Td& td, Gpa gpa, unsigned level = 0) {
    const SeptLookup l = m.sept_entry(td.tdr, gpa, level);
    REQUIRE(l.found);
    return l.entry.level == level ? l.entry.state : SeptState::kInvalid;
  }

  PhysMem mem;
  TdxModule m;

 private:
  Pfn next4k_{0x100};
  Pfn next2m_{(128ull << 20) >> 12};
};

}  // namespace cvmsim::tdx::test
