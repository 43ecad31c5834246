// ControlNetModel against the golden fixture controlnet_tiny (diffusers 0.23, float32): every residual,
// the controlled UNet output, conditioning scale 0.5 and guess mode; config and loading errors.

#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/compare.hpp"
#include "common/temp_dir.hpp"
#include "fd/backend/cpu/ops.hpp"
#include "fd/io/safetensors.hpp"
#include "fd/models/controlnet/controlnet.hpp"
#include "fd/models/unet/unet.hpp"

using B = fd::backend::Cpu;
using T = fd::Tensor<B>;
using ControlNet = fd::models::ControlNetModel<B>;
namespace fs = std::filesystem;

namespace {

std::string cn_dir() { return fdtest::fixtures_dir() + "/controlnet_tiny"; }

struct Fixture {
  B be{{.threads = 2}};
  ControlNet cn = ControlNet::load(be, cn_dir());
  fd::models::UNet2DCondition<B> unet = fd::models::UNet2DCondition<B>::load(be, fdtest::fixtures_dir() + "/unet_tiny_sd");
  fd::io::SafeTensorsFile io = fd::io::SafeTensorsFile::open(cn_dir() + "/controlnet_tiny_io.safetensors");
  T ref(std::string const& n) const { return io.load(be, n); }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

double check_close(B const& be, std::string const& what, T const& got, T const& want, double tol = 1e-5) {
  double const e = fdtest::rel_to_max(be, got, want);
  INFO(what << ": rel_to_max " << e);
  CHECK(e <= tol);
  return e;
}

}  // namespace

TEST_CASE("controlnet: controlnet_tiny residuals and the controlled UNet match diffusers", "[controlnet][fixture]") {
  auto& f = fixture();
  float const t = f.ref("timestep").to_vector_f32(f.be)[0];
  T const x = f.ref("sample"), ctx = f.ref("encoder_hidden_states"), cond = f.ref("controlnet_cond");
  check_close(f.be, "cn.cond_embedding", f.cn.embed_condition(cond), f.ref("cn.cond_embedding"));
  struct Variant {
    char const* prefix;
    float scale;
    bool guess;
  };
  for (Variant v : {Variant{"", 1.0f, false}, Variant{"scale05.", 0.5f, false}, Variant{"guess.", 1.0f, true}}) {
    std::string const p = v.prefix;
    auto res = f.cn.forward(x, {&t, 1}, ctx, cond, v.scale, v.guess);
    REQUIRE(res.down.size() == 12);
    double worst = 0;
    for (std::size_t i = 0; i < res.down.size(); ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "cn.down.%02zu", i);
      worst = std::max(worst, check_close(f.be, p + name, res.down[i], f.ref(p + name)));
    }
    worst = std::max(worst, check_close(f.be, p + "cn.mid", res.mid, f.ref(p + "cn.mid")));
    double const out = check_close(f.be, p + "out", f.unet.forward(x, {&t, 1}, ctx, &res), f.ref(p + "out"));
    std::printf("  controlnet_tiny %-9s residuals worst rel_to_max %.2e, controlled UNet out %.2e\n",
                v.prefix[0] ? v.prefix : "(scale 1)", worst, out);
  }
  check_close(f.be, "out_without_controlnet", f.unet.forward(x, {&t, 1}, ctx), f.ref("out_without_controlnet"));
  auto const want = f.ref("guess.scales").to_vector_f32(f.be);
  auto const got = ControlNet::guess_scales(13, 1.0f);
  REQUIRE(want.size() == got.size());
  for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == Approx(want[i]).epsilon(1e-6));
}

