# Whole-simulation tests: each runs the cvmsim binary as its own process.
set(CVMSIM $<TARGET_FILE:cvmsim>)
set(SCN ${PROJECT_SOURCE_DIR}/scenarios)
set(EXPECT ${CMAKE_CURRENT_SOURCE_DIR}/scenario/expect_run.cmake)
set(OUTROOT ${CMAKE_CURRENT_BINARY_DIR}/scenario_out)

# cvmsim_run_test(NAME RC ARGS ... [STDOUT re] [STDERR re] [FORBID re] [EXE program] [PREFIX p]):
# runs the program (default: cvmsim) and checks its exit status and output; the ctest entry is
# named "<PREFIX>: NAME" (default prefix: scenario).
function(cvmsim_run_test name rc)
  cmake_parse_arguments(A "" "STDOUT;STDERR;FORBID;EXE;PREFIX" "ARGS" ${ARGN})
  string(JOIN "|" joined ${A_ARGS})
  if(NOT A_EXE)
    set(A_EXE ${CVMSIM})
  endif()
  if(NOT A_PREFIX)
    set(A_PREFIX scenario)
  endif()
  set(defs -DEXE=${A_EXE} "-DARGS=${joined}" -DEXPECT_RC=${rc})
  if(A_STDOUT)
    list(APPEND defs "-DEXPECT_STDOUT=${A_STDOUT}")
  endif()
  if(A_STDERR)
    list(APPEND defs "-DEXPECT_STDERR=${A_STDERR}")
  endif()
  if(A_FORBID)
    list(APPEND defs "-DFORBID_STDERR=${A_FORBID}")
  endif()
  add_test(NAME "${A_PREFIX}: ${name}" COMMAND ${CMAKE_COMMAND} ${defs} -P ${EXPECT})
endfunction()

# The default scenario runs and prints a summary.
cvmsim_run_test("default run prints a summary" 0 ARGS run
                STDOUT "guest accesses +400,000.*stage-2 walks")
cvmsim_run_test("quickstart" 0 ARGS run ${SCN}/quickstart.json STDOUT "scenario \"quickstart\"")
# Data written through every stage-2 format and leaf size reads back intact.
foreach(fmt ept4 ept5 npt4 npt5 arm_s2)
  cvmsim_run_test("data path verified under ${fmt}" 0
                  ARGS run ${SCN}/formats/verify_data_path.json --set platform.mmu.format=${fmt}
                  STDOUT "3 ran to completion" FORBID "did not read back")
endforeach()
cvmsim_run_test("verification detects wrong data" 1 ARGS run ${SCN}/formats/verify_detects_corruption.json
                STDERR "1 load\\(s\\) did not read back the pattern; first: gpa 0x0 read 0x00")
# A trace error the up-front validation would have caught at load (exit 2)...
cvmsim_run_test("trace error is reported at load when validated" 2
                ARGS run ${SCN}/traces/unvalidated_bad_line.json --set workloads.0.trace_validate=true
                STDERR "/workloads/0/trace: .*unvalidated_bad_line.trace:7: unknown operation 'bogus'")
# ...with validation off is found only when replay reaches it: the vCPU stops with the trace's
# error and the run fails (exit 1), rather than passing a partial replay off as complete.
cvmsim_run_test("trace error found mid-run stops the vCPU" 1
                ARGS run ${SCN}/traces/unvalidated_bad_line.json
                STDOUT "1 \\(0 ran to completion\\)"
                STDERR "vm0_cpu0: guest program: .*unvalidated_bad_line.trace:7: unknown operation 'bogus'")
# Metadata-only memory runs the same traffic.
cvmsim_run_test("metadata-only mode" 0 ARGS run ${SCN}/quickstart.json --set platform.memory.mode=metadata
                STDOUT "guest accesses +200,000")
# A fault outside the VM's memory stops the vCPU: expectations not met, status 1.
cvmsim_run_test("access outside guest memory stops the vCPU" 1
                ARGS run ${SCN}/formats/outside_memory.json STDERR "write at gpa 0x1000000 outside every memslot .KVM_EXIT_MMIO")

