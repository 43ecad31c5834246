// fasterdiffusion: the command-line front end of FasterDiffusion C++.

#include <cstdio>
#include <functional>

#include <CLI/CLI.hpp>

#include "cmd_bench.hpp"
#include "cmd_compare.hpp"
#include "cmd_control.hpp"
#include "cmd_generate.hpp"
#include "cmd_png_info.hpp"
#include "cmd_convert_ldm.hpp"
#include "cmd_randn.hpp"
#include "cmd_sample.hpp"
#include "cmd_scheduler.hpp"
#include "cmd_text_encoder.hpp"
#include "cmd_tokenize.hpp"
#include "cmd_unet.hpp"
#include "cmd_vae_decode.hpp"

int main(int argc, char** argv) {
  CLI::App app{"fasterdiffusion: diffusion UNets with FasterDiffusion encoder propagation"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::to_string(fd::kVersionMajor) + "." + std::to_string(fd::kVersionMinor) +
                                        "." + std::to_string(fd::kVersionPatch));
  std::function<void()> run;
  fdcli::UnetArgs unet_args;
  fdcli::add_unet_command(app, unet_args, run);
  fdcli::BenchArgs bench_args;
  fdcli::add_bench_command(app, bench_args, run);
  int exit_code = 0;
  fdcli::CompareArgs compare_args;
  fdcli::add_compare_command(app, compare_args, run, exit_code);
  fdcli::add_scheduler_command(app, run);
  fdcli::SampleArgs sample_args;
  fdcli::add_sample_command(app, sample_args, run);
  fdcli::ConvertLdmArgs convert_ldm_args;
  fdcli::add_convert_ldm_command(app, convert_ldm_args, run);
  fdcli::RandnArgs randn_args;
  fdcli::add_randn_command(app, randn_args, run);
  fdcli::TextEncoderArgs text_encoder_args;
  fdcli::add_text_encoder_command(app, text_encoder_args, run);
  fdcli::add_tokenize_command(app, run);
  fdcli::VaeDecodeArgs vae_decode_args;
  fdcli::add_vae_decode_command(app, vae_decode_args, run);
  fdcli::GenerateArgs generate_args;
  fdcli::add_generate_command(app, generate_args, run);
  fdcli::ShapesEvalArgs shapes_eval_args;
  fdcli::add_shapes_eval_command(app, shapes_eval_args, run, exit_code);
  std::string png_info_path;
  fdcli::add_png_info_command(app, png_info_path, run);
  fdcli::CannyArgs canny_args;
  fdcli::add_canny_command(app, canny_args, run);
  fdcli::CompareImagesArgs compare_images_args;
  fdcli::add_compare_images_command(app, compare_images_args, run, exit_code);
  fdcli::ControlNetFromUnetArgs cn_from_unet_args;
  fdcli::add_controlnet_from_unet_command(app, cn_from_unet_args, run);
  try {
    app.parse(argc, argv);
  } catch (CLI::ParseError const& e) {
    return app.exit(e);
  }
  try {
    if (run) run();
  } catch (fd::error const& e) {
    std::fprintf(stderr, "fasterdiffusion: %s\n", e.what());
    return 1;
  } catch (std::exception const& e) {
    std::fprintf(stderr, "fasterdiffusion: internal error: %s\n", e.what());
    return 2;
  }
  return exit_code;
}
