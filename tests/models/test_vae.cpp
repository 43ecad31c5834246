// Image decoders against the golden fixtures (vae_tiny, taesd_tiny), SD 1.5 VAE names and shapes,
// loader errors, post-processing, and tiled decoding.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/compare.hpp"
#include "common/temp_dir.hpp"
#include "fd/fd.hpp"
#include "fd/nn/init.hpp"

namespace {

using Cpu = fd::backend::Cpu;
using T = fd::Tensor<Cpu>;
using fd::models::AutoencoderKL;
using fd::models::AutoencoderTiny;
using fd::models::ImageDecoder;
using fd::models::TileOptions;

std::filesystem::path fixture(std::string const& rel) { return std::filesystem::path(fdtest::fixtures_dir()) / rel; }

/// Decodes with a tap and checks every tapped tensor the io file also holds, plus `image`.
template <class M>
double check_parity(Cpu const& be, M const& m, std::filesystem::path const& io_path, std::size_t min_checked) {
  auto io = fd::io::SafeTensorsFile::open(io_path);
  T const latents = io.load(be, "latents");
  std::map<std::string, T> got;
  T const image = m.decode(latents, [&](std::string const& n, T const& t) { got[n] = t.clone(be); });
  got["image"] = image;
  double worst = 0;
  std::size_t checked = 0;
  for (auto const& [name, t] : got) {
    if (!io.contains(name)) continue;
    double const rel = fdtest::rel_to_max(be, t, io.load(be, name));
    std::printf("  %-24s rel_to_max %.2e\n", name.c_str(), rel);
    CHECK(rel <= 1e-5);
    worst = std::max(worst, rel);
    ++checked;
  }
  CHECK(checked >= min_checked);
  return worst;
}

T random_latents(Cpu const& be, fd::Shape shape, std::uint64_t seed, float scale) {
  std::vector<float> v(static_cast<std::size_t>(shape.numel()));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = scale * fd::nn::detail::approx_normal(seed, i);
  return T::from_host(be, shape, v);
}

fd::Errc error_of(std::function<void()> const& f, std::string& msg) {
  try {
    f();
  } catch (fd::error const& e) {
    msg = e.what();
    return e.code();
  }
  msg = "(no error)";
  return fd::Errc::kIo;
}

/// Copies a model folder, letting `edit` change the tensors (name -> tensor) before they are written.
void copy_model(Cpu const& be, std::filesystem::path const& from, std::filesystem::path const& to,
                std::function<void(std::vector<std::pair<std::string, T>>&)> const& edit) {
  std::filesystem::create_directories(to);
  std::filesystem::copy_file(from / "config.json", to / "config.json");
  auto f = fd::io::SafeTensorsFile::open(from / "diffusion_pytorch_model.safetensors");
  std::vector<std::pair<std::string, T>> ts;
  for (auto const& n : f.names()) ts.emplace_back(n, f.load(be, n));
  edit(ts);
  fd::io::save_safetensors(be, to / "diffusion_pytorch_model.safetensors", ts);
}

void write_json(std::filesystem::path const& p, nlohmann::json const& j) { std::ofstream(p) << j.dump(1); }

nlohmann::json read_json(std::filesystem::path const& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

}  // namespace

TEST_CASE("AutoencoderKL decodes vae_tiny like diffusers, every intermediate", "[vae]") {
  Cpu be{{.threads = 2}};
  auto vae = AutoencoderKL<Cpu>::load(be, fixture("vae_tiny"));
  CHECK(vae.scale_factor() == 8);
  CHECK(vae.latent_channels() == 4);
  CHECK(vae.scaling_factor() == Approx(0.18215f));
  std::printf("vae_tiny parity:\n");
  double const worst = check_parity(be, vae, fixture("vae_tiny/vae_tiny_io.safetensors"), 10);
  std::printf("  worst %.2e\n", worst);
}

TEST_CASE("AutoencoderKL loads the legacy LDM mid-attention names identically", "[vae]") {
  Cpu be{{.threads = 2}};
  auto a = AutoencoderKL<Cpu>::load(be, fixture("vae_tiny"));
  auto b = AutoencoderKL<Cpu>::load(be, fixture("vae_tiny/legacy_names"));
  auto io = fd::io::SafeTensorsFile::open(fixture("vae_tiny/vae_tiny_io.safetensors"));
  T const latents = io.load(be, "latents");
  CHECK(a.decode(latents).to_vector_f32(be) == b.decode(latents).to_vector_f32(be));

  SECTION("stored as 1x1 convolutions, as in the original SD 1.5 file") {
    fdtest::TempDir tmp;
    copy_model(be, fixture("vae_tiny/legacy_names"), tmp / "conv", [&](auto& ts) {
      for (auto& [n, t] : ts) {
        if (n.find("attentions.0.") != std::string::npos && n.ends_with(".weight") && t.rank() == 2) {
          t = t.reshape({t.dim(0), t.dim(1), 1, 1});
        }
      }
    });
    auto c = AutoencoderKL<Cpu>::load(be, tmp / "conv");
    CHECK(c.decode(latents).to_vector_f32(be) == a.decode(latents).to_vector_f32(be));
  }
}

TEST_CASE("AutoencoderTiny decodes taesd_tiny like diffusers, every intermediate", "[vae]") {
  Cpu be{{.threads = 2}};
  auto taesd = AutoencoderTiny<Cpu>::load(be, fixture("taesd_tiny"));
  CHECK(taesd.scale_factor() == 8);
  CHECK(taesd.scaling_factor() == 1.0f);
  std::printf("taesd_tiny parity:\n");
  double const worst = check_parity(be, taesd, fixture("taesd_tiny/taesd_tiny_io.safetensors"), 7);
  std::printf("  worst %.2e\n", worst);
}

TEST_CASE("ImageDecoder dispatches on _class_name and post-processes to 8-bit RGB", "[vae]") {
  Cpu be{{.threads = 2}};
  for (char const* name : {"vae_tiny", "taesd_tiny"}) {
    DYNAMIC_SECTION(name) {
      auto dec = ImageDecoder<Cpu>::load(be, fixture(name));
      CHECK(dec.tiny() == (std::string(name) == "taesd_tiny"));
      CHECK(dec.scale_factor() == 8);
      CHECK(dec.latent_channels() == 4);
      auto io = fd::io::SafeTensorsFile::open(fixture(std::string(name) + "/" + name + "_io.safetensors"));
      T const image = dec.decode(io.load(be, "latents"));
      CHECK(fdtest::rel_to_max(be, image, io.load(be, "image")) <= 1e-5);
      T const den = fd::image::denormalize(be, image);
      double const rel_den = fdtest::rel_to_max(be, den, io.load(be, "image_denormalized"));
      CHECK(rel_den <= 1e-5);

      std::vector<std::uint8_t> const px = fd::image::to_rgb8(be, image);
      auto const ref_info = io.info("image_uint8");
      REQUIRE(ref_info.dtype == fd::DType::kU8);
      REQUIRE(ref_info.shape == fd::Shape({1, 64, 64, 3}));
      std::vector<float> const ref = io.load(be, "image_uint8").to_vector_f32(be);
      REQUIRE(ref.size() == px.size());
      int worst = 0;
      std::size_t off = 0;
      for (std::size_t i = 0; i < px.size(); ++i) {
        int const d = std::abs(static_cast<int>(px[i]) - static_cast<int>(ref[i]));
        worst = std::max(worst, d);
        off += d != 0;
      }
      std::printf("%s: image_denormalized rel %.2e, image_uint8 max diff %d level (%zu of %zu values differ)\n", name,
                  rel_den, worst, off, px.size());
      CHECK(worst <= 1);
      CHECK(off * 100 < px.size());  // a channel-order or rounding mistake moves far more than 1 %
      T const u8 = fd::image::to_rgb8_tensor(be, image);
      CHECK(u8.dtype() == fd::DType::kU8);
      CHECK(u8.shape() == ref_info.shape);
    }
  }
}

TEST_CASE("SD 1.5 VAE decoder has diffusers' parameter names and shapes", "[vae]") {
  Cpu be{{.threads = 2}};
  auto cfg = fd::models::AutoencoderKLConfig::sd15();
  CHECK(cfg.scaling_factor == 0.18215f);
  CHECK(cfg.block_out_channels == std::vector<int>{128, 256, 512, 512});
  AutoencoderKL<Cpu> vae(be, cfg);
  std::map<std::string, fd::Shape> params;
  std::int64_t count = 0;
  vae.visit([&](std::string const& n, T& t) {
    CHECK(params.count(n) == 0);
    params[n] = t.shape();
    count += t.numel();
  });
  CHECK(params.size() == 140);  // 138 decoder tensors + post_quant_conv
  CHECK(count == 49490179 + 20);  // spec: decoder 49,490,179, post_quant_conv 20
  std::map<std::string, fd::Shape> const expect{
      {"post_quant_conv.weight", {4, 4, 1, 1}},
      {"post_quant_conv.bias", {4}},
      {"decoder.conv_in.weight", {512, 4, 3, 3}},
      {"decoder.mid_block.resnets.0.norm1.weight", {512}},
      {"decoder.mid_block.resnets.1.conv2.weight", {512, 512, 3, 3}},
      {"decoder.mid_block.attentions.0.group_norm.weight", {512}},
      {"decoder.mid_block.attentions.0.to_q.weight", {512, 512}},
      {"decoder.mid_block.attentions.0.to_k.bias", {512}},
      {"decoder.mid_block.attentions.0.to_v.weight", {512, 512}},
      {"decoder.mid_block.attentions.0.to_out.0.weight", {512, 512}},
      {"decoder.mid_block.attentions.0.to_out.0.bias", {512}},
      {"decoder.up_blocks.0.resnets.0.conv1.weight", {512, 512, 3, 3}},
      {"decoder.up_blocks.0.resnets.2.norm2.bias", {512}},
      {"decoder.up_blocks.0.upsamplers.0.conv.weight", {512, 512, 3, 3}},
      {"decoder.up_blocks.2.resnets.0.conv1.weight", {256, 512, 3, 3}},
      {"decoder.up_blocks.2.resnets.0.conv_shortcut.weight", {256, 512, 1, 1}},
      {"decoder.up_blocks.2.upsamplers.0.conv.weight", {256, 256, 3, 3}},
      {"decoder.up_blocks.3.resnets.0.conv_shortcut.weight", {128, 256, 1, 1}},
      {"decoder.up_blocks.3.resnets.2.conv2.weight", {128, 128, 3, 3}},
      {"decoder.conv_norm_out.weight", {128}},
      {"decoder.conv_out.weight", {3, 128, 3, 3}},
      {"decoder.conv_out.bias", {3}},
  };
  for (auto const& [n, s] : expect) {
    INFO(n);
    REQUIRE(params.count(n) == 1);
    CHECK(params.at(n) == s);
  }
  // Absent in diffusers' decoder: no time projections, no upsampler in the last block, no shortcut
  // where widths match.
  for (auto const& n : {"decoder.up_blocks.3.upsamplers.0.conv.weight", "decoder.up_blocks.0.resnets.0.conv_shortcut.weight",
                        "decoder.mid_block.resnets.0.time_emb_proj.weight", "decoder.up_blocks.1.resnets.0.conv_shortcut.weight"}) {
    INFO(n);
    CHECK(params.count(n) == 0);
  }
}

TEST_CASE("Image decoders reject bad folders with the documented errors", "[vae]") {
  Cpu be{{.threads = 1}};
  fdtest::TempDir tmp;
  std::string msg;

  SECTION("missing tensor") {
    copy_model(be, fixture("vae_tiny"), tmp / "m", [](auto& ts) {
      std::erase_if(ts, [](auto const& p) { return p.first == "decoder.up_blocks.1.resnets.2.conv2.bias"; });
    });
    CHECK(error_of([&] { AutoencoderKL<Cpu>::load(be, tmp / "m"); }, msg) == fd::Errc::kMissingTensor);
    CHECK(msg.find("decoder.up_blocks.1.resnets.2.conv2.bias") != std::string::npos);
  }
  SECTION("missing attention tensor names the legacy alias too") {
    copy_model(be, fixture("vae_tiny"), tmp / "m", [](auto& ts) {
      std::erase_if(ts, [](auto const& p) { return p.first == "decoder.mid_block.attentions.0.to_k.weight"; });
    });
    CHECK(error_of([&] { AutoencoderKL<Cpu>::load(be, tmp / "m"); }, msg) == fd::Errc::kMissingTensor);
    CHECK(msg.find("decoder.mid_block.attentions.0.key.weight") != std::string::npos);
  }
  SECTION("wrong shape") {
    copy_model(be, fixture("vae_tiny"), tmp / "m", [&](auto& ts) {
      for (auto& [n, t] : ts) {
        if (n == "post_quant_conv.weight") t = T::zeros(be, {4, 4, 3, 3});
      }
    });
    CHECK(error_of([&] { AutoencoderKL<Cpu>::load(be, tmp / "m"); }, msg) == fd::Errc::kShapeMismatch);
    CHECK(msg.find("post_quant_conv.weight") != std::string::npos);
  }
  SECTION("tensor nothing uses") {
    copy_model(be, fixture("taesd_tiny"), tmp / "m", [&](auto& ts) { ts.emplace_back("decoder.layers.19.weight", T::zeros(be, {3})); });
    CHECK(error_of([&] { AutoencoderTiny<Cpu>::load(be, tmp / "m"); }, msg) == fd::Errc::kUnexpectedTensor);
    CHECK(msg.find("decoder.layers.19.weight") != std::string::npos);
  }
  SECTION("both the new and the legacy attention name") {
    copy_model(be, fixture("vae_tiny"), tmp / "m", [&](auto& ts) {
      ts.emplace_back("decoder.mid_block.attentions.0.query.bias", T::zeros(be, {64}));
    });
    CHECK(error_of([&] { AutoencoderKL<Cpu>::load(be, tmp / "m"); }, msg) == fd::Errc::kUnexpectedTensor);
    CHECK(msg.find("query.bias") != std::string::npos);
  }
  SECTION("unknown class") {
    copy_model(be, fixture("vae_tiny"), tmp / "m", [](auto&) {});
    auto j = read_json(tmp / "m/config.json");
    j["_class_name"] = "VQModel";
    write_json(tmp / "m/config.json", j);
    CHECK(error_of([&] { ImageDecoder<Cpu>::load(be, tmp / "m"); }, msg) == fd::Errc::kConfig);
    CHECK(msg.find("VQModel") != std::string::npos);
    CHECK(msg.find("config.json") != std::string::npos);
    CHECK(error_of([&] { AutoencoderKL<Cpu>::load(be, tmp / "m"); }, msg) == fd::Errc::kConfig);
  }
  SECTION("unknown config values") {
    auto const base = read_json(fixture("vae_tiny/config.json"));
    auto bad = [&](char const* key, nlohmann::json value) {
      auto j = base;
      j[key] = value;
      return error_of([&] { fd::models::AutoencoderKLConfig::from_json(j, "vae/config.json"); }, msg);
    };
    CHECK(bad("up_block_types", {"UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "AttnUpDecoderBlock2D"}) ==
          fd::Errc::kConfig);
    CHECK(msg.find("AttnUpDecoderBlock2D") != std::string::npos);
    CHECK(bad("act_fn", "gelu") == fd::Errc::kConfig);
    CHECK(msg.find("act_fn") != std::string::npos);
    CHECK(bad("norm_num_groups", 12) == fd::Errc::kConfig);
    CHECK(bad("latents_mean", {0.0, 0.0, 0.0, 0.0}) == fd::Errc::kConfig);
    CHECK(bad("some_new_option", 3) == fd::Errc::kConfig);
    CHECK(msg.find("some_new_option") != std::string::npos);

    auto tiny = read_json(fixture("taesd_tiny/config.json"));
    tiny["act_fn"] = "silu";
    CHECK(error_of([&] { fd::models::AutoencoderTinyConfig::from_json(tiny, "taesd/config.json"); }, msg) ==
          fd::Errc::kConfig);
    CHECK(msg.find("act_fn") != std::string::npos);
  }
  SECTION("latents of the wrong shape") {
    auto vae = AutoencoderKL<Cpu>::load(be, fixture("vae_tiny"));
    CHECK(error_of([&] { vae.decode(T::zeros(be, {1, 3, 8, 8})); }, msg) == fd::Errc::kShapeMismatch);
    CHECK(error_of([&] { vae.decode_tiled(T::zeros(be, {1, 4, 8, 8}), {.tile_latent = 8, .overlap_latent = 8}); },
                   msg) == fd::Errc::kInvalidArgument);
  }
}

TEST_CASE("Tile plans cover the latents evenly with at least the requested overlap", "[vae]") {
  using fd::models::plan_tile_axis;
  TileOptions const opt{.tile_latent = 64, .overlap_latent = 16};
  CHECK(plan_tile_axis(64, opt).starts == std::vector<std::int64_t>{0});
  CHECK(plan_tile_axis(40, opt).length == 40);
  // 1024x1024 SD image: 3 tiles of 54 overlapping by 17 and 16 (1.56x the pixels, as diffusers' loop).
  CHECK(plan_tile_axis(128, opt).starts == std::vector<std::int64_t>{0, 37, 74});
  CHECK(plan_tile_axis(128, opt).length == 54);
  for (int o : {0, 3, 16, 40}) {
    TileOptions const op{.tile_latent = 64, .overlap_latent = o};
    for (std::int64_t extent = 1; extent <= 300; ++extent) {
      auto const a = plan_tile_axis(extent, op);
      INFO("extent " << extent << ", overlap " << o);
      REQUIRE(!a.starts.empty());
      CHECK(a.starts.front() == 0);
      CHECK(a.starts.back() + a.length == extent);
      CHECK(a.length <= 64);
      CHECK((a.starts.size() == 1) == (extent <= 64));
      for (std::size_t k = 1; k < a.starts.size(); ++k) {
        std::int64_t const overlap = a.starts[k - 1] + a.length - a.starts[k];
        CHECK(overlap >= o);
        CHECK(overlap <= o + 1);
      }
    }
  }
}

namespace {

/// Mean |x[.., col] - x[.., col-1]| over rows and channels, for every column; and the same for rows.
std::vector<double> column_jumps(std::vector<float> const& v, std::int64_t planes, std::int64_t h, std::int64_t w) {
  std::vector<double> j(static_cast<std::size_t>(w), 0.0);
  for (std::int64_t p = 0; p < planes; ++p) {
    for (std::int64_t y = 0; y < h; ++y) {
      for (std::int64_t x = 1; x < w; ++x) {
        std::size_t const i = static_cast<std::size_t>((p * h + y) * w + x);
        j[static_cast<std::size_t>(x)] += std::fabs(v[i] - v[i - 1]) / static_cast<double>(planes * h);
      }
    }
  }
  return j;
}

/// Seam score: a seam is a column where the tiled image jumps more than the image itself does there.
/// For each column x, the mean jump |img[x] - img[x-1]| (over rows and channels) of the tiled decode is
/// divided by the same for the untiled decode; the score is the largest ratio over all columns.
/// Seamless blending keeps it near 1 (the texture of the reference); pasted tiles spike at their edges.
double column_seam_score(Cpu const& be, T const& tiled, T const& untiled) {
  std::int64_t const planes = tiled.dim(0) * tiled.dim(1), h = tiled.dim(2), w = tiled.dim(3);
  auto const jt = column_jumps(tiled.to_vector_f32(be), planes, h, w);
  auto const ju = column_jumps(untiled.to_vector_f32(be), planes, h, w);
  double worst = 0;
  for (std::int64_t x = 1; x < w; ++x) {
    worst = std::max(worst, jt[static_cast<std::size_t>(x)] / ju[static_cast<std::size_t>(x)]);
  }
  return worst;
}

/// column_seam_score over columns and over rows.
double seam_score(Cpu const& be, T const& tiled, T const& untiled) {
  auto rows = [&](T const& t) { return t.permute({0, 1, 3, 2}).contiguous(be); };
  return std::max(column_seam_score(be, tiled, untiled), column_seam_score(be, rows(tiled), rows(untiled)));
}

/// What a decoder without blending would do: non-overlapping tiles pasted side by side.
template <class M>
T decode_abutting(Cpu const& be, M const& m, T const& latents, std::int64_t tile) {
  std::int64_t const f = m.scale_factor();
  T out = T::zeros(be, {latents.dim(0), 3, latents.dim(2) * f, latents.dim(3) * f});
  for (std::int64_t y = 0; y < latents.dim(2); y += tile) {
    for (std::int64_t x = 0; x < latents.dim(3); x += tile) {
      T const img = m.decode(latents.slice(2, y, y + tile).slice(3, x, x + tile).contiguous(be));
      composite_tile_(be, out, img, y * f, x * f, 0, 0);
    }
  }
  return out;
}

}  // namespace

TEST_CASE("Tiled decoding: exact with one tile, seamless and close with several", "[vae][tiling]") {
  Cpu be{{.threads = 2}};
  auto vae = AutoencoderKL<Cpu>::load(be, fixture("vae_tiny"));
  auto taesd = AutoencoderTiny<Cpu>::load(be, fixture("taesd_tiny"));

  SECTION("one tile covering the latents is the untiled decode, bit for bit") {
    auto io = fd::io::SafeTensorsFile::open(fixture("vae_tiny/vae_tiny_io.safetensors"));
    T const latents = io.load(be, "latents");
    CHECK(vae.decode_tiled(latents).to_vector_f32(be) == vae.decode(latents).to_vector_f32(be));
    CHECK(vae.decode_tiled(latents, {.tile_latent = 8, .overlap_latent = 2}).to_vector_f32(be) ==
          vae.decode(latents).to_vector_f32(be));
    CHECK(taesd.decode_tiled(latents).to_vector_f32(be) == taesd.decode(latents).to_vector_f32(be));
  }

  SECTION("several tiles") {
    // 1 x 4 x 24 x 32 latents (192 x 256 image) in tiles of 16 with overlap 8: 2 x 3 tiles, so there are
    // horizontal, vertical and four-way overlaps. Latent scale as the fixture's (sampler output ~ N(0,1)).
    T const latents = random_latents(be, {1, 4, 32, 48}, 7, 1.0f);
    TileOptions const opt{.tile_latent = 24, .overlap_latent = 8};
    T const full = vae.decode(latents);
    T const tiled = vae.decode_tiled(latents, opt);
    REQUIRE(tiled.shape() == full.shape());
    double const rel = fdtest::rel_to_max(be, tiled, full);
    double const ratio = seam_score(be, tiled, full);

    // The no-blend decoder this test must reject: same tile size, tiles side by side.
    T const naive = decode_abutting(be, vae, latents, 16);
    double const naive_rel = fdtest::rel_to_max(be, naive, full);
    double const naive_ratio = seam_score(be, naive, full);

    T const ttiled = taesd.decode_tiled(latents, opt);
    T const tfull = taesd.decode(latents);
    double const trel = fdtest::rel_to_max(be, ttiled, tfull);
    double const tratio = seam_score(be, ttiled, tfull);
    T const tnaive = decode_abutting(be, taesd, latents, 16);
    double const tnaive_ratio = seam_score(be, tnaive, tfull);
    std::printf("tiled vs untiled (tile 24, overlap 8): vae rel %.3e, seam score %.2f (no blending: rel %.3e, "
                "seam score %.2f); taesd rel %.3e, seam score %.2f (no blending: %.2f)\n",
                rel, ratio, naive_rel, naive_ratio, trel, tratio, tnaive_ratio);
    // Per-tile GroupNorm statistics move a random-weight VAE's tiles by ~10 %; the untiled texture is
    // kept everywhere (seam score ~1.08), while pasted tiles jump at their edges (~1.4 and ~2.4).
    CHECK(rel < 0.2);
    CHECK(ratio < 1.2);
    CHECK(naive_ratio > 1.3);
    CHECK(trel < 0.25);
    CHECK(tratio < 1.2);
    CHECK(tnaive_ratio > 1.3);

    // TAESD has no normalisation: with an overlap wider than the zero-padding's reach into a tile,
    // tiles agree with the full decode up to the faded-out edges.
    T const twide = taesd.decode_tiled(latents, {.tile_latent = 32, .overlap_latent = 24});
    double const twide_rel = fdtest::rel_to_max(be, twide, tfull);
    std::printf("taesd tile 32, overlap 24: rel %.3e\n", twide_rel);
    CHECK(twide_rel < 0.05);
  }
}
