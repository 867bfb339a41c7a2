# Two vCPUs racing TDG.MEM.PAGE.ACCEPT against a page's removal (scenarios/tdx/race_accept_remove.json,
# docs/tdx-model.md "Concurrency and BUSY"). `cvmsim check` already fails on unmet expectations
# (the data each vCPU reads back); this checks that the race really happened and was recovered
# from, in both orders, and that it is reproducible:
#   - race 1 (host first): the guest's ACCEPT got TDX_OPERAND_BUSY and was retried;
#   - race 2 (guest first): a host BLOCK got TDX_OPERAND_BUSY and set TDHP, KVM kicked (waiting
#     for the TDCALL in flight) and its one retry succeeded;
#   - every BUSY was recovered: both pages were removed and re-added, no SEAMCALL error other
#     than the BUSYs, no unexpected invariant violation (the run passes);
#   - the same scenario and seed give byte-identical stats.json (host section aside) and trace.txt.
# -DCVMSIM=... -DSCENARIO=... -DOUT=dir
foreach(run a b)
  execute_process(COMMAND ${CVMSIM} check ${SCENARIO} --out ${OUT}/${run}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE so ERROR_VARIABLE se)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "cvmsim check (${run}) failed (${rc}):\n${so}\n${se}")
  endif()
endforeach()
file(READ ${OUT}/a/stats.json st)
function(stat name var)
  string(JSON v ERROR_VARIABLE err GET "${st}" stats "${name}" value)
  if(err)
    message(FATAL_ERROR "no statistic ${name}: ${err}")
  endif()
  set(${var} ${v} PARENT_SCOPE)
endfunction()
function(expect_cmp name op want)
  stat(${name} v)
  if(NOT v ${op} want)
    message(FATAL_ERROR "${name} = ${v}, expected ${op} ${want}")
  endif()
endfunction()
function(expect_at_least name want)
  stat(${name} v)
  if(v LESS want)
    message(FATAL_ERROR "${name} = ${v}, expected at least ${want}")
  endif()
endfunction()

# Race 1: the guest's ACCEPT met a host call holding the entry, and retried.
expect_at_least(platform.tdx.tdg_mem_page_accept.busy 1)
stat(platform.tdx.tdg_mem_page_accept.busy accept_busy)
expect_cmp(platform.tdx.glue.guest_accept_busy EQUAL ${accept_busy})
# Race 2: the host's BLOCK met the guest's ACCEPT: BUSY, TDHP set, one kick-and-retry each, and
# each kick waited for the ACCEPT in flight.
expect_at_least(platform.tdx.mem_range_block.busy 1)
stat(platform.tdx.mem_range_block.busy block_busy)
expect_cmp(platform.tdx.host_priority_sets EQUAL ${block_busy})
expect_cmp(platform.tdx.glue.busy_retries EQUAL ${block_busy})
expect_at_least(platform.tdx.glue.kick_waits 1)
math(EXPR busys_expected "${accept_busy} + ${block_busy}")
# Recovered: the BUSYs are the only module errors the glue saw, and every retry succeeded (a
# BLOCK retry failing would be one more error).
# By status: the module's two BUSYs are plain TDX_OPERAND_BUSY (an entry lock), none of them a
# host-priority or epoch BUSY.
expect_cmp(platform.tdx.status.TDX_OPERAND_BUSY EQUAL ${busys_expected})
expect_cmp(platform.tdx.status.TDX_OPERAND_BUSY_HOST_PRIORITY EQUAL 0)
stat(platform.tdx.glue.seamcall_errors errors)
math(EXPR busys "${accept_busy} + ${block_busy}")
if(NOT errors EQUAL busys)
  message(FATAL_ERROR "glue.seamcall_errors = ${errors}, expected only the ${busys} BUSYs")
endif()
stat(platform.tdx.mem_page_remove.errors remove_errors)
expect_cmp(platform.tdx.mem_page_remove.errors EQUAL 0)
# Both pages were removed once and re-added (2 pre-faults + 2 re-faults = 4 AUGs).
expect_cmp(platform.tdx.glue.private_zaps EQUAL 2)
expect_cmp(platform.tdx.mem_page_aug.calls EQUAL 4)
# The guest's ACCEPT after the host won found the page gone and waited for the zap (mmu_lock).
expect_at_least(platform.tdx.glue.fault_waits 1)

# The trace shows both BUSYs on the contended pages, and the successful ACCEPTs after them.
file(READ ${OUT}/a/trace.txt tr)
foreach(re "TDG\\.MEM\\.PAGE\\.ACCEPT gpa=0x10000 level=0 -> TDX_OPERAND_BUSY"
           "TDH\\.MEM\\.RANGE\\.BLOCK gpa=0x20000 level=0 -> TDX_OPERAND_BUSY"
           "TDG\\.MEM\\.PAGE\\.ACCEPT gpa=0x10000 level=0 -> TDX_SUCCESS"
           "TDG\\.MEM\\.PAGE\\.ACCEPT gpa=0x20000 level=0 -> TDX_SUCCESS")
  if(NOT tr MATCHES "${re}")
    message(FATAL_ERROR "trace.txt has no line matching ${re}")
  endif()
endforeach()
# Race 1's BUSY ACCEPT comes before the successful one on the same page.
string(REGEX MATCH "TDG\\.MEM\\.PAGE\\.ACCEPT gpa=0x10000 level=0 -> TDX_OPERAND_BUSY" m "${tr}")
string(FIND "${tr}" "${m}" busy_at)
string(FIND "${tr}" "TDG.MEM.PAGE.ACCEPT gpa=0x10000 level=0 -> TDX_SUCCESS" ok_at)
if(NOT busy_at LESS ok_at)
  message(FATAL_ERROR "race 1: the successful ACCEPT is not after the BUSY one")
endif()

# Temporal decoupling does not hide the overlap: with a quantum 50 times the default (a vCPU may
# run 1,000,000 cycles ahead) the same BUSYs happen and are recovered from (the in-flight calls
# synchronise the vCPU first).
execute_process(COMMAND ${CVMSIM} check ${SCENARIO} --out ${OUT}/q --set platform.quantum_cycles=1000000
                RESULT_VARIABLE rc OUTPUT_VARIABLE so ERROR_VARIABLE se)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cvmsim check with a large quantum failed (${rc}):\n${so}\n${se}")
endif()
file(READ ${OUT}/q/stats.json st_q)
foreach(name platform.tdx.tdg_mem_page_accept.busy platform.tdx.mem_range_block.busy
             platform.tdx.glue.kick_waits platform.tdx.glue.busy_retries)
  stat(${name} v)
  string(JSON vq GET "${st_q}" stats "${name}" value)
  if(NOT v EQUAL vq)
    message(FATAL_ERROR "${name}: ${v} with the default quantum, ${vq} with a 1,000,000-cycle quantum")
  endif()
endforeach()

# Determinism: a second run gives the same text.
file(READ ${OUT}/b/stats.json st_b)
file(READ ${OUT}/b/trace.txt tr_b)
string(REGEX REPLACE "\"host\": {[^}]*(}[^}]*)*}" "" st_a "${st}")
string(REGEX REPLACE "\"host\": {[^}]*(}[^}]*)*}" "" st_b "${st_b}")
if(NOT st_a STREQUAL st_b)
  message(FATAL_ERROR "same scenario and seed gave different stats.json")
endif()
if(NOT tr STREQUAL tr_b)
  message(FATAL_ERROR "same scenario and seed gave different trace.txt")
endif()