add_test(NAME "scenario: outputs are written with units and resolved defaults"
         COMMAND ${CMAKE_COMMAND} -DCVMSIM=${CVMSIM} -DSCENARIO=${SCN}/quickstart.json -DOUT=${OUTROOT}/outputs
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/scenario/outputs.cmake)
add_test(NAME "scenario: same seed gives byte-identical stats"
         COMMAND ${CMAKE_COMMAND} -DCVMSIM=${CVMSIM} -DSCENARIO=${SCN}/quickstart.json -DOUT=${OUTROOT}/determinism
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/scenario/determinism.cmake)
# Concurrent actors (vmm waits, vCPUs computing, memslots deleted under them) are deterministic too.
add_test(NAME "scenario: concurrent actors give byte-identical stats"
         COMMAND ${CMAKE_COMMAND} -DCVMSIM=${CVMSIM} -DSCENARIO=${SCN}/kvm/delete_memslot_under_vcpu.json
                 -DOUT=${OUTROOT}/determinism_actors -DSEED_MATTERS=OFF
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/scenario/determinism.cmake)
add_test(NAME "scenario: conversions give byte-identical stats"
         COMMAND ${CMAKE_COMMAND} -DCVMSIM=${CVMSIM} -DSCENARIO=${SCN}/kvm/convert_both_ways.json
                 -DOUT=${OUTROOT}/determinism_convert -DSEED_MATTERS=OFF
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/scenario/determinism.cmake)

# Bad input: one test per class, each asserting the message and exit status 2.
set(B ${SCN}/bad)
cvmsim_run_test("bad input: not JSON" 2 ARGS run ${B}/not_json.json STDERR "not valid JSON: .*line 4, column 4[0-9]")
cvmsim_run_test("bad input: unknown key" 2 ARGS run ${B}/unknown_key.json STDERR "/platform/mmu/tbl: unknown key")
cvmsim_run_test("bad input: wrong type" 2 ARGS run ${B}/wrong_type.json STDERR "/vms/0/vcpus: expected a non-negative integer, got a string")
cvmsim_run_test("bad input: out of range" 2 ARGS run ${B}/out_of_range.json STDERR "/platform/mmu/tlb/ways: value 0 is out of range")
cvmsim_run_test("bad input: misaligned" 2 ARGS run ${B}/misaligned.json STDERR "/vms/0/memory/0/gpa: .*not aligned to the region's page_size 2MiB")
cvmsim_run_test("bad input: overlapping regions" 2 ARGS run ${B}/overlap.json STDERR "/vms/0/memory/1: overlaps /vms/0/memory/0")
cvmsim_run_test("bad input: tdx image outside private memory" 2 ARGS run ${B}/tdx_image_not_private.json STDERR "/vms/0/tdx/initial_image/0: the piece is not inside one private memory region")
cvmsim_run_test("bad input: tdx image on a non-TDX VM" 2 ARGS run ${B}/tdx_image_not_tdx.json STDERR "/vms/0/tdx/initial_image: set, but this is an option of backend \"tdx\": it needs a VM of type \"tdx\" \\(this VM is \"sw_protected\"\\)")
cvmsim_run_test("bad input: tdx image pieces overlap" 2 ARGS run ${B}/tdx_image_overlap.json STDERR "/vms/0/tdx/initial_image/1: overlaps /vms/0/tdx/initial_image/0")
cvmsim_run_test("bad input: tdx image misaligned" 2 ARGS run ${B}/tdx_image_misaligned.json STDERR "/vms/0/tdx/initial_image/0/gpa: .*not aligned")
cvmsim_run_test("bad input: tdx lazy accept with SEPT_VE_DISABLE" 2 ARGS run ${B}/tdx_lazy_with_sept_ve_disable.json STDERR "/vms/0/tdx/accept: accept \"lazy\" accepts on #VE.*set /vms/0/tdx/sept_ve_disable to false")
cvmsim_run_test("bad input: tdx bounce buffer in private memory" 2 ARGS run ${B}/tdx_bounce_not_shared.json STDERR "/vms/0/tdx/bounce_buffer: the bounce buffer is not inside one shared")
cvmsim_run_test("bad input: guest_io without a bounce buffer" 2 ARGS run ${B}/tdx_guest_io_no_bounce.json STDERR "/steps/0: guest_io needs a bounce buffer")
cvmsim_run_test("bad input: TD options on a non-TDX VM" 2 ARGS run ${B}/tdx_options_not_tdx.json STDERR "/vms/0/tdx/huge_private: set, but this is an option of backend \"tdx\": it needs a VM of type \"tdx\"")
cvmsim_run_test("bad input: undeclared reference" 2 ARGS run ${B}/undeclared_vm.json STDERR "/workloads/0/vm: no VM named \"vm1\"")
cvmsim_run_test("bad input: missing trace file" 2 ARGS run ${B}/missing_trace.json STDERR "/workloads/0/trace: no such file")
cvmsim_run_test("bad input: malformed trace" 2 ARGS run ${B}/malformed_trace.json STDERR "malformed.trace:2")
cvmsim_run_test("bad input: missing scenario file" 2 ARGS run ${B}/does_not_exist.json STDERR "no such scenario file")
cvmsim_run_test("bad input: bad --set path" 2 ARGS run --set vms.3.vcpus=2 STDERR "index 3 is out of range")
cvmsim_run_test("bad input: --set value of wrong type" 2 ARGS run --set platform.quantum_cycles=fast STDERR "/platform/quantum_cycles: expected a non-negative integer")
cvmsim_run_test("bad input: unknown flag" 2 ARGS run --bogus STDERR "bogus")
cvmsim_run_test("list shows parameters with defaults" 0 ARGS list STDOUT "platform.costs.vm_exit_round_trip_cycles += 2530")
add_test(NAME "docs: scenario field reference matches the schema"
         COMMAND ${CMAKE_COMMAND} -DCVMSIM=${CVMSIM} -DDOC=${PROJECT_SOURCE_DIR}/docs/scenario-format.md
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/scenario/docs_fields.cmake)
add_test(NAME "docs: invariant catalogue matches cvmsim list"
         COMMAND ${CMAKE_COMMAND} -DCVMSIM=${CVMSIM} -DDOC=${PROJECT_SOURCE_DIR}/docs/invariants.md -DMARK=INVARIANTS
                 "-DARGS=list|--invariants|--markdown" -P ${CMAKE_CURRENT_SOURCE_DIR}/scenario/docs_block.cmake)
