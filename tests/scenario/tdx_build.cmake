# TD build and teardown checks over whole runs (scenarios/tdx/measured_build.json):
#  - the measured image reads back with no ACCEPT for its pages (stats: pages_added, guest_accepts);
#  - the MRTD printed in the summary depends on the image contents: identical contents give the
#    same MRTD, different contents a different one.
# -DCVMSIM=... -DSCENARIO=... -DOUT=dir
function(run_td out_dir mrtd_var)
  execute_process(COMMAND ${CVMSIM} run ${SCENARIO} --out ${out_dir} ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE so ERROR_VARIABLE se)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "cvmsim run ${ARGN} failed (${rc}):\n${so}\n${se}")
  endif()
  if(NOT so MATCHES "TD td0 MRTD +([0-9a-f]+)")
    message(FATAL_ERROR "no MRTD in the summary:\n${so}")
  endif()
  string(LENGTH "${CMAKE_MATCH_1}" n)
  if(NOT n EQUAL 96)
    message(FATAL_ERROR "MRTD '${CMAKE_MATCH_1}' is not 48 bytes of hex")
  endif()
  set(${mrtd_var} ${CMAKE_MATCH_1} PARENT_SCOPE)
endfunction()

function(stat out_dir name var)
  file(READ ${out_dir}/stats.json st)
  string(JSON v GET "${st}" stats "${name}" value)
  set(${var} ${v} PARENT_SCOPE)
endfunction()

function(expect_stat out_dir name want)
  stat(${out_dir} ${name} v)
  if(NOT v EQUAL want)
    message(FATAL_ERROR "${name} = ${v}, expected ${want}")
  endif()
endfunction()

run_td(${OUT}/a mrtd_a)
run_td(${OUT}/b mrtd_b)
run_td(${OUT}/c mrtd_c --set vms.0.tdx.initial_image.0.value=43 --set steps.0.expect.value=43 --set steps.1.expect.value=43)
run_td(${OUT}/d mrtd_d --set vms.0.tdx.initial_image.1.value=171 --set steps.2.expect.value=171)
if(NOT mrtd_a STREQUAL mrtd_b)
  message(FATAL_ERROR "identical images, different MRTDs: ${mrtd_a} / ${mrtd_b}")
endif()
if(mrtd_a STREQUAL mrtd_c)
  message(FATAL_ERROR "a different measured image gave the same MRTD ${mrtd_a}")
endif()
# The second piece is not measured (no MR.EXTEND): PAGE.ADD extends the MRTD with its GPA only,
# so its contents do not change the MRTD.
if(NOT mrtd_a STREQUAL mrtd_d)
  message(FATAL_ERROR "an unmeasured piece changed the MRTD: ${mrtd_a} / ${mrtd_d}")
endif()
# 16 KiB + 4 KiB added, 4 pages measured (16 MR.EXTEND each); one successful ACCEPT only, for
# the page outside the image (accept "lazy": on its #VE the guest kernel tries 2 MiB, gets
# PAGE_SIZE_MISMATCH from the 4 KiB leaf, and accepts 4 KiB).
expect_stat(${OUT}/a platform.tdx.glue.pages_added 5)
expect_stat(${OUT}/a platform.tdx.glue.mr_extends 64)
expect_stat(${OUT}/a platform.td0.guest.accepts_4k 1)
expect_stat(${OUT}/a platform.td0.guest.accepts_2m 0)
expect_stat(${OUT}/a platform.td0.guest.ves_handled 1)
expect_stat(${OUT}/a platform.tdx.glue.private_maps 1)
