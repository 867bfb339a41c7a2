# Whole-simulation tests of transition coverage (docs/coverage.md); uses cvmsim_run_test and the
# variables of scenario_tests.cmake, which is included first.
# Transition coverage (docs/coverage.md).
cvmsim_run_test("coverage: the regression suite exercises only declared transitions" 0
                ARGS coverage ${SCN} --jobs 2 --quiet
                STDOUT "tdx: +kvm.gfn-private-root [1-9][0-9]*/[0-9]+ +tdx.sept [1-9][0-9]*/[0-9]+ +tdx.td [1-9][0-9]*/[0-9]+.*machine kvm.gfn .*exercised [1-9][0-9]* of [0-9]+ declared.*undeclared transitions: 0\n$")
cvmsim_run_test("coverage: a run prints its coverage line" 0 ARGS run ${SCN}/quickstart.json
                STDOUT "coverage: kvm.gfn [1-9][0-9]*/[0-9]+ transitions; no undeclared")
add_test(NAME "scenario: coverage.json of a TDX run, merged, drawn; undeclared transitions fail"
         COMMAND ${CMAKE_COMMAND} -DCVMSIM=${CVMSIM} -DSCENARIO=${SCN}/tdx/workload_smoke.json -DOUT=${OUTROOT}/coverage
                 -DUNDECLARED=${CMAKE_CURRENT_SOURCE_DIR}/scenario/data/coverage_undeclared.json
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/scenario/coverage.cmake)
cvmsim_run_test("bad input: coverage file with a transition the machine does not declare" 2
                ARGS coverage ${CMAKE_CURRENT_SOURCE_DIR}/scenario/data/coverage_not_declared.json
                STDERR "coverage_not_declared.json: machine tdx.sept declares no transition .*MAPPED")
cvmsim_run_test("bad input: coverage --dot of an unknown machine" 2 ARGS coverage --dot tdx.nope --plain
                STDERR "--dot tdx.nope: no such machine \\(machines: kvm.gfn kvm.gfn-private-root tdx.sept tdx.td tdx.hkid\\)")
cvmsim_run_test("bad input: coverage of a missing path" 2 ARGS coverage ${SCN}/no_such_dir
                STDERR "no_such_dir: no such file or directory")
cvmsim_run_test("list --machines shows the declared machines" 0 ARGS list --machines
                STDOUT "tdx.sept  \\(.*FREE --TDH.MEM.PAGE.AUG/SUCCESS--> PENDING   \\[tdx-snp.md A2.3\\]")
add_test(NAME "docs: machine drawings match the declared machines"
         COMMAND ${CMAKE_COMMAND} -DCVMSIM=${CVMSIM} -DDIR=${PROJECT_SOURCE_DIR}/docs/machines
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/scenario/docs_machines.cmake)