# Every statistic the scenarios of scripts/stats-doc.py emit has a row in the generated reference
# of docs/statistics.md, with a unit and a description, and the table is up to date.
find_package(Python3 COMPONENTS Interpreter REQUIRED)
add_test(NAME "docs: statistics reference lists every emitted statistic"
         COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/scripts/stats-doc.py --check ${CVMSIM}
                 ${PROJECT_SOURCE_DIR}/docs/statistics.md
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
add_test(NAME "layering: hw calls downward only, the functional core is free of SystemC"
         COMMAND ${CMAKE_COMMAND} -DSRC=${PROJECT_SOURCE_DIR} -P ${CMAKE_CURRENT_SOURCE_DIR}/scenario/layering.cmake)
# The same principle enforced by the build: each layer's library has only its own include root
# and those of the layers it links, so an upward include does not compile.
set(probe_dirs "")
foreach(lib cvmsim_hw cvmsim_hw_sc cvmsim_models cvmsim_sim_core)
  list(APPEND probe_dirs "-D${lib}=$<JOIN:$<TARGET_PROPERTY:${lib},INCLUDE_DIRECTORIES>,|>")
endforeach()
add_test(NAME "layering: an upward include does not compile"
         COMMAND ${CMAKE_COMMAND} -DCXX=${CMAKE_CXX_COMPILER} -DOUT=${OUTROOT}/layering_probe ${probe_dirs}
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/scenario/layering_probe.cmake)
# The tree is formatted with the .clang-format at the top (scripts/check-format.sh names the
# files that are not); without clang-format the test is skipped, not passed.
add_test(NAME "style: every C++ file is clang-formatted" COMMAND ${PROJECT_SOURCE_DIR}/scripts/check-format.sh)
set_tests_properties("style: every C++ file is clang-formatted" PROPERTIES SKIP_RETURN_CODE 77)

# KVM regression suite: every scenario under scenarios/kvm must pass `cvmsim check`.
file(GLOB KVM_SCENARIOS CONFIGURE_DEPENDS ${SCN}/kvm/*.json)
foreach(s ${KVM_SCENARIOS})
  get_filename_component(n ${s} NAME_WE)
  cvmsim_run_test("kvm check ${n}" 0 ARGS check ${s} STDOUT "expectation\\(s\\) checked, all met")
endforeach()
# TDX regression suite: every scenario under scenarios/tdx must pass `cvmsim check`.
file(GLOB TDX_SCENARIOS CONFIGURE_DEPENDS ${SCN}/tdx/*.json)
foreach(s ${TDX_SCENARIOS})
  get_filename_component(n ${s} NAME_WE)
  cvmsim_run_test("tdx check ${n}" 0 ARGS check ${s} STDOUT "expectation\\(s\\) checked, all met")
endforeach()
# A TD running workloads (first touch = AUG + the guest's ACCEPT) completes, reporting platform.tdx.
cvmsim_run_test("tdx workload run" 0 ARGS run ${SCN}/tdx/workload_smoke.json
                STDOUT "2 \\(2 ran to completion\\)" FORBID "did not read back")
# A TD built from a measured initial image: MRTD depends on the measured contents only, the image
# needs no ACCEPT.
add_test(NAME "scenario: tdx measured build MRTD and no ACCEPT for the image"
         COMMAND ${CMAKE_COMMAND} -DCVMSIM=${CVMSIM} -DSCENARIO=${SCN}/tdx/measured_build.json
                 -DOUT=${OUTROOT}/tdx_build -P ${CMAKE_CURRENT_SOURCE_DIR}/scenario/tdx_build.cmake)
# TDs destroyed by closing their fds are reclaimed completely and their HKID is reused.
# The TDX guest kernel (models/guest/tdx_guest_kernel.h) and 2 MiB private pages, by statistics.
function(tdx_guest_test name scenario checks)
  add_test(NAME "scenario: ${name}"
           COMMAND ${CMAKE_COMMAND} -DCVMSIM=${CVMSIM} -DSCENARIO=${SCN}/tdx/${scenario}.json
                   -DOUT=${OUTROOT}/tdx_guest_${scenario} "-DCHECKS=${checks}"
                   -P ${CMAKE_CURRENT_SOURCE_DIR}/scenario/tdx_guest.cmake)
endfunction()
# Lazy: nothing at boot; every page the workload maps is accepted by the #VE handler.
tdx_guest_test("tdx lazy accept: every mapped page accepted on its #VE" lazy_accept_workload
  "platform.td0.guest.ves_handled>100|platform.td0.guest.ves_handled==platform.tdx.glue.ves_injected|platform.td0.guest.accepts_4k==platform.tdx.glue.private_maps|platform.td0.guest.ves_handled==platform.td0.guest.accepts_4k|platform.td0.guest.boot_bytes_accepted=0|platform.tdx.glue.pending_access_fatal=0|platform.tdx.glue.accept_exits=0")
# Boot with 2 MiB pages: 8 ACCEPT(2M), each exiting once for SEPT.ADD + AUG 2M; the workload
# takes no private fault and no #VE; the boot's cycles (at least the module's 4,225,930) are
# charged to the vCPU as one compute operation before it.
tdx_guest_test("tdx boot accept: 2 MiB accepts, no fault in the workload" boot_accept_workload
  "platform.td0.guest.boot_bytes_accepted=16777216|platform.td0.guest.accepts_2m=8|platform.td0.guest.accepts_4k=0|platform.tdx.glue.private_maps_2m=8|platform.tdx.glue.private_maps=0|platform.tdx.glue.accept_exits=8|platform.tdx.glue.td_exits.ept_violation=8|platform.tdx.glue.ves_injected=0|platform.td0.cpu0.kvm.stage2_faults_handled=0|platform.kvm.guest_memfd.huge_folios_allocated=8|platform.td0.cpu0.computes=1|platform.td0.cpu0.busy_cycles>4225930")
# 2 MiB conversions both ways (REMOVE 2M, AUG 2M again) and a 4 KiB conversion inside a 2 MiB
# leaf (DEMOTE first, then 4 KiB REMOVE; back with a 4 KiB AUG); boot's 2 MiB accepts interrupted
# and resumed.
tdx_guest_test("tdx 2 MiB private pages: convert whole, demote for 4 KiB" huge_private_2m
  "platform.tdx.accept_interrupts>0|platform.tdx.glue.private_maps_2m=9|platform.tdx.glue.private_zaps_2m=1|platform.tdx.glue.demotes=1|platform.tdx.mem_page_demote.calls=1|platform.tdx.glue.private_zaps=1|platform.tdx.glue.private_maps=1|platform.vm0.guest.accepts_2m=9|platform.vm0.guest.accepts_4k=1|platform.vm0.kvm.maps_2m=9")
# The bounce buffer: the host's reads of it are not leaks; the sw_protected leak is (one ISO-2).
tdx_guest_test("tdx bounce buffer: host reads of it are not reported as leaks" bounce_buffer_io
  "invariants.violations_ISO-2=1|invariants.violations=1")
add_test(NAME "scenario: tdx teardown reclaims every page and reuses the HKID"
         COMMAND ${CMAKE_COMMAND} -DCVMSIM=${CVMSIM} -DSCENARIO=${SCN}/tdx/teardown_reuse.json
                 -DOUT=${OUTROOT}/tdx_teardown -P ${CMAKE_CURRENT_SOURCE_DIR}/scenario/tdx_teardown.cmake)
add_test(NAME "scenario: violations.txt lists every violation with where, frames and trace events"
         COMMAND ${CMAKE_COMMAND} -DCVMSIM=${CVMSIM} -DSCN=${SCN} -DOUT=${OUTROOT}/violations_file
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/scenario/violations_file.cmake)
add_test(NAME "scenario: ISO-2 and ISO-6 reports carry the chain of the leak in order"
         COMMAND ${CMAKE_COMMAND} -DCVMSIM=${CVMSIM} -DSCN=${SCN} -DOUT=${OUTROOT}/leak_chain
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/scenario/leak_chain.cmake)
# Two vCPUs race ACCEPT against a page's removal in both orders: BUSY happens and is recovered
# from, reproducibly (docs/tdx-model.md "Concurrency and BUSY").
add_test(NAME "scenario: tdx race ACCEPT against REMOVE gets BUSY and recovers"
         COMMAND ${CMAKE_COMMAND} -DCVMSIM=${CVMSIM} -DSCENARIO=${SCN}/tdx/race_accept_remove.json
                 -DOUT=${OUTROOT}/tdx_race -P ${CMAKE_CURRENT_SOURCE_DIR}/scenario/tdx_race.cmake)
# Attack scenarios: each passes when the checker catches the attack.
file(GLOB ATTACK_SCENARIOS CONFIGURE_DEPENDS ${SCN}/attacks/*.json)
foreach(s ${ATTACK_SCENARIOS})
  get_filename_component(n ${s} NAME_WE)
  cvmsim_run_test("attack caught ${n}" 0 ARGS check ${s} STDOUT "expectation\\(s\\) checked, all met")
endforeach()
# The host kernel cannot clear a TD's private (Secure EPT) leaf: the step refuses a private gpa
# with a clear error instead of writing the shared EPT or claiming nothing is mapped.
cvmsim_run_test("tdx stale tlb: the host cannot write the Secure EPT" 1
                ARGS check ${SCN}/attacks/tdx_hostile_stale_tlb.json --set steps.4.gpa=0x3000
                STDOUT "FAIL step 4 .*gpa 0x3000 of vm0 is private and translated by the tdx VM's private root, which the host cannot write")
# The host kernel's write into TD-private memory: the TD's next read consumes poison (#MC, the TD
# is FATAL), the vCPU's later steps never run, and the TD's other vCPU cannot enter it any more.
set(POISON ${SCN}/attacks/tdx_host_write_poison.json)
cvmsim_run_test("tdx host write poison: the TD takes #MC and is FATAL" 1
                ARGS check ${POISON} --set "steps.8.expect={}"
                STDOUT "FAIL step 8 .*the vCPU stopped: vm0 vCPU 0: machine check at gpa 0x5040 .*the TD is FATAL .TDX_NON_RECOVERABLE_TD.")
cvmsim_run_test("tdx host write poison: later steps of the vCPU do not run" 1
                ARGS check ${POISON} --set steps.9.actor=vm0.cpu0 --set steps.10.actor=vm0.cpu0
                STDOUT "FAIL step 10 .*not run: the vCPU stopped at step 8")
cvmsim_run_test("tdx host write poison: the other vCPU cannot enter the FATAL TD" 1
                ARGS check ${POISON} --set "steps.10.expect={}"
                STDOUT "FAIL step 10 .*TDH.VP.ENTER failed: TDX_TD_FATAL")
# Without the host's write there is no poison: the TD reads its data.
cvmsim_run_test("tdx host read: the TD still reads its data, not zeros" 1
                ARGS check ${SCN}/attacks/tdx_host_read.json --set steps.6.expect.pattern=zero
                STDOUT "FAIL step 6 .*the data read back does not match")
cvmsim_run_test("bad step: hostile_read across a page boundary" 2
                ARGS check ${SCN}/attacks/tdx_host_read.json --set steps.3.gpa=0x5800
                STDERR "/steps/3/size: hostile_read/hostile_write access 1..4096 bytes within one 4 KiB page")
add_test(NAME "docs: attack table matches the attack suite"
         COMMAND ${CMAKE_COMMAND} -DCVMSIM=${CVMSIM} -DSCN=${SCN}/attacks -DDOC=${PROJECT_SOURCE_DIR}/docs/attacks.md
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/scenario/attack_table.cmake)
cvmsim_run_test("unsafe rebinding leaks unnoticed with checking off" 1
                ARGS check ${SCN}/attacks/rebind_gmem_unsafe_no_scrub.json --set run.invariants.mode=off
                STDOUT "the checker did not catch a violation of ISO-6")
# With checking off, an attack goes unnoticed and the expectation says so.
cvmsim_run_test("attack not caught with checking off" 1
                ARGS check ${SCN}/attacks/hostile_stale_tlb.json --set run.invariants.mode=off
                STDOUT "expects ISO-5 but invariant checking is off")
# An unexpected violation stops the run and is reported (the attack without its expectation).
cvmsim_run_test("unexpected violation stops the run" 1
                ARGS run ${SCN}/attacks/hostile_stale_tlb.json --set "steps.3.expect={}"
                STDERR "invariant ISO-5 violated at step 3 \\([^\n]*\\): vm0 vCPU 0 TLB still maps gfn 0x3")
# The tutorial scenarios the docs walk through must keep passing.
file(GLOB TUTORIAL_SCENARIOS CONFIGURE_DEPENDS ${SCN}/tutorial/*.json)
foreach(s ${TUTORIAL_SCENARIOS})
  get_filename_component(n ${s} NAME_WE)
  cvmsim_run_test("tutorial check ${n}" 0 ARGS check ${s} STDOUT "expectation\\(s\\) checked, all met")
endforeach()
# Huge host pages: a 2M leaf replacing a zapped table must not leave the page-walk cache stale.
cvmsim_run_test("kvm check convert_both_ways on 2M host pages" 0
                ARGS check ${SCN}/kvm/convert_both_ways.json --set vms.0.memory.0.page_size=2M
                STDOUT "expectation\\(s\\) checked, all met")
cvmsim_run_test("bad step: unknown attribute name" 2
                ARGS check ${SCN}/kvm/private_access_no_gmem.json --set steps.3.attributes=PRIVAT
                STDERR "/steps/3/attributes: unknown name \"PRIVAT\" for set_memory_attributes")
cvmsim_run_test("bad step: memslot flag used for guest_memfd" 2
                ARGS check ${SCN}/kvm/overlapping_slots.json --set steps.3.flags=GUEST_MEMFD
                STDERR "/steps/3/flags: unknown name \"GUEST_MEMFD\" for create_guest_memfd")
# Negative controls: a wrong expectation makes `cvmsim check` fail, naming the step and what happened.
cvmsim_run_test("check fails on a wrong errno expectation" 1
                ARGS check ${SCN}/kvm/bind_other_vms_gmem.json --set steps.5.expect.errno=OK
                STDOUT "FAIL step 5 .vmm set_user_memory_region2.*returned EINVAL, expected OK")
cvmsim_run_test("check fails on a wrong exit expectation" 1
                ARGS check ${SCN}/kvm/private_access_no_gmem.json --set steps.7.expect.exit_gpa=0x3010
                STDOUT "FAIL step 7 .vm0.cpu0 load.: exit gpa 0x3000, expected 0x3010")
cvmsim_run_test("check fails on wrong data" 1
                ARGS check ${SCN}/kvm/punch_hole_reads_zero.json --set steps.10.expect.pattern=seeded --set steps.10.expect.value=3
                STDOUT "FAIL step 10 .*the data read back does not match")
cvmsim_run_test("check fails when a call fails unexpectedly" 1
                ARGS check ${SCN}/kvm/delete_memslot_under_vcpu.json --set steps.4.expect.errno=OK
                STDOUT "FAIL step 4 .*returned EINVAL, expected OK")
cvmsim_run_test("check fails when an expected exit and stop do not happen" 1
                ARGS check ${SCN}/kvm/private_access_no_gmem.json --set steps.7.gpa=0x1000
                STDOUT "FAIL step 7 .*the vCPU did not stop. no KVM_EXIT_MEMORY_FAULT exit .saw: none")
# An unmet expectation does not corrupt the run: the mapping the step really made is recorded,
# so the run ends cleanly after the guest_memfd is closed (scenarios/negative: must fail, not pass).
cvmsim_run_test("check fails on a wrong gmem_mmap expectation and the run ends cleanly" 1
                ARGS check ${SCN}/negative/gmem_mmap_unmet_expectation.json
                STDOUT "FAIL step 4 .host gmem_mmap .wrong on purpose: the mmap succeeds..: mmap returned OK, expected ENODEV.*gmem_mmap_unmet_expectation.json: 8 expectation\\(s\\) checked, 1 problem\\(s\\)"
                FORBID "internal error")
# Bad steps are bad input (exit 2) naming the step.
cvmsim_run_test("bad step: field not used by the operation" 2
                ARGS check ${SCN}/kvm/punch_hole_reads_zero.json --set steps.0.cap=KVM_CAP_GUEST_MEMFD
                STDERR "/steps/0/cap: field \"cap\" is not used by operation store")
cvmsim_run_test("bad step: operation of another actor" 2
                ARGS check ${SCN}/kvm/punch_hole_reads_zero.json --set steps.0.actor=vmm
                STDERR "/steps/0/op: operation store belongs to a vCPU actor")
cvmsim_run_test("bad step: unknown guest_memfd name" 2
                ARGS check ${SCN}/kvm/punch_hole_reads_zero.json --set steps.4.guest_memfd=nope
                STDERR "/steps/4/guest_memfd: no guest_memfd named \"nope\"")
cvmsim_run_test("bad step: barrier reached by one actor" 2
                ARGS check ${SCN}/kvm/punch_hole_reads_zero.json --set steps.3.actor=vm0.cpu0
                STDERR "barrier \"written\" is used by one actor only")

# The ownership graph (docs/ownership-graph.md).
add_test(NAME "scenario: graph writes the ownership graph after a step"
         COMMAND ${CMAKE_COMMAND} -DCVMSIM=${CVMSIM} -DSCENARIO=${SCN}/kvm/convert_both_ways.json -DSTEP=5
                 -DOUT=${OUTROOT}/graph -P ${CMAKE_CURRENT_SOURCE_DIR}/scenario/graph.cmake)
cvmsim_run_test("graph to stdout at the end of the run" 0 ARGS graph ${SCN}/quickstart.json
                STDOUT "^digraph G {.*at the end of the run")
cvmsim_run_test("graph after a host step" 0 ARGS graph ${SCN}/kvm/convert_both_ways.json --at-step 7
                STDOUT "after step 7 \\(host host_read: host sees the shared page\\).*vmm:vm0")
cvmsim_run_test("bad input: graph --at-step beyond the last step" 2
                ARGS graph ${SCN}/kvm/convert_both_ways.json --at-step 31
                STDERR "--at-step 31: the scenario has 31 steps \\(0-30\\)")
cvmsim_run_test("bad input: graph --out with an unknown extension" 2
                ARGS graph ${SCN}/kvm/convert_both_ways.json --out g.txt
                STDERR "--out g.txt: the file name must end in .dot, .svg or .png")
cvmsim_run_test("bad input: graph without a scenario" 2 ARGS graph STDERR "scenario is required")
# The graph of the hostile double map shows the stolen frame reachable by both VMs.
cvmsim_run_test("graph shows the hostile double map" 0 ARGS graph ${SCN}/attacks/hostile_double_map.json
                STDOUT "digraph G"
                STDERR "violation of GRAPH-1: private frames 0x[0-9a-f]+ .guest_memfd ino [0-9]+, created for victim. are reachable by 2 VM.s.: victim, evil")
# TDX (docs/ownership-graph.md "TDX"): a TD's graph has its S-EPT leaves, the PAMT owners of its
# pages and the TDX module managing its control pages; the TDX double map shows the TD-private
# frame reachable by the TD (guest_memfd and S-EPT leaf) and by the legacy VM's EPT.
cvmsim_run_test("graph of a TD shows S-EPT leaves, PAMT owners and the TDX module" 0
                ARGS graph ${SCN}/tdx/convert_both_ways.json --at-step 1
                STDOUT "TDX module.*vm0 private gfn 0x1.nS-EPT, MAPPED, 4K leaves.*guest_memfd, owner: PT_REG.*owner: PT_EPT.*TDCS page, S-EPT root of vm0")
cvmsim_run_test("graph shows the TDX hostile double map" 0 ARGS graph ${SCN}/attacks/tdx_hostile_double_map.json
                STDOUT "victim private gfn 0x1.nS-EPT, MAPPED.*evil gfn 0x1.nshared.*S-EPT MAPPED"
                STDERR "violation of GRAPH-1: private frames 0x[0-9a-f]+ .guest_memfd ino [0-9]+, created for victim. are reachable by 2 VM.s.: victim, evil")

# Violation reports: where the violation was found and the last run.invariants.trace_events
# trace events (docs/invariants.md "Violation reports"). The mainline HKID-reuse scenario under
# the unsafe policy violates T6 at its teardown step, which it does not expect.
cvmsim_run_test("violation report carries the last N trace events" 1
                ARGS run ${SCN}/attacks/hkid_reuse_mainline.json --set platform.tdx.hkid_reuse=unsafe_no_flush
                     --set run.invariants.trace_events=3
                STDERR "invariant T6 violated at step 4 \\(vmm: mainline teardown[^\n]*\n  last 3 trace events:\n    [0-9.]+ platform.victim.tdx seamcall TDH.PHYMEM.PAGE.RECLAIM")
cvmsim_run_test("violation report without trace events" 1
                ARGS run ${SCN}/attacks/hkid_reuse_mainline.json --set platform.tdx.hkid_reuse=unsafe_no_flush
                     --set run.invariants.trace_events=0
                STDERR "invariant T6 violated at step 4" FORBID "trace events")

# Random exploration (docs/explore.md). Committed reproducers replay; every unsafe policy's must.
file(GLOB EXPLORE_SCENARIOS CONFIGURE_DEPENDS ${SCN}/explore/*.json)
foreach(s ${EXPLORE_SCENARIOS})
  get_filename_component(n ${s} NAME_WE)
  cvmsim_run_test("explore reproducer ${n}" 0 ARGS check ${s} STDOUT "expectation\\(s\\) checked, all met")
endforeach()
foreach(b default sw_protected tdx)
  cvmsim_run_test("explore ${b} under mainline policies finds nothing" 0
                  ARGS explore --backend ${b} --seed 5 --ops 3000 STDOUT "3,000 executed.*violation +none")
endforeach()
# Each unsafe policy on the backend it is explored on (kPolicies' backend column), with a seed.
foreach(pbs gmem_rebind:sw_protected:2 flush_tlb_after_zap:sw_protected:1 gmem_zero_on_handout:sw_protected:1
            hostile:sw_protected:1 hkid_reuse:tdx:1)
  string(REPLACE ":" ";" pbs ${pbs})
  list(GET pbs 0 p)
  list(GET pbs 1 b)
  list(GET pbs 2 seed)
  add_test(NAME "scenario: explore ${p} finds a violation whose reproducer replays"
           COMMAND ${CMAKE_COMMAND} -DCVMSIM=${CVMSIM} -DOUT=${OUTROOT}/explore_${p} -DPOLICY=${p}
                   -DBACKEND=${b} -DSEED=${seed} -P ${CMAKE_CURRENT_SOURCE_DIR}/scenario/explore_replay.cmake)
endforeach()
add_test(NAME "docs: explore policy table matches cvmsim explore --list-policies"
         COMMAND ${CMAKE_COMMAND} -DCVMSIM=${CVMSIM} -DDOC=${PROJECT_SOURCE_DIR}/docs/explore.md -DMARK=POLICIES
                 "-DARGS=explore|--list-policies|--markdown" -P ${CMAKE_CURRENT_SOURCE_DIR}/scenario/docs_block.cmake)
cvmsim_run_test("explore lists its policies" 0 ARGS explore --list-policies
                STDOUT "gmem_rebind +platform.kvm.gmem_rebind +forbid +unsafe_no_scrub.*hostile")
cvmsim_run_test("bad input: explore with an unknown policy" 2 ARGS explore --policy no_such --ops 10
                STDERR "--policy no_such: unknown policy \"no_such\" \\(known: gmem_rebind")
cvmsim_run_test("bad input: explore with a bad policy value" 2 ARGS explore --policy gmem_rebind=sometimes --ops 10
                STDERR "gmem_rebind.*sometimes")
cvmsim_run_test("bad input: explore with an unknown backend" 2 ARGS explore --backend snp --ops 10 STDERR "backend")

# Documentation is self-contained: every relative link in README.md and docs/ resolves inside the
# repository (a user's clone has nothing beside it).
add_test(NAME "docs: every link resolves inside the repository"
         COMMAND python3 ${PROJECT_SOURCE_DIR}/scripts/check-links.py ${PROJECT_SOURCE_DIR})
