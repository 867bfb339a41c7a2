# ARCHITECTURE.md principles 1 and 2, checked on the sources:
#  - hw/ includes nothing from models/ or sim/ (layers call downward only);
#  - the functional core (everything but *_module.* and tlm_*.h files, sim/platform and sim/cli;
#    sim/explore runs on it alone)
#    includes no SystemC or TLM header;
#  - no source includes by a relative path ("../"): the build enforces the layering by giving
#    each layer's library only the include roots of its own and lower layers (CMakeLists.txt,
#    "Layers"), and a relative path would get around them.
#   -DSRC=source dir
set(bad "")
file(GLOB_RECURSE hw_files ${SRC}/hw/*.h ${SRC}/hw/*.cpp)
foreach(f ${hw_files})
  file(STRINGS ${f} lines REGEX "^#include \"(models|sim)/")
  if(lines)
    string(APPEND bad "${f}: hw reaches upward: ${lines}\n")
  endif()
endforeach()
file(GLOB_RECURSE core_files ${SRC}/hw/*.h ${SRC}/hw/*.cpp ${SRC}/models/*.h ${SRC}/models/*.cpp
     ${SRC}/sim/config/* ${SRC}/sim/explore/* ${SRC}/sim/invariants/* ${SRC}/sim/scenario/* ${SRC}/sim/stats/* ${SRC}/sim/trace/* ${SRC}/sim/coverage/*)
foreach(f ${core_files})
  get_filename_component(name ${f} NAME)
  if(name MATCHES "_module\\.(h|cpp)$" OR name MATCHES "^tlm_.*\\.h$")
    continue()
  endif()
  file(STRINGS ${f} lines REGEX "^#include [<\"](systemc|tlm|tlm_utils/|hw/.*_module\\.h|hw/.*/tlm_)")
  if(lines)
    string(APPEND bad "${f}: SystemC in the functional core: ${lines}\n")
  endif()
endforeach()
file(GLOB_RECURSE layer_files ${SRC}/hw/* ${SRC}/models/* ${SRC}/sim/*)
foreach(f ${layer_files})
  file(STRINGS ${f} lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"\\.\\./")
  if(lines)
    string(APPEND bad "${f}: includes by a relative path: ${lines}\n")
  endif()
endforeach()
if(bad)
  message(FATAL_ERROR "${bad}")
endif()
