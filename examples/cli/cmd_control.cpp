// `fasterdiffusion canny` and `fasterdiffusion controlnet-from-unet` (see cmd_control.hpp).

#include "cmd_control.hpp"

#include <cstdio>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include <fd/io/png.hpp>
#include <fd/io/safetensors.hpp>
#include <fd/models/controlnet/controlnet.hpp>
#include <fd/models/unet/unet.hpp>
#include <fd/nn/init.hpp>

#if defined(FD_CLI_HAVE_OPENCV)
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#endif

#include "cli_common.hpp"

namespace fdcli {

fd::io::Rgb8 canny_edges(fd::io::Rgb8 const& rgb, double low, double high) {
#if defined(FD_CLI_HAVE_OPENCV)
  // The reference passes np.array(PIL image): 3 interleaved channels in R, G, B order. OpenCV's Canny on
  // a 3-channel image takes, per pixel, the channel with the largest gradient magnitude.
  cv::Mat const src(rgb.height, rgb.width, CV_8UC3, const_cast<std::uint8_t*>(rgb.rgb.data()));
  cv::Mat edges;
  cv::Canny(src, edges, low, high);
  fd::io::Rgb8 out{rgb.width, rgb.height, std::vector<std::uint8_t>(rgb.rgb.size())};
  for (int y = 0; y < rgb.height; ++y) {
    std::uint8_t const* e = edges.ptr<std::uint8_t>(y);
    for (int x = 0; x < rgb.width; ++x) {
      std::size_t const i = (static_cast<std::size_t>(y) * rgb.width + x) * 3;
      out.rgb[i] = out.rgb[i + 1] = out.rgb[i + 2] = e[x];
    }
  }
  return out;
#else
  (void)rgb, (void)low, (void)high;
  fd::fail(fd::Errc::kUnsupported, "--canny: this fasterdiffusion was built without OpenCV (Debian libopencv-dev); "
                                   "pass a ready edge map as --control-image instead");
#endif
}

std::pair<double, double> parse_thresholds(std::string const& option, std::string const& text) {
  std::size_t const comma = text.find(',');
  try {
    if (comma != std::string::npos) {
      std::size_t u1 = 0, u2 = 0;
      double const lo = std::stod(text.substr(0, comma), &u1);
      double const hi = std::stod(text.substr(comma + 1), &u2);
      if (u1 == comma && u2 == text.size() - comma - 1 && lo >= 0 && hi >= lo) return {lo, hi};
    }
  } catch (std::exception const&) {
  }
  fd::fail(fd::Errc::kInvalidArgument, option + " '" + text + "': expected LOW,HIGH with 0 <= LOW <= HIGH, e.g. 100,200");
}

void add_canny_command(CLI::App& app, CannyArgs& a, std::function<void()>& run) {
  auto* cmd = app.add_subcommand("canny", "Canny edges of an image, as the reference ControlNet demo computes them");
  cmd->add_option("--image", a.image, "PNG or JPEG image")->required()->check(CLI::ExistingFile);
  cmd->add_option("--output", a.output, "PNG to write (the edge map in all three channels)")->required();
  cmd->add_option("--thresholds", a.thresholds, "LOW,HIGH hysteresis thresholds")->capture_default_str();
  cmd->callback([&run, &a] {
    run = [&a] {
      auto const [lo, hi] = parse_thresholds("--thresholds", a.thresholds);
      fd::io::Rgb8 const e = canny_edges(fd::io::read_image(a.image), lo, hi);
      fd::io::write_png(a.output, e.rgb, e.width, e.height, 3);
      std::size_t on = 0;
      for (std::size_t i = 0; i < e.rgb.size(); i += 3) on += e.rgb[i] != 0;
      std::printf("wrote %s: %dx%d, %zu edge pixels\n", a.output.c_str(), e.width, e.height, on);
    };
  });
}

void add_compare_images_command(CLI::App& app, CompareImagesArgs& a, std::function<void()>& run, int& exit_code) {
  auto* cmd = app.add_subcommand("compare-images", "Count the pixels where two PNG/JPEG images differ (as RGB)");
  cmd->add_option("a", a.a, "first image")->required()->check(CLI::ExistingFile);
  cmd->add_option("b", a.b, "second image")->required()->check(CLI::ExistingFile);
  cmd->add_option("--max-differing", a.max_differing, "exit 1 when more pixels than this differ")->capture_default_str();
  cmd->callback([&run, &a, &exit_code] {
    run = [&a, &exit_code] {
      fd::io::Rgb8 const x = fd::io::read_image(a.a), y = fd::io::read_image(a.b);
      if (x.width != y.width || x.height != y.height) {
        fd::fail(fd::Errc::kShapeMismatch, a.a + " is " + std::to_string(x.width) + "x" + std::to_string(x.height) +
                                               ", " + a.b + " is " + std::to_string(y.width) + "x" + std::to_string(y.height));
      }
      long diff = 0;
      for (std::size_t i = 0; i < x.rgb.size(); i += 3) {
        diff += x.rgb[i] != y.rgb[i] || x.rgb[i + 1] != y.rgb[i + 1] || x.rgb[i + 2] != y.rgb[i + 2];
      }
      std::printf("differing pixels: %ld of %d\n", diff, x.width * x.height);
      if (diff > a.max_differing) exit_code = 1;
    };
  });
}

void add_controlnet_from_unet_command(CLI::App& app, ControlNetFromUnetArgs& a, std::function<void()>& run) {
  auto* cmd = app.add_subcommand(
      "controlnet-from-unet",
      "Write an untrained ControlNet folder initialised from a UNet (diffusers' ControlNetModel.from_unet): the "
      "encoder copied, the zero convolutions and the conditioning embedding's last conv zero, so its residuals are "
      "zero until trained");
  cmd->add_option("--unet", a.unet, "diffusers unet folder")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--output", a.output, "ControlNet folder to write (config.json + diffusion_pytorch_model.safetensors)")
      ->required();
  cmd->add_option("--conditioning-channels", a.channels,
                  "conditioning_embedding_out_channels, comma-separated (default 16,32,96,256 for latent models; 16 "
                  "for pixel-space UNets, whose control image is the sample size)");
  cmd->add_option("--seed", a.seed, "seed of the conditioning embedding's random initialisation")->capture_default_str();
  cmd->callback([&run, &a] {
    run = [&a] {
      Backend be{{.threads = 1}};
      auto const unet_dir = std::filesystem::path(a.unet);
      nlohmann::json cfg = fd::io::read_json_file(unet_dir / "config.json", "UNet config");
      auto unet = fd::models::UNet2DCondition<Backend>::load(be, unet_dir);
      nlohmann::json cn = cfg;
      for (char const* k : {"up_block_types", "out_channels", "center_input_sample", "conv_out_kernel", "mid_block_type",
                            "sample_size", "time_embedding_type", "conv_in_kernel", "dropout"}) {
        cn.erase(k);
      }
      cn["_class_name"] = "ControlNetModel";
      cn["conditioning_channels"] = 3;
      cn["controlnet_conditioning_channel_order"] = "rgb";
      cn["global_pool_conditions"] = false;
      std::vector<int> channels;
      if (!a.channels.empty()) {
        std::size_t p = 0;
        while (p <= a.channels.size()) {
          std::size_t const q = std::min(a.channels.find(',', p), a.channels.size());
          channels.push_back(std::stoi(a.channels.substr(p, q - p)));
          p = q + 1;
        }
      } else {
        channels = unet.config().in_channels == 3 ? std::vector<int>{16} : std::vector<int>{16, 32, 96, 256};
      }
      cn["conditioning_embedding_out_channels"] = channels;
      auto const ccfg = fd::models::ControlNetConfig::from_json(cn, a.output + "/config.json");
      fd::models::ControlNetModel<Backend> model(be, ccfg);
      fd::nn::init_random(be, model, static_cast<std::uint64_t>(a.seed));
      // The trunk from the UNet; the zero convolutions and the embedding's output conv zero.
      std::map<std::string, Tensor> unet_params;
      unet.visit([&](std::string const& name, Tensor& t) { unet_params.emplace(name, t); });
      std::vector<std::pair<std::string, Tensor>> tensors;
      model.visit([&](std::string const& name, Tensor& t) {
        auto it = unet_params.find(name);
        if (it != unet_params.end()) {
          it->second.copy_to(be, t);
        } else if (name.starts_with("controlnet_down_blocks.") || name.starts_with("controlnet_mid_block.") ||
                   name.starts_with("controlnet_cond_embedding.conv_out.")) {
          Tensor::zeros(be, t.shape()).copy_to(be, t);
        }
        tensors.emplace_back(name, t);
      });
      std::filesystem::create_directories(a.output);
      {
        std::ofstream f(std::filesystem::path(a.output) / "config.json");
        f << cn.dump(2) << "\n";
        if (!f) fd::fail(fd::Errc::kIo, a.output + "/config.json: cannot write");
      }
      fd::io::save_safetensors(be, std::filesystem::path(a.output) / "diffusion_pytorch_model.safetensors", tensors);
      std::printf("wrote %s: ControlNet from %s (%zu tensors, untrained)\n", a.output.c_str(), a.unet.c_str(),
                  tensors.size());
    };
  });
}

}  // namespace fdcli
