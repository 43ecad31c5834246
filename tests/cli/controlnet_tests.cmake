# ControlNet through the CLI: `unet --controlnet` and `sample --controlnet` against the golden fixtures,
# `canny` against OpenCV's Python module, `generate --controlnet`, controlnet-from-unet, and the errors.
set(_cn ${FD_FIXTURES_DIR}/controlnet_tiny)
set(_cn_io ${_cn}/controlnet_tiny_io.safetensors)
set(_cn_out ${CMAKE_CURRENT_BINARY_DIR}/cli_cn)
file(MAKE_DIRECTORY ${_cn_out})

# unet --controlnet: every residual and the controlled output (scale 1, 0.5 and guess mode).
add_test(NAME cli.unet.controlnet.run
         COMMAND fasterdiffusion unet --model ${_unet_fixture} --controlnet ${_cn} --inputs ${_cn_io}
                 --output ${_cn_out}/unet_cn.safetensors --threads 2)
set_tests_properties(cli.unet.controlnet.run PROPERTIES FIXTURES_SETUP cli_cn_unet)
add_test(NAME cli.unet.controlnet.parity
         COMMAND fasterdiffusion compare ${_cn_out}/unet_cn.safetensors ${_cn_io} --rtol 1e-4)
set_tests_properties(cli.unet.controlnet.parity PROPERTIES FIXTURES_REQUIRED cli_cn_unet
                     PASS_REGULAR_EXPRESSION "cn.down.11" FAIL_REGULAR_EXPRESSION "FAIL")
foreach(variant IN ITEMS scale05 guess)
  if(variant STREQUAL "scale05")
    set(_flags --control-scale 0.5)
  else()
    set(_flags --guess-mode)
  endif()
  add_test(NAME cli.unet.controlnet.${variant}.run
           COMMAND fasterdiffusion unet --model ${_unet_fixture} --controlnet ${_cn} --inputs ${_cn_io}
                   --output ${_cn_out}/unet_cn_${variant}.safetensors --threads 2 ${_flags})
  set_tests_properties(cli.unet.controlnet.${variant}.run PROPERTIES FIXTURES_SETUP cli_cn_unet_${variant})
  add_test(NAME cli.unet.controlnet.${variant}.parity
           COMMAND fasterdiffusion compare ${_cn_out}/unet_cn_${variant}.safetensors ${_cn_io}
                   --reference-prefix ${variant}. --names cn.down.00 cn.down.05 cn.down.11 cn.mid out --rtol 1e-4)
  set_tests_properties(cli.unet.controlnet.${variant}.parity PROPERTIES FIXTURES_REQUIRED cli_cn_unet_${variant})
endforeach()

# sample --controlnet: baseline (50 ControlNet runs) and FasterDiffusion (9) against fd_tiny_controlnet_ddim50.
set(_cn_fixture ${FD_FIXTURES_DIR}/fd_tiny_sd/fd_tiny_controlnet_ddim50)
foreach(mode baseline fd)
  if(mode STREQUAL "baseline")
    set(_accel none)
    set(_runs 50)
  else()
    set(_accel fd)
    set(_runs 9)
  endif()
  add_test(NAME cli.sample.controlnet.${mode}.run
           COMMAND fasterdiffusion sample --unet ${_unet_fixture} --controlnet ${_cn} --scheduler-config
                   ${CMAKE_CURRENT_BINARY_DIR}/ddim50_scheduler_config.json --steps 50 --guidance 7.5
                   --inputs ${_cn_fixture}.safetensors --output ${_cn_out}/sample_${mode}.safetensors
                   --accel ${_accel} --threads 2)
  set_tests_properties(cli.sample.controlnet.${mode}.run PROPERTIES FIXTURES_SETUP cli_cn_sample_${mode}
                       PASS_REGULAR_EXPRESSION "controlnet runs: ${_runs}")
  add_test(NAME cli.sample.controlnet.${mode}.parity
           COMMAND fasterdiffusion compare ${_cn_out}/sample_${mode}.safetensors ${_cn_fixture}.safetensors
                   --names latents final --reference-prefix ${mode}. --rtol 1e-4)
  set_tests_properties(cli.sample.controlnet.${mode}.parity PROPERTIES FIXTURES_REQUIRED cli_cn_sample_${mode})
endforeach()

