# `fasterdiffusion generate` / `shapes-eval` on the demo model, and the sd_demo example built through
# find_package. Included from tests/CMakeLists.txt when the CLI is built.
set(_gen_dir ${CMAKE_CURRENT_BINARY_DIR}/cli_generate)
file(MAKE_DIRECTORY ${_gen_dir})
set(_tiny ${FD_MODELS_DIR}/tiny-shapes)

# Baseline and FasterDiffusion side by side: both timing lines, speed-up and PSNR, both PNGs written.
add_test(NAME cli.generate.compare
         COMMAND fasterdiffusion generate -m ${_tiny} -p "a red circle on a blue background" -s 2023 --steps 50
                 --sampler ddim --compare -q --threads 2 -o ${_gen_dir}/cmp.png)
set_tests_properties(cli.generate.compare PROPERTIES
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
set_tests_properties(cli.generate.png_text PROPERTIES DEPENDS cli.generate.compare
  PASS_REGULAR_EXPRESSION "a red circle on a blue background\nSteps: 50, Sampler: DDIMScheduler, CFG scale: 7.5, Seed: 2023, Size: 32x32")

# Bad input: each a one-line error naming the problem, exit code 1.
add_test(NAME cli.generate.bad_width
         COMMAND fasterdiffusion generate -m ${_tiny} -p "a red circle" -W 36 --steps 2 -o ${_gen_dir}/x.png)
set_tests_properties(cli.generate.bad_width PROPERTIES WILL_FAIL FALSE
  PASS_REGULAR_EXPRESSION "divisible by 8, got 32x36")
add_test(NAME cli.generate.blank_prompt
         COMMAND fasterdiffusion generate -m ${_tiny} -p "  \t " --steps 2 -o ${_gen_dir}/x.png)
set_tests_properties(cli.generate.blank_prompt PROPERTIES PASS_REGULAR_EXPRESSION "empty or only white space")
add_test(NAME cli.generate.unwritable
         COMMAND fasterdiffusion generate -m ${_tiny} -p "a red circle" --steps 2 -o /nonexistent_dir_fd/x.png)
set_tests_properties(cli.generate.unwritable PROPERTIES PASS_REGULAR_EXPRESSION "/nonexistent_dir_fd")
add_test(NAME cli.generate.missing_model
         COMMAND fasterdiffusion generate -m ${_gen_dir}/no_such_model -p "a red circle" --steps 2)
set_tests_properties(cli.generate.missing_model PROPERTIES PASS_REGULAR_EXPRESSION "no_such_model")

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
