# cvmsim explore under an unsafe policy: exit 1, a reproducer written, `cvmsim check` replays it
# (the violation is seen on the SystemC platform), and a second run writes the same bytes.
#   -DCVMSIM=exe -DOUT=dir -DPOLICY=name -DBACKEND=b -DSEED=n
file(REMOVE_RECURSE ${OUT})
file(MAKE_DIRECTORY ${OUT})
foreach(i 1 2)
  execute_process(COMMAND ${CVMSIM} explore --backend ${BACKEND} --policy ${POLICY} --seed ${SEED} --ops 20000
                          --out ${OUT}/r${i}.json
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 1)
    message(FATAL_ERROR "explore exit status ${rc}, expected 1 (violation found)\n${out}\n${err}")
  endif()
  if(NOT out MATCHES "violation +[A-Z]+-?[0-9]+ at operation [0-9]+.*shrunk +[0-9]+ -> [0-9]+ operations.*replayed")
    message(FATAL_ERROR "explore output lacks the violation, shrink or replay lines:\n${out}")
  endif()
endforeach()
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${OUT}/r1.json ${OUT}/r2.json RESULT_VARIABLE same)
if(NOT same EQUAL 0)
  message(FATAL_ERROR "two runs with seed ${SEED} wrote different reproducers")
endif()
execute_process(COMMAND ${CVMSIM} check ${OUT}/r1.json RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "all met")
  message(FATAL_ERROR "cvmsim check of the reproducer: status ${rc}\n${out}\n${err}")
endif()
# The reproducer depends on the policy: with the mainline values (the policy fields of
# platform.kvm and platform.tdx removed) its violation expectation fails.
file(READ ${OUT}/r1.json text)
set(mainline "")
foreach(section kvm tdx)
  string(JSON obj ERROR_VARIABLE missing GET "${text}" platform ${section})
  if(NOT missing)
    list(APPEND mainline --set platform.${section}={})
  endif()
endforeach()
if(mainline)
  execute_process(COMMAND ${CVMSIM} check ${OUT}/r1.json ${mainline}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 1 OR NOT out MATCHES "FAIL step")
    message(FATAL_ERROR "the reproducer passes without its policy: status ${rc}\n${out}\n${err}")
  endif()
endif()
