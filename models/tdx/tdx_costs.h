// What the TDX module's work costs, in core cycles. Every SEAMCALL and TDCALL result carries its
// cost, built from these named parameters: a fixed entry/exit plus the work the leaf did (levels
// walked, locks taken, pages zeroed or copied, SHA-384 blocks, ...).
//
// tdx-snp.md PART C has no public cycle figure for any SEAMCALL or TDCALL ("calibrate later"); it
// gives the structure (what work a leaf does) and one rough prior: "SEAMCALL entry+exit ≈ 1–3 k
// cycles plus per-leaf work" [unverified]. Every default below is therefore an estimate, marked
// with its basis; docs/tdx-model.md lists them.
#pragma once

#include <cstdint>

namespace cvmsim::tdx {

struct TdxCosts {
  // SEAMCALL entry into SEAM root and SEAMRET (C: "≈ 1–3 k cycles" [unverified]; midpoint).
  uint64_t seamcall = 2000;
  // TDCALL: VM exit from the TD into the module and VM entry back (estimate: like a SEAMCALL).
  uint64_t tdcall = 2000;
  // TDH.VP.ENTER world switch into the TD, on top of `seamcall` (estimate; C quotes ≈ 1.35 k
  // cycles for a bare SVM VMRUN/#VMEXIT, TDX saves and restores more state).
  uint64_t td_entry = 3000;
  // A TD exit to the host VMM (EPT violation, TDVMCALL, interrupt) (estimate, as td_entry).
  uint64_t td_exit = 3000;
  // One Secure-EPT level read by a module walk: keyhole mapping plus a load (estimate).
  uint64_t sept_level = 40;
  // One PAMT level read by a PAMT walk (estimate).
  uint64_t pamt_level = 30;
  // One lock acquire + release (a locked RMW on a likely-cached line) (estimate).
  uint64_t lock = 20;
  // Writing one 4 KiB page with MOVDIR64B (64 full-line direct stores) (estimate; C: ACCEPT 2 MiB
  // = 512 of these).
  uint64_t zero_4k = 1000;
  // Copying one 4 KiB page with MOVDIR64B (TDH.MEM.PAGE.ADD) (estimate).
  uint64_t copy_4k = 1500;
  // One SHA-384 128-byte compression (C: PAGE.ADD = 1 block, MR.EXTEND = 3 per 256 B; cycles
  // estimate at ~12 cycles/byte).
  uint64_t sha384_block = 1500;
  // Scanning the 512 entries of an S-EPT page (SEPT.REMOVE, PROMOTE) (estimate).
  uint64_t sept_page_scan = 600;
  // PCONFIG programming one TD key on one package (TDH.MNG.KEY.CONFIG) (estimate).
  uint64_t key_program = 20000;
  // WBNOINVDP of one cached sub-block (TDH.PHYMEM.CACHE.WB) (estimate; C: a full WBINVD is
  // ms-scale, proportional to LLC size).
  uint64_t cache_wb_sub_block = 200000;
  // Writing back and invalidating the 64 lines of one page (TDH.PHYMEM.PAGE.WBINVD) (estimate).
  uint64_t wbinvd_page = 3000;
  // INVEPT on TD entry after the TD epoch moved (A6) (estimate).
  uint64_t invept = 1000;
  // The module's EPT-violation handling that injects a #VE instead of exiting (A8) (estimate).
  uint64_t ve_injection = 800;
};

}  // namespace cvmsim::tdx
