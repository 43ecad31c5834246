# `fasterdiffusion generate` / `shapes-eval` on the demo model, and the sd_demo example built through
# find_package. Included from tests/CMakeLists.txt when the CLI is built.
set(_gen_dir ${CMAKE_CURRENT_BINARY_DIR}/cli_generate)
file(MAKE_DIRECTORY ${_gen_dir})
set(_tiny ${FD_MODELS_DIR}/tiny-shapes)

# Baseline and FasterDiffusion side by side: both timing lines, speed-up and PSNR, both PNGs written.
add_test(NAME cli.generate.compare
         COMMAND fasterdiffusion generate -m ${_tiny} -p "a red circle on a blue background" -s 2023 --steps 50
                 --sampler ddim --compare -q --threads 2 -o ${_gen_dir}/cmp.png)
set_tests_properties(cli.generate.compare PROPERTIES FIXTURES_SETUP cli_generate_cmp
  PASS_REGULAR_EXPRESSION "Origin Pipeline: [0-9.]+ s\nFaster Diffusion: [0-9.]+ s\nSpeed-up: [0-9.]+x, PSNR \\(origin vs faster\\): [0-9.]+ dB.*wrote [^\n]*cmp_origin.png\nwrote [^\n]*cmp_faster.png")

# The default model (embedded), a batch with per-image seeds, every option that changes the loop.
add_test(NAME cli.generate.batch
         COMMAND fasterdiffusion generate -p "a white triangle on a green background" --seeds 7,8 --steps 8
                 --sampler euler_a --accel fd-seq --keys every:2 --noise-injection off -q --threads 2
                 -o ${_gen_dir}/batch.png)
set_tests_properties(cli.generate.batch PROPERTIES
  PASS_REGULAR_EXPRESSION "wrote [^\n]*batch_0.png\nwrote [^\n]*batch_1.png")

# The PNG holds the generation parameters (read back by the `png-info` command).
add_test(NAME cli.generate.png_text
         COMMAND fasterdiffusion png-info ${_gen_dir}/cmp_faster.png)
set_tests_properties(cli.generate.png_text PROPERTIES FIXTURES_REQUIRED cli_generate_cmp
  PASS_REGULAR_EXPRESSION "a red circle on a blue background\nSteps: 50, Sampler: DDIMScheduler, CFG scale: 7.5, Seed: 2023, Size: 32x32")

# Bad input: each exits 1 with a message naming the problem (tests/cli/expect_error.sh).
set(_expect_error ${CMAKE_CURRENT_SOURCE_DIR}/cli/expect_error.sh)
add_test(NAME cli.generate.bad_width
         COMMAND bash ${_expect_error} "divisible by 8, got 32x36"
                 $<TARGET_FILE:fasterdiffusion> generate -m ${_tiny} -p "a red circle" -W 36 --steps 2 -o ${_gen_dir}/x.png)
add_test(NAME cli.generate.blank_prompt
         COMMAND bash ${_expect_error} "fd.invalid_argument.*empty or only white space"
                 $<TARGET_FILE:fasterdiffusion> generate -m ${_tiny} -p "  \t " --steps 2 -o ${_gen_dir}/x.png)
add_test(NAME cli.generate.unwritable
         COMMAND bash ${_expect_error} "fd.io.*/nonexistent_dir_fd"
                 $<TARGET_FILE:fasterdiffusion> generate -m ${_tiny} -p "a red circle" --steps 2 -o /nonexistent_dir_fd/x.png)
add_test(NAME cli.generate.missing_model
         COMMAND bash ${_expect_error} "no_such_model"
                 $<TARGET_FILE:fasterdiffusion> generate -m ${_gen_dir}/no_such_model -p "a red circle" --steps 2)
add_test(NAME cli.generate.unknown_scheduler
         COMMAND bash ${_expect_error} "fd.config.*LMSDiscreteScheduler"
                 $<TARGET_FILE:fasterdiffusion> generate -m ${_gen_dir}/bad_scheduler_model -p "a red circle" --steps 2
                 -o ${_gen_dir}/x.png)
set_tests_properties(cli.generate.unknown_scheduler PROPERTIES FIXTURES_REQUIRED cli_generate_bad_model)
# A copy of the demo model whose scheduler config names a class we do not have.
add_test(NAME cli.generate.make_bad_model
         COMMAND ${CMAKE_COMMAND} -DSRC=${_tiny} -DDST=${_gen_dir}/bad_scheduler_model
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/make_bad_scheduler_model.cmake)
set_tests_properties(cli.generate.make_bad_model PROPERTIES FIXTURES_SETUP cli_generate_bad_model)

# Quality on the demo model: the README's colour check over 32 captions for DDIM-50 and
# DDIM-50 + FasterDiffusion, and their PSNR. The bounds only catch a broken pipeline (chance level for
# the shape colour is 12.5 %); the measured numbers are in docs/benchmarks.md.
add_test(NAME cli.shapes_eval
         COMMAND fasterdiffusion shapes-eval -m ${_tiny} --captions 32 --threads 2
                 --expect-min-shape-colour 30 --expect-min-psnr 17)
set_tests_properties(cli.shapes_eval PROPERTIES TIMEOUT 900)

# sd_demo: a separate project built against this build tree's package, then run on the demo model.
add_test(NAME examples.sd_demo
         COMMAND ${CMAKE_COMMAND}
                 -DFD_BUILD_DIR=${PROJECT_BINARY_DIR}
                 -DDEMO_SOURCE_DIR=${PROJECT_SOURCE_DIR}/examples/sd_demo
                 -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/sd_demo
                 -DGENERATOR=${CMAKE_GENERATOR}
                 -DCXX_COMPILER=${CMAKE_CXX_COMPILER}
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/examples/run_sd_demo.cmake)
set_tests_properties(examples.sd_demo PROPERTIES TIMEOUT 900
  PASS_REGULAR_EXPRESSION "Start Generating\nOrigin Pipeline: [0-9.]+ seconds\nFaster Diffusion: [0-9.]+ seconds")

# controlnet_demo: the same way, with the embedded untrained ControlNet and the condition image beside it.
add_test(NAME examples.controlnet_demo
         COMMAND ${CMAKE_COMMAND}
                 -DFD_BUILD_DIR=${PROJECT_BINARY_DIR}
                 -DDEMO_SOURCE_DIR=${PROJECT_SOURCE_DIR}/examples/controlnet_demo
                 -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/controlnet_demo
                 -DGENERATOR=${CMAKE_GENERATOR}
                 -DCXX_COMPILER=${CMAKE_CXX_COMPILER}
                 -DDEMO=controlnet_demo
                 "-DIMAGES=canny_out_origin\;canny_out_faster"
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/examples/run_sd_demo.cmake)
set_tests_properties(examples.controlnet_demo PROPERTIES TIMEOUT 900
  PASS_REGULAR_EXPRESSION "Start Generating\nOrigin Pipeline: [0-9.]+ seconds\nFaster Pipeline: [0-9.]+ seconds\nControlNet runs: origin 5[01], faster 9")
