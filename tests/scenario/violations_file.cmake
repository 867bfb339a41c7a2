# violations.txt (docs/invariants.md "Violation reports"): the HKID-reuse attack under the unsafe
# policy writes every violation, expected ones included, with where it was found, the frames
# and the last run.invariants.trace_events trace events; the mainline run writes no file, and
# its line-state write-backs show in the statistics.
# -DCVMSIM=... -DSCN=scenarios dir -DOUT=dir
execute_process(COMMAND ${CVMSIM} check ${SCN}/attacks/hkid_reuse_unsafe.json --out ${OUT}/unsafe
                        --set run.invariants.trace_events=4
                RESULT_VARIABLE rc OUTPUT_VARIABLE so ERROR_VARIABLE se)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cvmsim check failed (${rc}):\n${so}\n${se}")
endif()
file(READ ${OUT}/unsafe/violations.txt v)
foreach(want
    "violation 1: T6 at step 4 \\(vmm: teardown without CACHE.WB[^\n]*\n  HKID 18 is FREE in the KOT but [0-9]+ cache lines"
    "violation 2: (ISO-8|T6) at step 6 \\(vmm: the next TD gets HKID 18"
    "ISO-8 at step 6 [^\n]*\n  next holds key id 18 while [0-9]+ cache lines tagged with it still hold data of VM #1[^\n]*\n  vm: next\n  frames: 0x"
    "  last 4 trace events:\n    [0-9]+\\.[0-9][0-9][0-9] platform\\.")
  if(NOT v MATCHES "${want}")
    message(FATAL_ERROR "violations.txt does not match \"${want}\":\n${v}")
  endif()
endforeach()
string(REGEX MATCHALL "last 4 trace events" n "${v}")
list(LENGTH n count)
string(REGEX MATCHALL "violation [0-9]+:" all "${v}")
list(LENGTH all total)
if(NOT count EQUAL total)
  message(FATAL_ERROR "every violation should carry 4 trace events (${count} of ${total}):\n${v}")
endif()
execute_process(COMMAND ${CVMSIM} check ${SCN}/attacks/hkid_reuse_mainline.json --out ${OUT}/mainline
                RESULT_VARIABLE rc OUTPUT_VARIABLE so ERROR_VARIABLE se)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cvmsim check (mainline) failed (${rc}):\n${so}\n${se}")
endif()
if(EXISTS ${OUT}/mainline/violations.txt)
  message(FATAL_ERROR "the mainline run found violations")
endif()
file(READ ${OUT}/mainline/stats.json st)
string(JSON wb GET "${st}" stats platform.memory.lines_written_back value)
if(wb LESS 1)
  message(FATAL_ERROR "mainline teardown wrote back no line (lines_written_back = ${wb})")
endif()
