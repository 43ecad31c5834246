#pragma once
/// @file
/// ImageDecoder: owns either decoder a pipeline may use (the SD VAE or TAESD), chosen by the folder's
/// config.json "_class_name", behind one decode interface.

#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "fd/models/vae/autoencoder_kl.hpp"
#include "fd/models/vae/autoencoder_tiny.hpp"

namespace fd::models {

template <class B>
class ImageDecoder {
 public:
  /// Loads `dir` as AutoencoderKL or AutoencoderTiny according to its config.json; any other class
  /// (or none) is kConfig naming the class and the file.
  static ImageDecoder load(B const& be, std::filesystem::path const& dir, std::string_view variant = "") {
    auto const path = dir / "config.json";
    nlohmann::json const j = vae::read_json_file(path, "image decoder");
    std::string const cls = vae::class_name_of(j);
    if (cls == "AutoencoderKL") {
      auto cfg = AutoencoderKLConfig::from_json(j, path.string());
      auto c = io::Checkpoint::open_model_dir(dir, "diffusion_pytorch_model", variant);
      return ImageDecoder(AutoencoderKL<B>::from_checkpoint(be, std::move(cfg), c));
    }
    if (cls == "AutoencoderTiny") {
      auto cfg = AutoencoderTinyConfig::from_json(j, path.string());
      auto c = io::Checkpoint::open_model_dir(dir, "diffusion_pytorch_model", variant);
      return ImageDecoder(AutoencoderTiny<B>::from_checkpoint(be, std::move(cfg), c));
    }
    fail(Errc::kConfig, path.string() + ": _class_name " + (cls.empty() ? std::string("is missing") : "\"" + cls + "\"") +
                            "; an image decoder must be \"AutoencoderKL\" or \"AutoencoderTiny\"");
  }
  static ImageDecoder from_kl(AutoencoderKL<B> m) { return ImageDecoder(std::move(m)); }
  static ImageDecoder from_tiny(AutoencoderTiny<B> m) { return ImageDecoder(std::move(m)); }

  /// Scaled latents as the sampler produces them -> image [N, 3, h*f, w*f], not clamped.
  Tensor<B> decode(Tensor<B> const& latents, DecodeTap<B> const& tap = {}) const {
    return std::visit([&](auto const& m) { return m.decode(latents, tap); }, m_);
  }
  Tensor<B> decode_tiled(Tensor<B> const& latents, TileOptions const& opt = {}) const {
    return std::visit([&](auto const& m) { return m.decode_tiled(latents, opt); }, m_);
  }
  bool tiny() const noexcept { return std::holds_alternative<AutoencoderTiny<B>>(m_); }
  int scale_factor() const {
    return std::visit([](auto const& m) { return m.scale_factor(); }, m_);
  }
  int latent_channels() const {
    return std::visit([](auto const& m) { return m.latent_channels(); }, m_);
  }
  float scaling_factor() const {
    return std::visit([](auto const& m) { return m.scaling_factor(); }, m_);
  }

 private:
  explicit ImageDecoder(AutoencoderKL<B> m) : m_(std::move(m)) {}
  explicit ImageDecoder(AutoencoderTiny<B> m) : m_(std::move(m)) {}
  std::variant<AutoencoderKL<B>, AutoencoderTiny<B>> m_;
};

}  // namespace fd::models