TEST_CASE("controlnet: bad inputs and configs give clear errors", "[controlnet][errors]") {
  auto& f = fixture();
  float const t = 601.0f;
  T const x = f.ref("sample"), ctx = f.ref("encoder_hidden_states"), cond = f.ref("controlnet_cond");
  CHECK_THROWS_WITH(f.cn.forward(x, {&t, 1}, ctx, cond.slice(2, 0, 64).contiguous(f.be)),
                    Catch::Contains("controlnet_cond must be [2, 3, 128, 128] (8 x the latent"));
  CHECK_THROWS_WITH(f.cn.forward(x, {&t, 1}, ctx.slice(0, 0, 1).contiguous(f.be), cond),
                    Catch::Contains("encoder_hidden_states must be [2, L, 32]"));
  CHECK_THROWS_WITH(f.cn.embed_condition(T::zeros(f.be, {1, 1, 128, 128})), Catch::Contains("[N, 3, H, W]"));

  nlohmann::json j;
  std::ifstream(cn_dir() + "/config.json") >> j;
  auto config_error = [&](nlohmann::json const& cfg) {
    try {
      (void)fd::models::ControlNetConfig::from_json(cfg, "cn/config.json");
    } catch (fd::error const& e) {
      CHECK(e.code() == fd::Errc::kConfig);
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto with = [&](char const* key, nlohmann::json v) {
    nlohmann::json c = j;
    c[key] = std::move(v);
    return c;
  };
  CHECK_THAT(config_error(with("controlnet_conditioning_channel_order", "rbg")),
             Catch::Contains("'controlnet_conditioning_channel_order' = \"rbg\" (known: rgb, bgr)"));
  CHECK_THAT(config_error(with("_class_name", "UNet2DConditionModel")), Catch::Contains("expected \"ControlNetModel\""));
  CHECK_THAT(config_error(with("conditioning_embedding_out_channels", {8, -1})),
             Catch::Contains("conditioning_embedding_out_channels"));
  CHECK_THAT(config_error(with("addition_embed_type", "text_time")), Catch::Contains("addition_embed_type"));
  CHECK_THAT(config_error(with("mystery_option", 3)), Catch::Contains("unknown field 'mystery_option'"));

  // A folder missing one tensor names it.
  fdtest::TempDir dir;
  auto ck = fd::io::Checkpoint::open_model_dir(cn_dir());
  std::vector<std::pair<std::string, T>> tensors;
  for (auto const& n : ck.names()) {
    if (n != "controlnet_down_blocks.7.weight") tensors.emplace_back(n, ck.load(f.be, n, fd::DType::kF32));
  }
  fs::copy_file(cn_dir() + "/config.json", dir.path() / "config.json");
  fd::io::save_safetensors(f.be, dir.path() / "diffusion_pytorch_model.safetensors", tensors);
  CHECK_THROWS_WITH(ControlNet::load(f.be, dir.path()), Catch::Contains("controlnet_down_blocks.7.weight"));
}

TEST_CASE("controlnet: bgr channel order flips the control image", "[controlnet]") {
  auto& f = fixture();
  nlohmann::json j;
  std::ifstream(cn_dir() + "/config.json") >> j;
  j["controlnet_conditioning_channel_order"] = "bgr";
  fdtest::TempDir dir;
  std::ofstream(dir.path() / "config.json") << j.dump();
  auto ck = fd::io::Checkpoint::open_model_dir(cn_dir());
  std::vector<std::pair<std::string, T>> tensors;
  for (auto const& n : ck.names()) tensors.emplace_back(n, ck.load(f.be, n, fd::DType::kF32));
  fd::io::save_safetensors(f.be, dir.path() / "diffusion_pytorch_model.safetensors", tensors);
  auto bgr = ControlNet::load(f.be, dir.path());
  T const cond = f.ref("controlnet_cond");
  // bgr(cond with channels reversed) == rgb(cond)
  T flipped = T::empty(f.be, cond.shape());
  for (std::int64_t c = 0; c < 3; ++c) {
    T dst = flipped.select(1, c);
    cond.select(1, 2 - c).copy_to(f.be, dst);
  }
  check_close(f.be, "bgr embedding", bgr.embed_condition(flipped), f.cn.embed_condition(cond), 0.0);
}
