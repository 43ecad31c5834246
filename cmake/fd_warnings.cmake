# Warning and architecture flags for fd's own programs (tests, CLI, benchmarks). Never propagated
# through the INTERFACE target: consumers choose their own flags.
add_library(fd_program_flags INTERFACE)
target_compile_options(fd_program_flags INTERFACE -Wall -Wextra -Wpedantic)
if(FD_NATIVE)
  target_compile_options(fd_program_flags INTERFACE -march=native)
endif()
