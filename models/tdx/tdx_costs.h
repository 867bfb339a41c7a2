// What the TDX module's work costs, in core cycles. Every SEAMCALL and TDCALL result carries its
// cost, built from these named parameters: a fixed entry/exit plus the work the leaf did (levels
// walked, locks taken, pages zeroed or copied, SHA-384 blocks, ...).
//
// tdx-snp.md PART C has no public cycle figure for any SEAMCALL or TDCALL ("calibrate later"); it
// gives the structure (what work a leaf does) and one rough prior: "SEAMCALL entry+exit ≈ 1–3 k
// cycles plus per-leaf work" [unverified]. Every default below is therefore an estimate, marked
// with its basis in its description (listed by `cvmsim list`, settable as platform.tdx.costs.*,
// documented in docs/costs.md).
#pragma once

#include <cstdint>

#include "hw/base/schema.h"

namespace cvmsim::tdx {

struct TdxCosts {
  uint64_t seamcall = 2000;
  uint64_t tdcall = 2000;
  uint64_t td_entry = 3000;
  uint64_t td_exit = 3000;
  uint64_t sept_level = 40;
  uint64_t pamt_level = 30;
  uint64_t lock = 20;
  uint64_t zero_4k = 1000;
  uint64_t copy_4k = 1500;
  uint64_t sha384_block = 1500;
  uint64_t sept_page_scan = 600;
  uint64_t key_program = 20000;
  uint64_t cache_wb_sub_block = 200000;
  uint64_t wbinvd_page = 3000;
  uint64_t invept = 1000;
  uint64_t ve_injection = 800;

  template <class V>
  void visit(V& v) {
    v(config::uint_field(
          "seamcall_cycles", seamcall,
          "SEAMCALL entry into SEAM root and SEAMRET (tdx-snp.md Part C: \"≈ 1–3 k cycles\" "
          "[unverified]; midpoint).")
          .unit("cycles")
          .max(1'000'000'000));
    v(config::uint_field("tdcall_cycles", tdcall,
                         "TDCALL: VM exit from the TD into the module and VM entry back (estimate: "
                         "like a SEAMCALL).")
          .unit("cycles")
          .max(1'000'000'000));
    v(config::uint_field(
          "td_entry_cycles", td_entry,
          "TDH.VP.ENTER world switch into the TD, on top of `seamcall` (estimate; Part C quotes ≈ "
          "1.35 "
          "k cycles for a bare SVM VMRUN/#VMEXIT, TDX saves and restores more state).")
          .unit("cycles")
          .max(1'000'000'000));
    v(config::uint_field(
          "td_exit_cycles", td_exit,
          "A TD exit to the host VMM (EPT violation, TDVMCALL, interrupt) (estimate, as td_entry).")
          .unit("cycles")
          .max(1'000'000'000));
    v(config::uint_field(
          "sept_level_cycles", sept_level,
          "One Secure-EPT level read by a module walk: keyhole mapping plus a load (estimate).")
          .unit("cycles")
          .max(1'000'000'000));
    v(config::uint_field("pamt_level_cycles", pamt_level,
                         "One PAMT level read by a PAMT walk (estimate).")
          .unit("cycles")
          .max(1'000'000'000));
    v(config::uint_field(
          "lock_cycles", lock,
          "One lock acquire + release (a locked RMW on a likely-cached line) (estimate).")
          .unit("cycles")
          .max(1'000'000'000));
    v(config::uint_field("zero_4k_cycles", zero_4k,
                         "Writing one 4 KiB page with MOVDIR64B (64 full-line direct stores) "
                         "(estimate; Part C: ACCEPT 2 MiB = 512 of these).")
          .unit("cycles")
          .max(1'000'000'000));
    v(config::uint_field("copy_4k_cycles", copy_4k,
                         "Copying one 4 KiB page with MOVDIR64B (TDH.MEM.PAGE.ADD) (estimate).")
          .unit("cycles")
          .max(1'000'000'000));
    v(config::uint_field(
          "sha384_block_cycles", sha384_block,
          "One SHA-384 128-byte compression (tdx-snp.md Part C: PAGE.ADD = 1 block, MR.EXTEND = 3 "
          "per 256 B; cycles estimate at ~12 cycles/byte).")
          .unit("cycles")
          .max(1'000'000'000));
    v(config::uint_field(
          "sept_page_scan_cycles", sept_page_scan,
          "Scanning the 512 entries of an S-EPT page (SEPT.REMOVE, PROMOTE) (estimate).")
          .unit("cycles")
          .max(1'000'000'000));
    v(config::uint_field(
          "key_program_cycles", key_program,
          "PCONFIG programming one TD key on one package (TDH.MNG.KEY.CONFIG) (estimate).")
          .unit("cycles")
          .max(1'000'000'000));
    v(config::uint_field(
          "cache_wb_sub_block_cycles", cache_wb_sub_block,
          "WBNOINVDP of one cached sub-block (TDH.PHYMEM.CACHE.WB) (estimate; Part C: a "
          "full WBINVD is ms-scale, proportional to LLC size).")
          .unit("cycles")
          .max(1'000'000'000));
    v(config::uint_field("wbinvd_page_cycles", wbinvd_page,
                         "Writing back and invalidating the 64 lines of one page "
                         "(TDH.PHYMEM.PAGE.WBINVD) (estimate).")
          .unit("cycles")
          .max(1'000'000'000));
    v(config::uint_field("invept_cycles", invept,
                         "INVEPT on TD entry after the TD epoch moved (A6) (estimate).")
          .unit("cycles")
          .max(1'000'000'000));
    v(config::uint_field("ve_injection_cycles", ve_injection,
                         "The module's EPT-violation handling that injects a #VE instead of "
                         "exiting (A8) (estimate).")
          .unit("cycles")
          .max(1'000'000'000));
  }
};

}  // namespace cvmsim::tdx