# canny: our path (PNG decode, RGB order, OpenCV's Canny) against cv2.Canny(np.array(image), 100, 200).
if(FD_CLI_HAS_OPENCV)
  foreach(img IN ITEMS shapes gradient noise odd)
    add_test(NAME cli.canny.${img}
             COMMAND ${CMAKE_COMMAND} -DFD=$<TARGET_FILE:fasterdiffusion> -DSRC=${FD_TEST_DATA}/control/src_${img}.png
                     -DREF=${FD_TEST_DATA}/control/canny_${img}.png -DOUT=${_cn_out}/canny_${img}.png
                     -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/canny_check.cmake)
    set_tests_properties(cli.canny.${img} PROPERTIES PASS_REGULAR_EXPRESSION "differing pixels: 0 of")
  endforeach()
endif()

# controlnet-from-unet on the demo model, then generate with it: an untrained ControlNet's residuals are
# zero, so the controlled image equals the uncontrolled one, and FasterDiffusion runs it 9 times.
set(_demo_cn ${_cn_out}/tiny-shapes-controlnet)
add_test(NAME cli.controlnet_from_unet
         COMMAND fasterdiffusion controlnet-from-unet --unet ${FD_MODELS_DIR}/tiny-shapes/unet --output ${_demo_cn})
set_tests_properties(cli.controlnet_from_unet PROPERTIES FIXTURES_SETUP cli_demo_cn)
add_test(NAME cli.generate.controlnet
         COMMAND fasterdiffusion generate -p "a red circle on a blue background" --controlnet ${_demo_cn}
                 --control-image ${FD_TEST_DATA}/control/src_gradient.png -H 32 -W 32 --steps 20 -s 7 --threads 2 -q
                 --compare -o ${_cn_out}/gen_cn.png)
set_tests_properties(cli.generate.controlnet PROPERTIES FIXTURES_REQUIRED cli_demo_cn
                     PASS_REGULAR_EXPRESSION "ControlNet runs: origin 2[01], faster [0-9]+")
add_test(NAME cli.generate.no_controlnet_same_seed
         COMMAND fasterdiffusion generate -p "a red circle on a blue background" -H 32 -W 32 --steps 20 -s 7
                 --threads 2 -q --compare -o ${_cn_out}/gen_plain.png)
set_tests_properties(cli.generate.no_controlnet_same_seed PROPERTIES FIXTURES_SETUP cli_gen_plain)
add_test(NAME cli.generate.controlnet_zero_residuals
         COMMAND fasterdiffusion compare-images ${_cn_out}/gen_cn_origin.png ${_cn_out}/gen_plain_origin.png)
set_tests_properties(cli.generate.controlnet_zero_residuals PROPERTIES
                     FIXTURES_REQUIRED "cli_demo_cn;cli_gen_plain" DEPENDS cli.generate.controlnet
                     PASS_REGULAR_EXPRESSION "differing pixels: 0 of 1024")

# Errors.
set(_expect ${CMAKE_CURRENT_SOURCE_DIR}/cli/expect_error.sh)
add_test(NAME cli.generate.controlnet.no_image
         COMMAND bash ${_expect} "need one --control-image" $<TARGET_FILE:fasterdiffusion> generate -p x
                 --controlnet ${_cn} -q)
add_test(NAME cli.generate.controlnet.image_without_net
         COMMAND bash ${_expect} "need a --controlnet" $<TARGET_FILE:fasterdiffusion> generate -p x
                 --control-image ${FD_TEST_DATA}/control/src_noise.png -q)
add_test(NAME cli.generate.controlnet.mismatched_model
         COMMAND bash ${_expect} "the ControlNet takes 4 input channels, the UNet 3" $<TARGET_FILE:fasterdiffusion>
                 generate -p x --controlnet ${_cn} --control-image ${FD_TEST_DATA}/control/src_noise.png -q)
add_test(NAME cli.canny.bad_thresholds
         COMMAND bash ${_expect} "--thresholds '200': expected LOW,HIGH" $<TARGET_FILE:fasterdiffusion> canny
                 --image ${FD_TEST_DATA}/control/src_noise.png --output ${_cn_out}/x.png --thresholds 200)
add_test(NAME cli.unet.controlnet.missing_cond
         COMMAND bash ${_expect} "missing input tensor 'controlnet_cond'" $<TARGET_FILE:fasterdiffusion> unet
                 --model ${_unet_fixture} --controlnet ${_cn} --inputs ${_unet_fixture}/unet_tiny_sd_io.safetensors
                 --output ${_cn_out}/y.safetensors)
