#pragma once
// Control images for ControlNets: `fasterdiffusion canny` (OpenCV's Canny, as the reference demo runs it
// on the RGB array), `fasterdiffusion controlnet-from-unet` (an untrained ControlNet initialised from a
// UNet, as diffusers' ControlNetModel.from_unet does), and the helper generate uses.

#include <functional>
#include <string>
#include <utility>

#include <CLI/CLI.hpp>

#include <fd/io/image_file.hpp>

namespace fdcli {

/// cv2.Canny(rgb_array, low, high) with its defaults (aperture 3, L1 gradient) on the RGB image, the
/// single edge channel repeated three times, as the reference demo feeds the ControlNet.
fd::io::Rgb8 canny_edges(fd::io::Rgb8 const& rgb, double low, double high);

/// "LOW,HIGH" -> thresholds, with an error naming the option.
std::pair<double, double> parse_thresholds(std::string const& option, std::string const& text);

struct CannyArgs {
  std::string image, output, thresholds = "100,200";
};
void add_canny_command(CLI::App& app, CannyArgs& a, std::function<void()>& run);

struct CompareImagesArgs {
  std::string a, b;
  long max_differing = 0;
};
/// `compare-images A B`: decoded RGB pixels that differ (grey images count as RGB).
void add_compare_images_command(CLI::App& app, CompareImagesArgs& a, std::function<void()>& run, int& exit_code);

struct ControlNetFromUnetArgs {
  std::string unet, output, channels;
  int seed = 0;
};
void add_controlnet_from_unet_command(CLI::App& app, ControlNetFromUnetArgs& a, std::function<void()>& run);

}  // namespace fdcli
