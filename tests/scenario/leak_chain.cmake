# The chain of a leak (docs/invariants.md "Violation reports"): ISO-2 and ISO-6 reports in
# violations.txt carry the provenance log of the frame involved, oldest first, and the key events
# of each attack appear in it in the order they happened.
# -DCVMSIM=... -DSCN=scenarios dir -DOUT=dir
function(chain_of scenario out)
  execute_process(COMMAND ${CVMSIM} run ${SCN}/attacks/${scenario}.json --out ${OUT}/${scenario}
                          --set run.invariants.trace_events=0
                  RESULT_VARIABLE rc OUTPUT_VARIABLE so ERROR_VARIABLE se)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "cvmsim run ${scenario} failed (${rc}):\n${so}\n${se}")
  endif()
  file(READ ${OUT}/${scenario}/violations.txt v)
  set(${out} "${v}" PARENT_SCOPE)
endfunction()

function(expect_chain scenario v)
  # ARGN: regexes that must match in this order, each after the previous match.
  set(rest "${v}")
  foreach(want ${ARGN})
    string(REGEX MATCH "${want}" m "${rest}")
    if(m STREQUAL "")
      message(FATAL_ERROR "${scenario}: \"${want}\" not found (in order) in violations.txt:\n${v}")
    endif()
    string(FIND "${rest}" "${m}" at)
    string(LENGTH "${m}" len)
    math(EXPR from "${at} + ${len}")
    string(SUBSTRING "${rest}" ${from} -1 rest)
  endforeach()
endfunction()

# ISO-2: the guest writes its private page, the host kernel reads it.
chain_of(sw_protected_host_read v)
expect_chain(sw_protected_host_read "${v}"
  "violation 1: ISO-2 at step 3"
  "chain \\([0-9]+ events, oldest first\\):\n"
  "frame 0x1: #[0-9]+: mapped in vm0's stage-2 at gfn 0x3\n"
  "frame 0x1: #[0-9]+ t=[0-9.]+: vm0 wrote it: the frame now holds vm0's data\n"
  "frame 0x1: now: host kernel read its plaintext \\(vm0's private data\\)\n")

# ISO-6: the victim's guest_memfd is rebound to the attacker without a scrub.
chain_of(rebind_gmem_unsafe_no_scrub v)
expect_chain(rebind_gmem_unsafe_no_scrub "${v}"
  "violation 1: ISO-6 at step 8"
  "chain \\([0-9]+ events, oldest first\\):\n"
  "frame 0x2: #[0-9]+: mapped in victim's stage-2 at gfn 0x1\n"
  "frame 0x2: #[0-9]+ t=[0-9.]+: victim wrote it"
  "frame 0x2: #[0-9]+ t=[0-9.]+: its guest_memfd was rebound from victim to evil without scrubbing\n"
  "frame 0x2: #[0-9]+ t=[0-9.]+: mapped in evil's stage-2 at gfn 0x40001\n"
  "frame 0x2: now: evil can reach it at gfn 0x40001 while it holds victim's data\n")

# ISO-6: a punched frame handed to another VM's guest_memfd without zeroing.
chain_of(gmem_handout_unscrubbed_unsafe v)
expect_chain(gmem_handout_unscrubbed_unsafe "${v}"
  "violation 1: ISO-6"
  "victim wrote it"
  "punched out of guest_memfd"
  "guest_memfd handed it to other \\(file index 0x7\\) WITHOUT zeroing"
  "mapped in other's stage-2 at gfn 0x7\n"
  "now: other can reach it")
# The safe policy scrubs at hand-out: the attack's expected violation is missing, no report.
execute_process(COMMAND ${CVMSIM} run ${SCN}/attacks/gmem_handout_unscrubbed_unsafe.json --out ${OUT}/safe
                        --set platform.kvm.gmem_zero_on_handout=true
                RESULT_VARIABLE rc OUTPUT_VARIABLE so ERROR_VARIABLE se)
if(NOT EXISTS ${OUT}/safe/stats.json OR NOT se MATCHES "did not catch a violation of ISO-6")
  message(FATAL_ERROR "the safe run did not run as expected (${rc}):\n${so}\n${se}")
endif()
if(EXISTS ${OUT}/safe/violations.txt)
  file(READ ${OUT}/safe/violations.txt v)
  message(FATAL_ERROR "with zero_on_handout the attack still leaks:\n${v}")
endif()
