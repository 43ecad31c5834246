# Script for the package.* tests (see CMakeLists.txt here). Run with cmake -P and:
#   MODE                 install (install FD_BUILD_DIR into WORK_DIR/prefix and find it there)
#                        or build_tree (find FD_BUILD_DIR's exported config directly)
#   FD_SOURCE_DIR        FasterDiffusion source tree (to check the install does not point into it)
#   FD_BUILD_DIR         configured FasterDiffusion build tree
#   CONSUMER_SOURCE_DIR  the consumer project
#   WORK_DIR             scratch directory, wiped first
#   CONFIG               build configuration (Release, Debug, ...)
#   GENERATOR, MAKE_PROGRAM, CXX_COMPILER   used for the consumer, to match the main build
cmake_minimum_required(VERSION 3.25)

foreach(var IN ITEMS MODE FD_SOURCE_DIR FD_BUILD_DIR CONSUMER_SOURCE_DIR WORK_DIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_package_test.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT CONFIG)
  set(CONFIG Release)
endif()

function(fd_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc COMMAND_ECHO STDOUT)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "package test (${MODE}): ${what} failed (${rc})")
  endif()
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(consumer_build "${WORK_DIR}/consumer-build")

if(MODE STREQUAL "install")
  set(prefix "${WORK_DIR}/prefix")
  # cmake --install (not the install target): fd is header-only, FasterDiffusion::cuda (when built) is
  # already built by the time ctest runs.
  fd_step("install of ${FD_BUILD_DIR}" "${CMAKE_COMMAND}" --install "${FD_BUILD_DIR}" --prefix "${prefix}"
          --config "${CONFIG}")

  file(GLOB_RECURSE configs "${prefix}/*/FasterDiffusionConfig.cmake")
  if(NOT configs)
    message(FATAL_ERROR "package test (install): no FasterDiffusionConfig.cmake under ${prefix}")
  endif()
  if(NOT EXISTS "${prefix}/include/fd/core/tensor.hpp")
    message(FATAL_ERROR "package test (install): headers missing, no ${prefix}/include/fd/core/tensor.hpp")
  endif()
  # An installed package must be relocatable: no absolute path back into the source or build tree.
  file(GLOB_RECURSE cmake_files "${prefix}/*.cmake")
  foreach(f IN LISTS cmake_files)
    file(READ "${f}" text)
    foreach(tree IN ITEMS "${FD_SOURCE_DIR}" "${FD_BUILD_DIR}")
      string(FIND "${text}" "${tree}" at)
      if(NOT at EQUAL -1)
        message(FATAL_ERROR "package test (install): ${f} refers to ${tree}")
      endif()
    endforeach()
  endforeach()

  set(find_args "-DCMAKE_PREFIX_PATH=${prefix}")
  set(expected_root "${prefix}")
elseif(MODE STREQUAL "build_tree")
  if(NOT EXISTS "${FD_BUILD_DIR}/FasterDiffusionConfig.cmake")
    message(FATAL_ERROR "package test (build_tree): ${FD_BUILD_DIR}/FasterDiffusionConfig.cmake not found")
  endif()
  set(find_args "-DFasterDiffusion_DIR=${FD_BUILD_DIR}")
  set(expected_root "${FD_BUILD_DIR}")
else()
  message(FATAL_ERROR "run_package_test.cmake: MODE must be install or build_tree, got '${MODE}'")
endif()

set(generator_args -G "${GENERATOR}")
if(MAKE_PROGRAM)
  list(APPEND generator_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
# The package registries could hand the consumer some other FasterDiffusion; only ours may count.
fd_step("consumer configure" "${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE_DIR}" -B "${consumer_build}"
        ${generator_args} "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}" "-DCMAKE_BUILD_TYPE=${CONFIG}"
        -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF ${find_args})

file(STRINGS "${consumer_build}/CMakeCache.txt" found_line REGEX "^FasterDiffusion_DIR:")
string(REGEX REPLACE "^[^=]*=" "" found_dir "${found_line}")
file(REAL_PATH "${found_dir}" found_real)
file(REAL_PATH "${expected_root}" expected_real)
cmake_path(IS_PREFIX expected_real "${found_real}" NORMALIZE found_ours)
if(NOT found_ours)
  message(FATAL_ERROR "package test (${MODE}): consumer found FasterDiffusion in ${found_dir}, "
                      "expected under ${expected_root}")
endif()

fd_step("consumer build" "${CMAKE_COMMAND}" --build "${consumer_build}" --config "${CONFIG}")

set(exe "")
foreach(candidate IN ITEMS "${consumer_build}/fd_consumer" "${consumer_build}/${CONFIG}/fd_consumer")
  if(EXISTS "${candidate}")
    set(exe "${candidate}")
    break()
  endif()
endforeach()
if(NOT exe)
  message(FATAL_ERROR "package test (${MODE}): consumer executable not found in ${consumer_build}")
endif()

execute_process(COMMAND "${exe}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(NOT rc EQUAL 0 OR NOT out MATCHES "consumer ok")
  message(FATAL_ERROR "package test (${MODE}): consumer failed (${rc})")
endif()

# The package's cuda component, when the build had it.
foreach(candidate IN ITEMS "${consumer_build}/fd_consumer_cuda" "${consumer_build}/${CONFIG}/fd_consumer_cuda")
  if(EXISTS "${candidate}")
    execute_process(COMMAND "${candidate}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
    message("${out}${err}")
    if(NOT rc EQUAL 0 OR NOT out MATCHES "cuda consumer ok")
      message(FATAL_ERROR "package test (${MODE}): CUDA consumer failed (${rc})")
    endif()
    break()
  endif()
endforeach()
message("package test (${MODE}): passed")
