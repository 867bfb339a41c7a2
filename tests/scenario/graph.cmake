# cvmsim graph: writes the ownership graph of a scenario after a step as DOT (and SVG when
# Graphviz is installed); the file names the VM and its guest_memfd; two runs give the same file.
#   -DCVMSIM=exe -DSCENARIO=file.json -DSTEP=n -DOUT=dir
file(REMOVE_RECURSE ${OUT})
file(MAKE_DIRECTORY ${OUT})
execute_process(COMMAND ${CVMSIM} graph ${SCENARIO} --at-step ${STEP} --out ${OUT}/g.dot
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cvmsim graph exited ${rc}\n${out}\n${err}")
endif()
if(NOT EXISTS ${OUT}/g.dot)
  message(FATAL_ERROR "no ${OUT}/g.dot written\n${err}")
endif()
file(READ ${OUT}/g.dot dot)
foreach(want "^digraph G {" "guest_memfd ino [0-9]+" "label=\"vm0\\\\nsw_protected VM" "after step ${STEP}"
        "vm0 memslot 0" "vm0 gfn 0x[0-9a-f]+" "frames 0x[0-9a-f]+")
  if(NOT dot MATCHES "${want}")
    message(FATAL_ERROR "g.dot does not match /${want}/:\n${dot}")
  endif()
endforeach()
# Deterministic: the same scenario gives the same file.
execute_process(COMMAND ${CVMSIM} graph ${SCENARIO} --at-step ${STEP} --out ${OUT}/again.dot
                RESULT_VARIABLE rc2 ERROR_VARIABLE err2)
file(READ ${OUT}/again.dot dot2)
if(NOT rc2 EQUAL 0 OR NOT dot STREQUAL dot2)
  message(FATAL_ERROR "a second run wrote a different graph (rc ${rc2})\n${err2}")
endif()
# Rendered by Graphviz when it is installed.
find_program(DOT_EXE dot)
if(DOT_EXE)
  execute_process(COMMAND ${CVMSIM} graph ${SCENARIO} --at-step ${STEP} --out ${OUT}/pic.svg
                  RESULT_VARIABLE rc3 ERROR_VARIABLE err3)
  if(NOT rc3 EQUAL 0 OR NOT EXISTS ${OUT}/pic.svg OR NOT EXISTS ${OUT}/pic.dot)
    message(FATAL_ERROR "rendering to SVG failed (rc ${rc3})\n${err3}")
  endif()
  file(READ ${OUT}/pic.svg svg)
  if(NOT svg MATCHES "<svg" OR NOT svg MATCHES "guest_memfd ino")
    message(FATAL_ERROR "pic.svg is not the graph's picture")
  endif()
endif()
