# Runs a command and checks its exit status and output. Used by ctest for whole-simulation tests
# (SystemC elaborates once per process, so each runs the cvmsim binary on its own).
#   -DEXE=program -DARGS="a|b|c"  -DEXPECT_RC=N  [-DEXPECT_STDERR=regex] [-DEXPECT_STDOUT=regex]
#   [-DFORBID_STDERR=regex] [-DWORKDIR=dir]
if(NOT DEFINED WORKDIR)
  set(WORKDIR ".")
endif()
string(REPLACE "|" ";" args "${ARGS}")
set(CMD ${EXE} ${args})
execute_process(COMMAND ${CMD} WORKING_DIRECTORY ${WORKDIR}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(fail "")
if(NOT rc STREQUAL EXPECT_RC)
  string(APPEND fail "exit status ${rc}, expected ${EXPECT_RC}\n")
endif()
if(DEFINED EXPECT_STDERR AND NOT err MATCHES "${EXPECT_STDERR}")
  string(APPEND fail "stderr does not match /${EXPECT_STDERR}/\n")
endif()
if(DEFINED EXPECT_STDOUT AND NOT out MATCHES "${EXPECT_STDOUT}")
  string(APPEND fail "stdout does not match /${EXPECT_STDOUT}/\n")
endif()
if(DEFINED FORBID_STDERR AND err MATCHES "${FORBID_STDERR}")
  string(APPEND fail "stderr matches forbidden /${FORBID_STDERR}/\n")
endif()
if(fail)
  message(FATAL_ERROR "${fail}--- command: ${CMD}\n--- stdout:\n${out}\n--- stderr:\n${err}")
endif()
