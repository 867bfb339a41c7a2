# The test backend's ctest entries (tests/backend/test_backend.cpp).
set(TB_EXE $<TARGET_FILE:cvmsim_testbackend>)
set(TB ${CMAKE_CURRENT_SOURCE_DIR}/backend)
function(testbe_test name rc)
  cvmsim_run_test("${name}" ${rc} EXE ${TB_EXE} PREFIX "test backend" ${ARGN})
endfunction()

testbe_test("cvmsim list shows its VM type, option and invariant" 0 ARGS list
            STDOUT "platform\\.testbe\\.max_private_pages += 1048576.*vms\\[\\]\\.type .*testbe")
testbe_test("list --invariants shows TB-1" 0 ARGS list --invariants STDOUT "TB-1")
testbe_test("its option is validated" 2 ARGS validate ${TB}/testbe_bad_option.json
            STDERR "/platform/testbe/max_private_pages: value 0 is out of range")
testbe_test("run" 0 ARGS run ${TB}/testbe_run.json STDOUT "6 of 6 met")
testbe_test("check" 0 ARGS check ${TB}/testbe_run.json)
testbe_test("check catches TB-1 where the scenario expects it" 0 ARGS check ${TB}/testbe_limit.json)
testbe_test("TB-1 stops a run that does not expect it" 1
            ARGS run ${TB}/testbe_limit.json --set steps.2.expect={}
            STDERR "invariant TB-1 violated.*vm0 has 3 private pages mapped, more than 2")
testbe_test("explore" 0 ARGS explore --backend testbe --ops 3000 --seed 2
            STDOUT "violation +none")
