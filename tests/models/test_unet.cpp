// UNet2DConditionModel: parity with the golden fixture unet_tiny_sd (diffusers 0.23, float32) for the
// full forward, the encoder/decoder split and FasterDiffusion's parallel decoder call, plus the
// method's self-checks and the loader's errors.

#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/compare.hpp"
#include "fd/backend/cpu/ops.hpp"
#include "fd/io/checkpoint.hpp"
#include "fd/io/safetensors.hpp"
#include "fd/models/unet/unet.hpp"

using B = fd::backend::Cpu;
using T = fd::Tensor<B>;
using UNet = fd::models::UNet2DCondition<B>;
namespace fs = std::filesystem;

namespace {

std::string unet_dir() { return fdtest::fixtures_dir() + "/unet_tiny_sd"; }

struct Fixture {
  B be{{.threads = 2}};
  UNet unet = UNet::load(be, unet_dir());
  fd::io::SafeTensorsFile io = fd::io::SafeTensorsFile::open(unet_dir() + "/unet_tiny_sd_io.safetensors");
  T ref(std::string const& n) const { return io.load(be, n); }
  float scalar(std::string const& n) const { return ref(n).to_vector_f32(be)[0]; }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

// Float32 parity lands near 1e-6 (the fixture's own float32-vs-float64 gap); 1e-5 leaves room for
// summation order and still catches a wrong GroupNorm eps (~1.5e-5).
constexpr double kTol = 1e-5;

void check_close(B const& be, std::string const& what, T const& got, T const& want, double tol = kTol) {
  double const e = fdtest::rel_to_max(be, got, want);
  std::printf("  unet_tiny_sd %-14s rel_to_max %.2e\n", what.c_str(), e);
  INFO(what << ": rel_to_max " << e);
  CHECK(e <= tol);
}

// Writes a copy of unet_tiny_sd whose tensors pass through `edit` into dir (single file).
template <class Edit>
void write_variant(fs::path const& dir, Edit edit, std::string const& file = "diffusion_pytorch_model.safetensors",
                   fd::DType dtype = fd::DType::kF32) {
  B be{{.threads = 1}};
  fs::create_directories(dir);
  fs::copy_file(unet_dir() + "/config.json", dir / "config.json", fs::copy_options::overwrite_existing);
  auto ck = fd::io::Checkpoint::open_model_dir(unet_dir());
  std::vector<std::pair<std::string, T>> tensors;
  for (auto const& n : ck.names()) tensors.emplace_back(n, ck.load(be, n, dtype));
  edit(tensors);
  fd::io::save_safetensors(be, dir / file, tensors);
}

fs::path temp_dir(std::string const& name) {
  fs::path p = fs::temp_directory_path() / ("fd_test_unet_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

fd::Errc load_error(fs::path const& dir, std::string& message) {
  B be{{.threads = 1}};
  try {
    UNet::load(be, dir);
  } catch (fd::error const& e) {
    message = e.what();
    return e.code();
  }
  message.clear();
  return fd::Errc::kIo;  // unreachable in the tests below: they all expect a throw
}

}  // namespace

TEST_CASE("unet_tiny_sd: encoder outputs match the fixture", "[models][unet][fixture]") {
  auto& f = fixture();
  float const t = f.scalar("timestep");
  auto feats = f.unet.encode(f.ref("sample"), {&t, 1}, f.ref("encoder_hidden_states"));
  check_close(f.be, "enc.temb", feats.temb, f.ref("enc.temb"));
  REQUIRE(feats.skips.size() == 12);
  for (std::size_t i = 0; i < feats.skips.size(); ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "enc.skip.%02zu", i);
    check_close(f.be, name, feats.skips[i], f.ref(name));
  }
  check_close(f.be, "enc.mid", feats.mid, f.ref("enc.mid"));
}

TEST_CASE("unet_tiny_sd: forward, decoder-only and parallel decoder match the fixture", "[models][unet][fixture]") {
  auto& f = fixture();
  float const t = f.scalar("timestep");
  float const td = f.scalar("decoder_timestep");
  T const x = f.ref("sample"), ctx = f.ref("encoder_hidden_states");
  check_close(f.be, "out", f.unet.forward(x, {&t, 1}, ctx), f.ref("out"));
  auto feats = f.unet.encode(x, {&t, 1}, ctx);
  check_close(f.be, "dec.out", f.unet.decode(feats, {&td, 1}, ctx), f.ref("dec.out"));
  check_close(f.be, "full_tdec.out", f.unet.forward(x, {&td, 1}, ctx), f.ref("full_tdec.out"));
  auto const ts = f.ref("fdpar.timesteps").to_vector_f32(f.be);
  T par = f.unet.decoder()(feats, ts, ctx);
  check_close(f.be, "fdpar.out", par, f.ref("fdpar.out"));
  CHECK(f.unet.embed_timesteps(std::vector<float>{td, td}).shape() == fd::Shape{2, 128});
  check_close(f.be, "dec.temb", f.unet.embed_timesteps(std::vector<float>{td, td}), f.ref("dec.temb"));
}

TEST_CASE("unet: a parallel decoder slot equals a single-step decode (FasterDiffusion self-check 3)",
          "[models][unet]") {
  auto& f = fixture();
  float const t = 801;
  T const x = f.ref("sample"), ctx = f.ref("encoder_hidden_states");
  auto feats = f.unet.encode(x, {&t, 1}, ctx);
  std::vector<float> const ts{801, 781, 761, 741};
  T par = f.unet.decode(feats, ts, ctx);  // [uncond x4, cond x4]
  REQUIRE(par.shape() == fd::Shape{8, 4, 16, 16});
  for (std::size_t s = 0; s < ts.size(); ++s) {
    T single = f.unet.decode(feats, {&ts[s], 1}, ctx);  // [uncond, cond] at ts[s]
    auto const si = static_cast<std::int64_t>(s);
    CHECK(fdtest::rel_to_max(f.be, par.slice(0, si, si + 1).contiguous(f.be), single.slice(0, 0, 1).contiguous(f.be)) <= 1e-6);
    CHECK(fdtest::rel_to_max(f.be, par.slice(0, 4 + si, 5 + si).contiguous(f.be), single.slice(0, 1, 2).contiguous(f.be)) <= 1e-6);
  }
  // kSingle layout: the whole cached batch tiled per step.
  T single_layout = f.unet.decode(feats, ts, ctx, fd::models::DecoderLayout::kSingle);
  T at_761 = f.unet.decode(feats, {&ts[2], 1}, ctx);
  CHECK(fdtest::rel_to_max(f.be, single_layout.slice(0, 4, 6).contiguous(f.be), at_761) <= 1e-6);
}

TEST_CASE("unet: per-sample timesteps equal separate forwards", "[models][unet]") {
  auto& f = fixture();
  T const x = f.ref("sample"), ctx = f.ref("encoder_hidden_states");
  std::vector<float> const t2{801, 761};
  T both = f.unet.forward(x, t2, ctx);
  T a = f.unet.forward(x, {&t2[0], 1}, ctx);
  T b = f.unet.forward(x, {&t2[1], 1}, ctx);
  CHECK(fdtest::rel_to_max(f.be, both.slice(0, 0, 1).contiguous(f.be), a.slice(0, 0, 1).contiguous(f.be)) <= 1e-6);
  CHECK(fdtest::rel_to_max(f.be, both.slice(0, 1, 2).contiguous(f.be), b.slice(0, 1, 2).contiguous(f.be)) <= 1e-6);
  std::vector<float> const bad{1, 2, 3};
  CHECK_THROWS_AS(f.unet.forward(x, bad, ctx), fd::error);
}

TEST_CASE("unet: sizes that are not multiples of 8 forward the upsample size", "[models][unet]") {
  auto& f = fixture();
  std::vector<float> v(2 * 4 * 15 * 13);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((i * 37) % 101) / 50.0f - 1.0f;
  T const x = T::from_host(f.be, {2, 4, 15, 13}, v);
  float const t = 500;
  auto feats = f.unet.encode(x, {&t, 1}, f.ref("encoder_hidden_states"));
  CHECK(feats.skips[3].shape() == fd::Shape{2, 32, 8, 7});
  CHECK(feats.skips[9].shape() == fd::Shape{2, 64, 2, 2});
  T y = f.unet.forward(x, {&t, 1}, f.ref("encoder_hidden_states"));
  CHECK(y.shape() == fd::Shape{2, 4, 15, 13});
  for (float e : y.to_vector_f32(f.be)) REQUIRE(std::isfinite(e));
  // A 16x16 crop-free check of the same path: an input that is a multiple of 8 gives the plain 2x result.
  T y16 = f.unet.forward(f.ref("sample"), {&t, 1}, f.ref("encoder_hidden_states"));
  CHECK(y16.shape() == fd::Shape{2, 4, 16, 16});
}

TEST_CASE("unet: ControlNet residual hooks reproduce the controlled forward", "[models][unet][fixture]") {
  auto& f = fixture();
  auto io = fd::io::SafeTensorsFile::open(fdtest::fixtures_dir() + "/controlnet_tiny/controlnet_tiny_io.safetensors");
  T const x = io.load(f.be, "sample"), ctx = io.load(f.be, "encoder_hidden_states");
  float const t = io.load(f.be, "timestep").to_vector_f32(f.be)[0];
  for (std::string prefix : {"", "scale05.", "guess."}) {
    fd::models::ControlResiduals<B> cr;
    for (int i = 0; i < 12; ++i) {
      char name[48];
      std::snprintf(name, sizeof name, "%scn.down.%02d", prefix.c_str(), i);
      cr.down.push_back(io.load(f.be, name));
    }
    cr.mid = io.load(f.be, prefix + "cn.mid");
    check_close(f.be, prefix + "cn out", f.unet.forward(x, {&t, 1}, ctx, &cr), io.load(f.be, prefix + "out"));
  }
  check_close(f.be, "no cn out", f.unet.forward(x, {&t, 1}, ctx), io.load(f.be, "out_without_controlnet"));
  fd::models::ControlResiduals<B> wrong;
  wrong.down.push_back(io.load(f.be, "cn.down.00"));
  CHECK_THROWS_AS(f.unet.forward(x, {&t, 1}, ctx, &wrong), fd::error);
}

TEST_CASE("unet: fp16 and bf16 weight files load (variant fallback)", "[models][unet]") {
  auto& f = fixture();
  float const t = f.scalar("timestep");
  for (auto dtype : {fd::DType::kF16, fd::DType::kBF16}) {
    fs::path const dir = temp_dir(dtype == fd::DType::kF16 ? "fp16" : "bf16");
    write_variant(dir, [](auto&) {}, dtype == fd::DType::kF16 ? "diffusion_pytorch_model.fp16.safetensors"
                                                              : "diffusion_pytorch_model.safetensors",
                  dtype);
    UNet m = UNet::load(f.be, dir);
    double const e = fdtest::rel_to_max(f.be, m.forward(f.ref("sample"), {&t, 1}, f.ref("encoder_hidden_states")),
                                        f.ref("out"));
    INFO("rounded weights rel_to_max " << e);
    CHECK(e < (dtype == fd::DType::kF16 ? 5e-3 : 5e-2));
    CHECK(e > 0);  // the weights really were rounded
    fs::remove_all(dir);
  }
}

TEST_CASE("unet loader: missing, extra and mis-shaped tensors are named", "[models][unet][errors]") {
  std::string msg;
  fs::path const dir = temp_dir("bad_ckpt");

  write_variant(dir, [](auto& ts) {
    std::erase_if(ts, [](auto const& p) { return p.first == "up_blocks.2.attentions.1.transformer_blocks.0.attn2.to_k.weight"; });
  });
  CHECK(load_error(dir, msg) == fd::Errc::kMissingTensor);
  CHECK_THAT(msg, Catch::Contains("up_blocks.2.attentions.1.transformer_blocks.0.attn2.to_k.weight"));
  CHECK_THAT(msg, Catch::Contains("diffusion_pytorch_model.safetensors"));

  write_variant(dir, [](auto& ts) {
    B be{{.threads = 1}};
    ts.emplace_back("down_blocks.0.extra.weight", T::zeros(be, {3}));
  });
  CHECK(load_error(dir, msg) == fd::Errc::kUnexpectedTensor);
  CHECK_THAT(msg, Catch::Contains("down_blocks.0.extra.weight"));

  write_variant(dir, [](auto& ts) {
    for (auto& [n, t] : ts) {
      if (n == "mid_block.resnets.1.conv2.weight") t = t.reshape({64, 64, 9, 1});
    }
  });
  CHECK(load_error(dir, msg) == fd::Errc::kShapeMismatch);
  CHECK_THAT(msg, Catch::Contains("mid_block.resnets.1.conv2.weight"));
  CHECK_THAT(msg, Catch::Contains("[64, 64, 3, 3]"));

  write_variant(dir, [](auto& ts) {
    B be{{.threads = 1}};
    for (auto& [n, t] : ts) {
      if (n == "conv_in.bias") t = T::zeros(be, t.shape(), fd::DType::kI32);
    }
  });
  CHECK(load_error(dir, msg) == fd::Errc::kDTypeMismatch);
  CHECK_THAT(msg, Catch::Contains("conv_in.bias"));
  fs::remove_all(dir);
}

TEST_CASE("unet config: unknown block types, fields and values are rejected with the field named",
          "[models][unet][errors]") {
  std::ifstream in(unet_dir() + "/config.json");
  nlohmann::json const base = nlohmann::json::parse(in);
  auto expect_config_error = [&](auto mutate, std::string const& needle) {
    nlohmann::json j = base;
    mutate(j);
    try {
      fd::models::UNetConfig::from_json(j, "test/config.json");
      FAIL("no error for " << needle);
    } catch (fd::error const& e) {
      CHECK(e.code() == fd::Errc::kConfig);
      CHECK_THAT(std::string(e.what()), Catch::Contains(needle) && Catch::Contains("test/config.json"));
    }
  };
  expect_config_error([](auto& j) { j["down_block_types"][1] = "SimpleCrossAttnDownBlock2D"; }, "SimpleCrossAttnDownBlock2D");
  expect_config_error([](auto& j) { j["up_block_types"][0] = "AttnUpBlock2D"; }, "up_block_types");
  expect_config_error([](auto& j) { j["mid_block_type"] = "UNetMidBlock2DSimpleCrossAttn"; }, "mid_block_type");
  expect_config_error([](auto& j) { j["act_fn"] = "mish"; }, "act_fn");
  expect_config_error([](auto& j) { j["layers_per_block"] = "two"; }, "layers_per_block");
  expect_config_error([](auto& j) { j["attention_head_dim"] = nlohmann::json::array({8, 8}); }, "attention_head_dim");
  expect_config_error([](auto& j) { j["addition_embed_type"] = "text"; }, "addition_embed_type");
  expect_config_error([](auto& j) { j["class_embed_type"] = "timestep"; }, "class_embed_type");
  expect_config_error([](auto& j) { j["num_attention_heads"] = 8; }, "num_attention_heads");
  expect_config_error([](auto& j) { j["time_embedding_type"] = "fourier"; }, "time_embedding_type");
  expect_config_error([](auto& j) { j["resnet_time_scale_shift"] = "film"; }, "resnet_time_scale_shift");
  expect_config_error([](auto& j) { j["some_future_option"] = 3; }, "some_future_option");
  expect_config_error([](auto& j) { j["norm_num_groups"] = 7; }, "norm_num_groups");
  expect_config_error([](auto& j) { j["_class_name"] = "UNet3DConditionModel"; }, "_class_name");

  // Accepted spellings: int-or-list fields, swish, unknown fields left at null/false.
  nlohmann::json j = base;
  j["attention_head_dim"] = nlohmann::json::array({8, 8, 8, 8});
  j["act_fn"] = "swish";
  j["future_flag"] = false;
  auto cfg = fd::models::UNetConfig::from_json(j, "ok.json");
  CHECK(cfg.num_heads == std::vector<int>{8, 8, 8, 8});
  CHECK(cfg.num_skips() == 12);
}

TEST_CASE("unet config: SD 1.5 and SD 2.1 presets build the real parameter count", "[models][unet]") {
  struct Count {
    std::size_t params = 0, tensors = 0;
  };
  // Counting through visit() without allocating 3.4 GB: a null backend would be ideal, but shapes come
  // from construction; check the structure on the real config with the cheap visitor instead.
  B be{{.threads = 1}};
  UNet sd15(be, fd::models::UNetConfig::sd15());
  Count c;
  sd15.visit([&](std::string const&, T& t) {
    c.params += static_cast<std::size_t>(t.numel());
    ++c.tensors;
  });
  CHECK(c.params == 859520964u);  // architectures.md §2.4
  CHECK(c.tensors == 686u);
}
