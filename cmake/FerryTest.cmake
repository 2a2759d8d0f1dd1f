# ferry_test_objects(NAME SOURCES a.cc LIBS x y)
# Test sources that two test binaries run (once on file://, once on radosgw): compiled
# once into an object library, given to both as SOURCES $<TARGET_OBJECTS:NAME>.
function(ferry_test_objects name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS" ${ARGN})
  add_library(${name} OBJECT ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ferry_test_main ${T_LIBS})
endfunction()

# ferry_test(NAME SOURCES a.cc b.cc LIBS x y LABELS unit|integration|slow [FIXTURES f] [TIMEOUT s])
# One way to declare a test: a gtest binary linked with the shared test main, registered
# with CTest under its labels. Exit code 77 (GTEST_SKIP from the shared main when every
# test skipped) is reported by CTest as skipped, never passed.
function(ferry_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS;FIXTURES" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ferry_test_main ${T_LIBS})
  add_test(NAME ${name} COMMAND ${name})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT}
                       SKIP_RETURN_CODE 77
                       ENVIRONMENT "FERRY_PLUGIN=$<TARGET_FILE:nbdkit-ferry-plugin>;FERRY_BUILD_DIR=${CMAKE_BINARY_DIR}")
  if(T_FIXTURES)
    set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED "${T_FIXTURES}")
  endif()
endfunction()
