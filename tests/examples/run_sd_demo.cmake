# Builds an example (examples/sd_demo, examples/controlnet_demo) against a FasterDiffusion build tree
# (find_package through its exported config) and runs it in WORK_DIR. Run with cmake -P and
# -DFD_BUILD_DIR, -DDEMO_SOURCE_DIR, -DWORK_DIR, -DGENERATOR, -DCXX_COMPILER, and optionally -DDEMO (the
# executable, default sd_demo) and -DIMAGES (the images/ it must write, default origin_cat;faster_cat).
cmake_minimum_required(VERSION 3.25)
if(NOT DEMO)
  set(DEMO sd_demo)
endif()
if(NOT IMAGES)
  set(IMAGES origin_cat faster_cat)
endif()
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
execute_process(COMMAND "${CMAKE_COMMAND}" -S "${DEMO_SOURCE_DIR}" -B "${WORK_DIR}/build" -G "${GENERATOR}"
                        "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}" "-DFasterDiffusion_DIR=${FD_BUILD_DIR}"
                        "-DCMAKE_CXX_FLAGS=-march=native"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${DEMO}: configure failed (${rc})")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" --build "${WORK_DIR}/build" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${DEMO}: build failed (${rc})")
endif()
execute_process(COMMAND "${WORK_DIR}/build/${DEMO}" WORKING_DIRECTORY "${WORK_DIR}" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${DEMO}: run failed (${rc})")
endif()
foreach(img IN LISTS IMAGES)
  if(NOT EXISTS "${WORK_DIR}/images/${img}.png")
    message(FATAL_ERROR "${DEMO}: images/${img}.png was not written")
  endif()
endforeach()
