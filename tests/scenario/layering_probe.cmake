# ARCHITECTURE.md principle 2 (layers call downward only), enforced by the build: each layer's
# library sees only its own include root and those of the layers it links (CMakeLists.txt,
# "Layers"). This compiles one-line probes with the include directories CMake gives each layer's
# library: an upward include must fail for want of the header, and a downward one must compile
# (so that the check could fail). Which headers are found is settled by the preprocessor, so the
# probes stop after it, which keeps the test fast. A probe lives in a folder of its layer, as a source would; its
# own folder holds no header, so a quoted include can only be found on the include path.
#   -DCXX=compiler -DOUT=scratch dir
#   -Dcvmsim_hw=, -Dcvmsim_hw_sc=, -Dcvmsim_models=, -Dcvmsim_sim_core= the include directories
#   of each library, joined with "|"
set(fail "")
set(n 0)

# probe(<library> <folder of the probe> <header> <expect: compiles|missing>)
function(probe lib where header expect)
  math(EXPR i "${n} + 1")
  set(n ${i} PARENT_SCOPE)
  if(NOT ${lib})
    message(FATAL_ERROR "no include directories given for ${lib} (-D${lib}=)")
  endif()
  string(REPLACE "|" ";" dirs "${${lib}}")
  set(flags "")
  foreach(d ${dirs})
    list(APPEND flags -I${d})
  endforeach()
  set(src ${OUT}/${where}/probe${i}.cpp)
  file(WRITE ${src} "#include \"${header}\"\n")
  execute_process(COMMAND ${CXX} -std=c++20 -E -o ${src}.i ${flags} ${src}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(what "${lib}: #include \"${header}\" in ${where}/ (include path: ${dirs})")
  if(expect STREQUAL "compiles" AND NOT rc EQUAL 0)
    set(fail "${fail}${what} should compile but does not:\n${err}\n" PARENT_SCOPE)
  elseif(expect STREQUAL "missing")
    if(rc EQUAL 0)
      set(fail "${fail}${what} compiles: the layer reaches upward\n" PARENT_SCOPE)
    elseif(NOT err MATCHES "${header}: No such file or directory")
      set(fail "${fail}${what} fails, but not for want of the header:\n${err}\n" PARENT_SCOPE)
    endif()
  endif()
endfunction()

probe(cvmsim_hw hw/cpu hw/base/addr.h compiles)
probe(cvmsim_hw hw/cpu models/kvm/vm.h missing)
probe(cvmsim_hw hw/cpu sim/config/loader.h missing)
probe(cvmsim_hw_sc hw/cpu hw/base/addr.h compiles)
probe(cvmsim_hw_sc hw/cpu models/kvm/vm.h missing)
probe(cvmsim_models models/kvm models/kvm/vm.h compiles)
probe(cvmsim_models models/kvm hw/base/addr.h compiles)
probe(cvmsim_models models/kvm sim/config/loader.h missing)
probe(cvmsim_sim_core sim/config sim/config/loader.h compiles)

if(fail)
  message(FATAL_ERROR "${fail}")
endif()
message(STATUS "${n} probes: upward includes do not compile, downward ones do")
