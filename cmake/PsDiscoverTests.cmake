cmake_policy(SET CMP0057 NEW)
# Run at build time (cmake -P) after a Catch2 executable links: lists its test cases per label tag
# and writes a CTest include file registering each one with that label. A test case with no
# label tag fails the build, so no test silently escapes the test command.
# Each unit and integration test case also carries the label "case". For the sanitizer stage one
# more test per executable, "<prefix>whole" (label "whole"), runs all its unit and integration
# cases in one process: ASan's start-up (~0.4 s per process) cost more than the tests themselves.
# Inputs: EXE, PREFIX, OUT.
set(labels unit integration privileged e2e)
set(content "")
set(labelled "")
set(whole FALSE)
foreach(label ${labels})
  set(extra "")
  if(label STREQUAL "unit" OR label STREQUAL "integration")
    set(extra ";case")
  endif()
  execute_process(COMMAND ${EXE} "[${label}]" --list-test-names-only
                  OUTPUT_VARIABLE out RESULT_VARIABLE rc)
  string(REPLACE "\n" ";" names "${out}")
  foreach(name ${names})
    string(STRIP "${name}" name)
    if(name STREQUAL "")
      continue()
    endif()
    list(APPEND labelled "${name}")
    if(NOT extra STREQUAL "")
      set(whole TRUE)
    endif()
    string(REPLACE "\\" "\\\\" esc "${name}")
    string(REPLACE "\"" "\\\"" esc "${esc}")
    # Catch2 takes "\," for a literal comma in a test spec; CMake needs that backslash doubled.
  string(REPLACE "," "\\\\," spec "${esc}")
    string(APPEND content
      "add_test(\"${PREFIX}${label}:${esc}\" \"${EXE}\" \"${spec}\")\n"
      "set_tests_properties(\"${PREFIX}${label}:${esc}\" PROPERTIES LABELS \"${label}${extra}\" TIMEOUT 300)\n")
  endforeach()
endforeach()
execute_process(COMMAND ${EXE} --list-test-names-only OUTPUT_VARIABLE all)
string(REPLACE "\n" ";" all "${all}")
foreach(name ${all})
  string(STRIP "${name}" name)
  if(NOT name STREQUAL "" AND NOT name IN_LIST labelled)
    message(FATAL_ERROR "${EXE}: test case '${name}' has none of the tags [${labels}]")
  endif()
endforeach()
if(whole)
  string(APPEND content
    "add_test(\"${PREFIX}whole\" \"${EXE}\" \"[unit],[integration]\")\n"
    "set_tests_properties(\"${PREFIX}whole\" PROPERTIES LABELS whole TIMEOUT 900)\n")
endif()
file(WRITE "${OUT}" "${content}")
