# ps_add_module(NAME name [DEPS ...] [PRIVATE_DEPS ...])
# One static library per folder: sources are <dir>/src/*.cpp (private headers beside them),
# public headers in <dir>/include/pathsentry/<module path>/. Exposed as pathsentry::<name>.
# DEPS are PUBLIC (a public header includes them), PRIVATE_DEPS everything else.
function(ps_add_module)
  cmake_parse_arguments(M "" "NAME" "DEPS;PRIVATE_DEPS" ${ARGN})
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/*.cpp)
  add_library(pathsentry_${M_NAME} STATIC ${srcs})
  add_library(pathsentry::${M_NAME} ALIAS pathsentry_${M_NAME})
  target_include_directories(pathsentry_${M_NAME} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
                             PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(pathsentry_${M_NAME} PUBLIC ${M_DEPS}
                        PRIVATE pathsentry::warnings ${M_PRIVATE_DEPS})
endfunction()

# ps_add_app(NAME exe SOURCE file [OUTPUT_DIRECTORY dir] DEPS ...): an executable that holds
# only main(). OUTPUT_DIRECTORY (relative to the build tree) places the binary where scripts and
# tests look for it, whatever folder its source lives in.
function(ps_add_app)
  cmake_parse_arguments(A "" "NAME;SOURCE;OUTPUT_DIRECTORY" "DEPS" ${ARGN})
  add_executable(${A_NAME} ${A_SOURCE})
  target_link_libraries(${A_NAME} PRIVATE pathsentry::warnings ${A_DEPS})
  if(A_OUTPUT_DIRECTORY)
    set_target_properties(${A_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                          ${PROJECT_BINARY_DIR}/${A_OUTPUT_DIRECTORY})
  endif()
endfunction()

# ps_add_catch_tests(TARGET exe [PREFIX p]): registers each TEST_CASE as a CTest test labelled
# by its tag (Catch2 2.13 cannot turn tags into labels). Every TEST_CASE must carry one of
# [unit] [integration] [privileged] [e2e]; cmake/PsDiscoverTests.cmake enforces it.
function(ps_add_catch_tests)
  cmake_parse_arguments(T "" "TARGET;PREFIX" "" ${ARGN})
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${T_TARGET}_tests.cmake)
  add_custom_command(TARGET ${T_TARGET} POST_BUILD BYPRODUCTS ${out}
    COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:${T_TARGET}> -DPREFIX=${T_PREFIX}
            -DOUT=${out} -P ${PROJECT_SOURCE_DIR}/cmake/PsDiscoverTests.cmake
    VERBATIM)
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${out})
  # A change to the discovery script relinks (and so re-lists) the executable.
  set_property(TARGET ${T_TARGET} APPEND PROPERTY LINK_DEPENDS
               ${PROJECT_SOURCE_DIR}/cmake/PsDiscoverTests.cmake)
endfunction()
