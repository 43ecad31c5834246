// CLIPTextModel against clip_text_tiny_io (transformers 4.x semantics: causal mask, quick_gelu,
// pooled at the first EOS), the demo model's encoder, SD 1.5's real names and shapes, and bad input.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/compare.hpp"
#include "common/temp_dir.hpp"
#include "fd/fd.hpp"
#include "fd/models/clip/clip_text.hpp"
#include "fd/nn/init.hpp"

namespace {

using B = fd::backend::Cpu;
using T = fd::Tensor<B>;
using Clip = fd::models::ClipTextModel<B>;

std::filesystem::path fixture() { return std::filesystem::path(fdtest::fixtures_dir()) / "clip_text_tiny"; }

std::vector<std::int64_t> ids_of(B const& be, T const& t) {
  std::vector<std::int64_t> out;
  for (float v : t.to_vector_f32(be)) out.push_back(static_cast<std::int64_t>(v));  // ids < 2^24: exact
  return out;
}

}  // namespace

TEST_CASE("clip text encoder matches clip_text_tiny_io", "[clip]") {
  B const be{{.threads = 2}};
  Clip const te = Clip::load(be, fixture());
  auto io = fd::io::SafeTensorsFile::open(fixture() / "clip_text_tiny_io.safetensors");
  std::vector<std::int64_t> const ids = ids_of(be, io.load(be, "input_ids", fd::DType::kI64));
  auto const out = te.forward(ids, 3, true);
  auto check = [&](char const* name, T const& got) {
    double const err = fdtest::rel_to_max(be, got, io.load(be, name));
    INFO(name << " rel_to_max " << err);
    CHECK(err <= 1e-5);
  };
  check("last_hidden_state", out.last_hidden_state);
  check("pooler_output", out.pooler_output);
  REQUIRE(out.hidden_states.size() == 3);
  check("hidden_states.0", out.hidden_states[0]);
  check("hidden_states.1", out.hidden_states[1]);
  check("hidden_states.2", out.hidden_states[2]);
  check("clip_skip_1", te.encode(ids, 3, 1));
  // encode() without clip skip is the last hidden state, bit for bit.
  CHECK(fdtest::rel_to_max(be, te.encode(ids, 3), out.last_hidden_state) == 0.0);
}

TEST_CASE("clip text encoder: the demo model's encoder loads and runs", "[clip]") {
  B const be;
  Clip const te = Clip::load(be, std::filesystem::path(FD_MODELS_DIR) / "tiny-shapes/text_encoder");
  CHECK(te.config().hidden_size == 64);
  std::vector<std::int64_t> ids(77, 49407);
  ids[0] = 49406;
  T const y = te.encode(ids, 1);
  CHECK(y.shape() == fd::Shape{1, 77, 64});
}

TEST_CASE("clip text encoder: SD 1.5's names and shapes, and a save/load round trip at its width", "[clip]") {
  B const be;
  std::map<std::string, fd::Shape> names;
  {
    Clip m(be, fd::models::ClipTextConfig::sd15());
    m.visit([&](std::string const& n, T& t) { names.emplace(n, t.shape()); });
  }
  CHECK(names.size() == 2 + 12 * 16 + 2);
  CHECK(names.at("text_model.embeddings.token_embedding.weight") == fd::Shape{49408, 768});
  CHECK(names.at("text_model.embeddings.position_embedding.weight") == fd::Shape{77, 768});
  CHECK(names.at("text_model.encoder.layers.11.self_attn.k_proj.weight") == fd::Shape{768, 768});
  CHECK(names.at("text_model.encoder.layers.11.self_attn.out_proj.bias") == fd::Shape{768});
  CHECK(names.at("text_model.encoder.layers.0.mlp.fc1.weight") == fd::Shape{3072, 768});
  CHECK(names.at("text_model.encoder.layers.0.mlp.fc2.weight") == fd::Shape{768, 3072});
  CHECK(names.at("text_model.encoder.layers.5.layer_norm2.bias") == fd::Shape{768});
  CHECK(names.at("text_model.final_layer_norm.weight") == fd::Shape{768});
  std::int64_t params = 0;
  for (auto const& [n, s] : names) params += s.numel();
  CHECK(params == 123060480);  // architectures.md §7.2

  // Two layers at SD 1.5's widths (the full model is 490 MB in f32): written under the real names
  // with the position_ids buffer, loaded back, same outputs.
  fd::models::ClipTextConfig cfg = fd::models::ClipTextConfig::sd15();
  cfg.num_hidden_layers = 2;
  Clip src(be, cfg);
  fd::nn::init_random(be, src, 7);
  fdtest::TempDir dir;
  std::vector<std::pair<std::string, T>> tensors;
  src.visit([&](std::string const& n, T& t) { tensors.emplace_back(n, t); });
  std::vector<std::int64_t> pos(77);
  for (int i = 0; i < 77; ++i) pos[static_cast<std::size_t>(i)] = i;
  tensors.emplace_back("text_model.embeddings.position_ids", T::from_host(be, {1, 77}, pos));
  fd::io::save_safetensors(be, dir / "model.safetensors", tensors);
  nlohmann::json j = {{"architectures", {"CLIPTextModel"}}, {"hidden_act", "quick_gelu"}, {"hidden_size", 768},
                      {"intermediate_size", 3072}, {"layer_norm_eps", 1e-5}, {"max_position_embeddings", 77},
                      {"num_attention_heads", 12}, {"num_hidden_layers", 2}, {"vocab_size", 49408},
                      {"projection_dim", 768}, {"torch_dtype", "float32"}};
  std::ofstream(dir / "config.json") << j.dump();
  Clip const back = Clip::load(be, dir.path());
  std::vector<std::int64_t> ids{49406, 320, 1125, 539, 320, 2368, 49407};
  CHECK(fdtest::rel_to_max(be, back.encode(ids, 1), src.encode(ids, 1)) == 0.0);
}

