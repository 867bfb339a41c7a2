# TD teardown in a whole run (scenarios/tdx/teardown_reuse.json): two TDs created by create_vm
# steps and destroyed by closing their fds are reclaimed completely (every page they held: TDR +
# TDCS), both HKIDs are freed, the second gets the first's HKID again (the highest HKID ever
# used stays 18, td0 holding 17), and only td0's pages are left in the PAMT.
# -DCVMSIM=... -DSCENARIO=... -DOUT=dir
execute_process(COMMAND ${CVMSIM} run ${SCENARIO} --out ${OUT} -q RESULT_VARIABLE rc OUTPUT_VARIABLE so ERROR_VARIABLE se)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cvmsim run failed (${rc}):\n${so}\n${se}")
endif()
file(READ ${OUT}/stats.json st)
function(stat name var)
  string(JSON v GET "${st}" stats "${name}" value)
  set(${var} ${v} PARENT_SCOPE)
endfunction()
function(expect name want)
  stat(${name} v)
  if(NOT v EQUAL want)
    message(FATAL_ERROR "${name} = ${v}, expected ${want}")
  endif()
endfunction()
expect(platform.tdx.glue.tds_reclaimed 2)
expect(platform.tdx.glue.hkids_freed 2)
expect(platform.tdx.glue.hkids_in_use 1)
expect(platform.tdx.glue.hkid_highest 18)
expect(platform.tdx.tds_live 1)
# Pages the two torn-down TDs were given (TDR + TDCS each; no vCPU, no S-EPT) all came back:
# every MNG.CREATE/ADDCX minus td0's share (its TDR and TDCS are still live).
stat(platform.tdx.mng_create.calls creates)
stat(platform.tdx.mng_addcx.calls addcx)
math(EXPR td0 "1 + ${addcx} / ${creates}")
math(EXPR added "${creates} + ${addcx} - ${td0}")
expect(platform.tdx.glue.pages_reclaimed ${added})
expect(platform.tdx.pamt.pages.PT_TDR 1)