TEST_CASE("clip text encoder: bad configs, weights and ids are clear errors", "[clip][errors]") {
  B const be;
  fdtest::TempDir dir;
  auto copy_fixture = [&](std::string const& name) {
    std::filesystem::path const p = dir / name;
    std::filesystem::create_directories(p);
    std::filesystem::copy_file(fixture() / "config.json", p / "config.json");
    std::filesystem::copy_file(fixture() / "model.safetensors", p / "model.safetensors");
    return p;
  };
  auto patch_config = [](std::filesystem::path const& p, nlohmann::json const& patch) {
    std::ifstream in(p / "config.json");
    nlohmann::json j = nlohmann::json::parse(in);
    j.merge_patch(patch);
    in.close();
    std::ofstream(p / "config.json") << j.dump();
  };
  std::filesystem::path const act = copy_fixture("act");
  patch_config(act, {{"hidden_act", "relu"}});
  CHECK_THROWS_WITH(Clip::load(be, act), Catch::Contains("hidden_act") && Catch::Contains("relu"));
  std::filesystem::path const heads = copy_fixture("heads");
  patch_config(heads, {{"num_attention_heads", 5}});
  CHECK_THROWS_WITH(Clip::load(be, heads), Catch::Contains("not divisible"));
  std::filesystem::path const layers = copy_fixture("layers");
  patch_config(layers, {{"num_hidden_layers", 3}});
  CHECK_THROWS_WITH(Clip::load(be, layers), Catch::Contains("text_model.encoder.layers.2."));
  std::filesystem::path const width = copy_fixture("width");
  patch_config(width, {{"intermediate_size", 65}});
  CHECK_THROWS_WITH(Clip::load(be, width), Catch::Contains("mlp.fc1.weight") && Catch::Contains("[65, 32]"));
  std::filesystem::path const missing = copy_fixture("missing");
  patch_config(missing, {{"vocab_size", nullptr}});
  CHECK_THROWS_WITH(Clip::load(be, missing), Catch::Contains("vocab_size"));

  Clip const te = Clip::load(be, fixture());
  std::vector<std::int64_t> bad(77, 1);
  bad[3] = 49408;
  CHECK_THROWS_WITH(te.encode(bad, 1), Catch::Contains("id 49408 at [0, 3]"));
  std::vector<std::int64_t> const too_long(78, 1);
  CHECK_THROWS_WITH(te.encode(too_long, 1), Catch::Contains("78 tokens"));
  CHECK_THROWS_WITH(te.encode(std::vector<std::int64_t>(77, 1), 1, 2), Catch::Contains("clip_skip 2"));
}

// Not run by default: `fd_tests "[.clip-bench]"`. SD 1.5's text encoder (random weights) on one
// classifier-free-guidance batch of 77 tokens; prints the median of 5 timed forwards after a warmup.
TEST_CASE("SD 1.5 text encoder forward time", "[.clip-bench]") {
  B const be{{.threads = 0}};
  Clip clip(be, fd::models::ClipTextConfig::sd15());
  fd::nn::init_random(be, clip, 1);
  std::vector<std::int64_t> ids(2 * 77, 49407);
  ids[0] = ids[77] = 49406;
  for (std::size_t i = 1; i < 12; ++i) ids[i] = 320 + static_cast<std::int64_t>(i);
  (void)clip.encode(ids, 2);
  std::vector<double> ms;
  for (int r = 0; r < 5; ++r) {
    auto const t0 = std::chrono::steady_clock::now();
    T const y = clip.encode(ids, 2);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  std::printf("sd15 text encoder, batch 2 x 77 tokens, %d threads: median %.1f ms, min %.1f ms over 5 runs\n",
              be.threads(), ms[2], ms[0]);
  CHECK(ms[0] > 0);
}
