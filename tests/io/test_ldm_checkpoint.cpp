// Single-file SD 1.x checkpoints (CompVis LDM names): Checkpoint::view, the name mapping and config
// inference of fd/io/ldm_checkpoint.hpp, and UNet parity through it.
//
// The LDM names used here are written out from the layout rules in this file (ldm_* helpers below),
// independently of the library's forward mapping, so a mistake in one does not hide in the other.

#include "common/compare.hpp"
#include "common/ldm_files.hpp"
#include "common/temp_dir.hpp"
#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "fd/backend/cpu/ops.hpp"
#include "fd/io/checkpoint.hpp"
#include "fd/io/ldm_checkpoint.hpp"
#include "fd/io/safetensors.hpp"
#include "fd/models/unet/unet.hpp"

namespace fs = std::filesystem;
using B = fd::backend::Cpu;
using T = fd::Tensor<B>;
using fd::DType;
using fd::Errc;
using fd::Shape;
using fd::io::Checkpoint;
using fd::io::TensorShapes;
using UNet = fd::models::UNet2DCondition<B>;

namespace {

std::optional<fd::error> catch_fd_error(auto&& f) {
  try {
    f();
  } catch (fd::error const& e) {
    return e;
  }
  return std::nullopt;
}

using fdtest::copy_of;
using fdtest::f32;
using fdtest::fixture;
using fdtest::ldm_unet;
using fdtest::num;
using fdtest::Out;
using fdtest::tiny_ldm_tensors;
using fdtest::write_file;

// Names + shapes of a checkpoint.
std::map<std::string, Shape> shapes_of(Checkpoint const& ck, std::set<std::string> const& skip = {}) {
  std::map<std::string, Shape> m;
  for (auto const& n : ck.names()) {
    if (!skip.contains(n)) m.emplace(n, ck.info(n).shape);
  }
  return m;
}

void check_same_values(B const& be, Checkpoint& mapped, Checkpoint& ref) {
  for (auto const& n : mapped.names()) {
    INFO(n);
    std::vector<float> const a = mapped.load(be, n).to_vector_f32(be);
    std::vector<float> const b = ref.load(be, n).to_vector_f32(be);
    REQUIRE(a == b);
  }
}

nlohmann::json read_json(std::string const& path) {
  std::ifstream f(path);
  return nlohmann::json::parse(f);
}

// ---------------------------------------------------------------------------------------------------
// Every tensor of a real SD 1.5 single file (v1-5-pruned-emaonly layout), names and shapes, written out
// from the LDM module structure (openaimodel.UNetModel, autoencoder, FrozenCLIPEmbedder).

void ldm_resblock(TensorShapes& t, std::string const& p, std::int64_t in, std::int64_t out, std::int64_t temb) {
  t[p + "in_layers.0.weight"] = {in};
  t[p + "in_layers.0.bias"] = {in};
  t[p + "in_layers.2.weight"] = {out, in, 3, 3};
  t[p + "in_layers.2.bias"] = {out};
  t[p + "emb_layers.1.weight"] = {out, temb};
  t[p + "emb_layers.1.bias"] = {out};
  t[p + "out_layers.0.weight"] = {out};
  t[p + "out_layers.0.bias"] = {out};
  t[p + "out_layers.3.weight"] = {out, out, 3, 3};
  t[p + "out_layers.3.bias"] = {out};
  if (in != out) {
    t[p + "skip_connection.weight"] = {out, in, 1, 1};
    t[p + "skip_connection.bias"] = {out};
  }
}

void ldm_spatial_transformer(TensorShapes& t, std::string const& p, std::int64_t c, std::int64_t ctx) {
  t[p + "norm.weight"] = {c};
  t[p + "norm.bias"] = {c};
  t[p + "proj_in.weight"] = {c, c, 1, 1};
  t[p + "proj_in.bias"] = {c};
  t[p + "proj_out.weight"] = {c, c, 1, 1};
  t[p + "proj_out.bias"] = {c};
  std::string const b = p + "transformer_blocks.0.";
  for (std::string a : {"attn1.", "attn2."}) {
    std::int64_t const kv = a == "attn1." ? c : ctx;
    t[b + a + "to_q.weight"] = {c, c};
    t[b + a + "to_k.weight"] = {c, kv};
    t[b + a + "to_v.weight"] = {c, kv};
    t[b + a + "to_out.0.weight"] = {c, c};
    t[b + a + "to_out.0.bias"] = {c};
  }
  t[b + "ff.net.0.proj.weight"] = {8 * c, c};
  t[b + "ff.net.0.proj.bias"] = {8 * c};
  t[b + "ff.net.2.weight"] = {c, 4 * c};
  t[b + "ff.net.2.bias"] = {c};
  for (std::string n : {"norm1.", "norm2.", "norm3."}) {
    t[b + n + "weight"] = {c};
    t[b + n + "bias"] = {c};
  }
}

void sd15_unet(TensorShapes& t, std::int64_t ctx = 768) {
  std::string const P = "model.diffusion_model.";
  std::int64_t const ch[4] = {320, 640, 1280, 1280};
  std::int64_t const temb = 1280;
  t[P + "time_embed.0.weight"] = {temb, 320};
  t[P + "time_embed.0.bias"] = {temb};
  t[P + "time_embed.2.weight"] = {temb, temb};
  t[P + "time_embed.2.bias"] = {temb};
  t[P + "input_blocks.0.0.weight"] = {320, 4, 3, 3};
  t[P + "input_blocks.0.0.bias"] = {320};
  std::vector<std::int64_t> skips{320};
  int idx = 1;
  std::int64_t cur = 320;
  for (int b = 0; b < 4; ++b) {
    for (int l = 0; l < 2; ++l, ++idx) {
      std::string const p = P + "input_blocks." + num(idx) + ".";
      ldm_resblock(t, p + "0.", cur, ch[b], temb);
      cur = ch[b];
      if (b < 3) ldm_spatial_transformer(t, p + "1.", cur, ctx);
      skips.push_back(cur);
    }
    if (b < 3) {
      t[P + "input_blocks." + num(idx) + ".0.op.weight"] = {cur, cur, 3, 3};
      t[P + "input_blocks." + num(idx) + ".0.op.bias"] = {cur};
      skips.push_back(cur);
      ++idx;
    }
  }
  ldm_resblock(t, P + "middle_block.0.", 1280, 1280, temb);
  ldm_spatial_transformer(t, P + "middle_block.1.", 1280, ctx);
  ldm_resblock(t, P + "middle_block.2.", 1280, 1280, temb);
  idx = 0;
  for (int b = 0; b < 4; ++b) {
    std::int64_t const out = ch[3 - b];
    bool const attn = b > 0;
    for (int l = 0; l < 3; ++l, ++idx) {
      std::string const p = P + "output_blocks." + num(idx) + ".";
      std::int64_t const skip = skips.back();
      skips.pop_back();
      ldm_resblock(t, p + "0.", cur + skip, out, temb);
      cur = out;
      if (attn) ldm_spatial_transformer(t, p + "1.", cur, ctx);
      if (l == 2 && b < 3) {
        t[p + (attn ? "2" : "1") + ".conv.weight"] = {cur, cur, 3, 3};
        t[p + (attn ? "2" : "1") + ".conv.bias"] = {cur};
      }
    }
  }
  t[P + "out.0.weight"] = {320};
  t[P + "out.0.bias"] = {320};
  t[P + "out.2.weight"] = {4, 320, 3, 3};
  t[P + "out.2.bias"] = {4};
}

void vae_res(TensorShapes& t, std::string const& p, std::int64_t in, std::int64_t out, bool ldm) {
  t[p + "norm1.weight"] = {in};
  t[p + "norm1.bias"] = {in};
  t[p + "conv1.weight"] = {out, in, 3, 3};
  t[p + "conv1.bias"] = {out};
  t[p + "norm2.weight"] = {out};
  t[p + "norm2.bias"] = {out};
  t[p + "conv2.weight"] = {out, out, 3, 3};
  t[p + "conv2.bias"] = {out};
  if (in != out) {
    std::string const s = ldm ? "nin_shortcut." : "conv_shortcut.";
    t[p + s + "weight"] = {out, in, 1, 1};
    t[p + s + "bias"] = {out};
  }
}

// The SD 1.5 VAE in LDM (ldm = true, with prefix) or diffusers naming.
void sd15_vae(TensorShapes& t, bool ldm) {
  std::string const P = ldm ? "first_stage_model." : "";
  std::int64_t const ch[4] = {128, 256, 512, 512};
  auto mid = [&](std::string const& part) {
    std::string const m = P + part + (ldm ? ".mid." : ".mid_block.");
    vae_res(t, m + (ldm ? "block_1." : "resnets.0."), 512, 512, ldm);
    vae_res(t, m + (ldm ? "block_2." : "resnets.1."), 512, 512, ldm);
    std::string const a = m + (ldm ? "attn_1." : "attentions.0.");
    t[a + (ldm ? "norm.weight" : "group_norm.weight")] = {512};
    t[a + (ldm ? "norm.bias" : "group_norm.bias")] = {512};
    for (auto [l, d] : {std::pair<std::string, std::string>{"q", "to_q"}, {"k", "to_k"}, {"v", "to_v"}, {"proj_out", "to_out.0"}}) {
      if (ldm) {
        t[a + l + ".weight"] = {512, 512, 1, 1};
        t[a + l + ".bias"] = {512};
      } else {
        t[a + d + ".weight"] = {512, 512};
        t[a + d + ".bias"] = {512};
      }
    }
  };
  t[P + "encoder.conv_in.weight"] = {128, 3, 3, 3};
  t[P + "encoder.conv_in.bias"] = {128};
  std::int64_t cur = 128;
  for (int i = 0; i < 4; ++i) {
    std::string const blk = P + "encoder." + (ldm ? "down." : "down_blocks.") + num(i) + ".";
    for (int j = 0; j < 2; ++j) {
      vae_res(t, blk + (ldm ? "block." : "resnets.") + num(j) + ".", cur, ch[i], ldm);
      cur = ch[i];
    }
    if (i < 3) {
      std::string const d = blk + (ldm ? "downsample.conv." : "downsamplers.0.conv.");
      t[d + "weight"] = {cur, cur, 3, 3};
      t[d + "bias"] = {cur};
    }
  }
  mid("encoder");
  t[P + (ldm ? "encoder.norm_out.weight" : "encoder.conv_norm_out.weight")] = {512};
  t[P + (ldm ? "encoder.norm_out.bias" : "encoder.conv_norm_out.bias")] = {512};
  t[P + "encoder.conv_out.weight"] = {8, 512, 3, 3};
  t[P + "encoder.conv_out.bias"] = {8};
  t[P + "quant_conv.weight"] = {8, 8, 1, 1};
  t[P + "quant_conv.bias"] = {8};
  t[P + "post_quant_conv.weight"] = {4, 4, 1, 1};
  t[P + "post_quant_conv.bias"] = {4};
  t[P + "decoder.conv_in.weight"] = {512, 4, 3, 3};
  t[P + "decoder.conv_in.bias"] = {512};
  mid("decoder");
  cur = 512;
  for (int i = 0; i < 4; ++i) {  // diffusers order: lowest resolution first; LDM numbers it 3 - i
    std::int64_t const out = ch[3 - i];
    std::string const blk = P + "decoder." + (ldm ? "up." + num(3 - i) : "up_blocks." + num(i)) + ".";
    for (int j = 0; j < 3; ++j) {
      vae_res(t, blk + (ldm ? "block." : "resnets.") + num(j) + ".", cur, out, ldm);
      cur = out;
    }
    if (i < 3) {
      std::string const u = blk + (ldm ? "upsample.conv." : "upsamplers.0.conv.");
      t[u + "weight"] = {cur, cur, 3, 3};
      t[u + "bias"] = {cur};
    }
  }
  t[P + (ldm ? "decoder.norm_out.weight" : "decoder.conv_norm_out.weight")] = {128};
  t[P + (ldm ? "decoder.norm_out.bias" : "decoder.conv_norm_out.bias")] = {128};
  t[P + "decoder.conv_out.weight"] = {3, 128, 3, 3};
  t[P + "decoder.conv_out.bias"] = {3};
}

// CLIP ViT-L/14 text model; `prefix` "cond_stage_model.transformer.text_model." (LDM), or
// "cond_stage_model.transformer." (older files), or "text_model." (transformers).
void sd15_text(TensorShapes& t, std::string const& prefix, bool position_ids) {
  t[prefix + "embeddings.token_embedding.weight"] = {49408, 768};
  t[prefix + "embeddings.position_embedding.weight"] = {77, 768};
  if (position_ids) t[prefix + "embeddings.position_ids"] = {1, 77};
  for (int l = 0; l < 12; ++l) {
    std::string const p = prefix + "encoder.layers." + num(l) + ".";
    for (std::string q : {"q_proj.", "k_proj.", "v_proj.", "out_proj."}) {
      t[p + "self_attn." + q + "weight"] = {768, 768};
      t[p + "self_attn." + q + "bias"] = {768};
    }
    for (std::string n : {"layer_norm1.", "layer_norm2."}) {
      t[p + n + "weight"] = {768};
      t[p + n + "bias"] = {768};
    }
    t[p + "mlp.fc1.weight"] = {3072, 768};
    t[p + "mlp.fc1.bias"] = {3072};
    t[p + "mlp.fc2.weight"] = {768, 3072};
    t[p + "mlp.fc2.bias"] = {768};
  }
  t[prefix + "final_layer_norm.weight"] = {768};
  t[prefix + "final_layer_norm.bias"] = {768};
}

TensorShapes sd15_file(std::string const& text_prefix = "cond_stage_model.transformer.text_model.") {
  TensorShapes t;
  sd15_unet(t);
  sd15_vae(t, true);
  sd15_text(t, text_prefix, true);
  for (char const* s : {"betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                        "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                        "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                        "posterior_mean_coef1", "posterior_mean_coef2"}) {
    t[s] = {1000};
  }
  return t;
}

std::map<std::string, Shape> alias_shapes(std::vector<fd::io::Alias> const& as, TensorShapes const& src) {
  std::map<std::string, Shape> m;
  for (auto const& a : as) {
    bool const inserted = m.emplace(a.name, a.shape ? *a.shape : src.at(a.source)).second;
    CHECK(inserted);
  }
  return m;
}

std::string str(std::map<std::string, Shape> const& a, std::map<std::string, Shape> const& b) {
  // First differences, for failure messages.
  std::string s;
  int shown = 0;
  for (auto const& [n, sh] : a) {
    auto it = b.find(n);
    if ((it == b.end() || !(it->second == sh)) && shown++ < 5) s += "  only/different left: " + n + " " + sh.str() + "\n";
  }
  for (auto const& [n, sh] : b) {
    if (!a.contains(n) && shown++ < 10) s += "  only right: " + n + " " + sh.str() + "\n";
  }
  return s;
}

}  // namespace

TEST_CASE("ldm: Checkpoint::view renames, reshapes and tracks use by original names", "[ldm]") {
  B be{{.threads = 1}};
  fdtest::TempDir dir;
  write_file(dir / "f.safetensors", {f32("a.conv", {3, 3, 1, 1}, 1.5f), f32("b", {2}), f32("c", {4})});
  Checkpoint base = Checkpoint::open(dir / "f.safetensors");
  Checkpoint v = Checkpoint::view(base, {{"x.weight", "a.conv", Shape{3, 3}}, {"y", "b"}});
  CHECK(v.names() == std::vector<std::string>{"x.weight", "y"});
  CHECK(v.info("x.weight").shape == Shape{3, 3});
  CHECK(v.stored_name("x.weight") == "a.conv");
  CHECK(v.path() == base.path());
  T x = v.load(be, "x.weight", Shape{3, 3});
  CHECK(x.shape() == Shape{3, 3});
  CHECK(x.to_vector_f32(be) == std::vector<float>(9, 1.5f));
  CHECK(v.bytes("x.weight").size() == 36);

  auto e = catch_fd_error([&] { v.require_all_used("test model"); });
  REQUIRE(e);
  CHECK(e->code() == Errc::kUnexpectedTensor);
  CHECK_THAT(e->what(), Catch::Contains("'b' (as 'y')") && Catch::Contains("f.safetensors"));

  e = catch_fd_error([&] { (void)v.load(be, "y", Shape{3}); });
  REQUIRE(e);
  CHECK(e->code() == Errc::kShapeMismatch);
  CHECK_THAT(e->what(), Catch::Contains("f.safetensors: tensor 'b' (as 'y')"));

  e = catch_fd_error([&] { (void)Checkpoint::view(base, {{"z", "a.conv", Shape{4, 3}}}); });
  REQUIRE(e);
  CHECK(e->code() == Errc::kShapeMismatch);
  e = catch_fd_error([&] { (void)Checkpoint::view(base, {{"z", "nope"}}); });
  REQUIRE(e);
  CHECK(e->code() == Errc::kMissingTensor);
  CHECK_THAT(e->what(), Catch::Contains("'nope'"));
  e = catch_fd_error([&] { (void)Checkpoint::view(base, {{"z", "b"}, {"z", "c"}}); });
  REQUIRE(e);
  CHECK(e->code() == Errc::kInvalidArgument);

  // Use marks are per view; the base is untouched.
  CHECK(base.unused().size() == 3);
  v.ignore("y");
  CHECK_NOTHROW(v.require_all_used("test model"));
  // A view outlives its base (the mapped file is shared).
  Checkpoint w = Checkpoint::view(base, {{"q", "c"}});
  { Checkpoint gone = std::move(base); }
  CHECK(w.load(be, "q").to_vector_f32(be) == std::vector<float>(4, 0.5f));
}

TEST_CASE("ldm: tiny SD single file -> UNet forward matches the diffusers fixture", "[ldm]") {
  B be{{.threads = 2}};
  fdtest::TempDir dir;
  fs::path const file = dir / "tiny-sd.safetensors";
  write_file(file, tiny_ldm_tensors());

  fd::io::LdmComponents sd = fd::io::open_ldm_checkpoint(file);
  // The inferred config equals the fixture's on every field shapes determine.
  nlohmann::json const ref = read_json(fixture("unet_tiny_sd/config.json"));
  std::set<std::string> const assumed{"attention_head_dim", "norm_num_groups", "sample_size"};
  for (auto const& [k, v] : ref.items()) {
    INFO(k);
    REQUIRE(sd.unet_config.contains(k));
    if (!assumed.contains(k)) CHECK(sd.unet_config.at(k) == v);
  }
  CHECK(sd.unet_config.size() == ref.size());
  CHECK(sd.unet_config.at("attention_head_dim") == 8);
  CHECK(sd.unet_config.at("norm_num_groups") == 32);

  // What was left out, and why.
  REQUIRE(sd.ignored.size() == 15);
  std::string all;
  for (auto const& s : sd.ignored) all += s + "\n";
  CHECK_THAT(all, Catch::Contains("model_ema.* (4)") && Catch::Contains("betas (1)") && Catch::Contains("logvar (1)") &&
                      Catch::Contains("cond_stage_model.transformer.text_model.embeddings.position_ids (1)"));

  // The fixture's groups (8) are not the SD 1.x default: patch the config through the options.
  fd::io::LdmOptions opt;
  opt.unet_config = {{"norm_num_groups", 8}};
  fd::io::LdmComponents sd2 = fd::io::open_ldm_checkpoint(file, opt);
  CHECK(sd2.unet_config.at("norm_num_groups") == 8);
  auto cfg = fd::models::UNetConfig::from_json(sd2.unet_config, file.string());
  UNet unet = UNet::from_checkpoint(be, cfg, sd2.unet);

  auto io = fd::io::SafeTensorsFile::open(fixture("unet_tiny_sd/unet_tiny_sd_io.safetensors"));
  float const t = io.load(be, "timestep").to_vector_f32(be).at(0);
  T const y = unet.forward(io.load(be, "sample"), {&t, 1}, io.load(be, "encoder_hidden_states"));
  double const rel = fdtest::rel_to_max(be, y, io.load(be, "out"));
  INFO("rel_to_max " << rel);
  CHECK(rel <= 1e-5);

  // The same weights through the diffusers folder give the same numbers bit for bit.
  UNet folder = UNet::load(be, fixture("unet_tiny_sd"));
  CHECK(folder.forward(io.load(be, "sample"), {&t, 1}, io.load(be, "encoder_hidden_states")).to_vector_f32(be) ==
        y.to_vector_f32(be));
}

TEST_CASE("ldm: tiny SD single file -> VAE and text encoder names, shapes and values equal diffusers'", "[ldm]") {
  B be{{.threads = 1}};
  fdtest::TempDir dir;
  fs::path const file = dir / "tiny-sd.safetensors";
  write_file(file, tiny_ldm_tensors());
  fd::io::LdmComponents sd = fd::io::open_ldm_checkpoint(file);

  Checkpoint vae_ref = Checkpoint::open(fixture("vae_tiny/diffusion_pytorch_model.safetensors"));
  {
    auto const got = shapes_of(sd.vae), want = shapes_of(vae_ref);
    INFO(str(got, want));
    CHECK(got == want);
  }
  check_same_values(be, sd.vae, vae_ref);
  CHECK(sd.vae.stored_name("decoder.mid_block.attentions.0.to_q.weight") == "first_stage_model.decoder.mid.attn_1.q.weight");
  CHECK(sd.vae.info("decoder.mid_block.attentions.0.to_q.weight").shape == Shape{64, 64});
  CHECK(sd.vae.info("decoder.mid_block.attentions.0.to_q.weight").dtype == DType::kF16);  // stored dtype kept
  CHECK_NOTHROW(sd.vae.require_all_used("vae"));  // everything was loaded above

  Checkpoint clip_ref = Checkpoint::open(fixture("clip_text_tiny/model.safetensors"));
  {
    auto const got = shapes_of(sd.text_encoder), want = shapes_of(clip_ref, {"text_model.embeddings.position_ids"});
    INFO(str(got, want));
    CHECK(got == want);
  }
  check_same_values(be, sd.text_encoder, clip_ref);

  // Configs: everything but what shapes cannot tell.
  nlohmann::json const vref = read_json(fixture("vae_tiny/config.json"));
  for (auto const& [k, v] : vref.items()) {
    INFO(k);
    REQUIRE(sd.vae_config.contains(k));
    if (k != "norm_num_groups" && k != "sample_size") CHECK(sd.vae_config.at(k) == v);
  }
  CHECK(sd.vae_config.size() == vref.size());
  nlohmann::json const tref = read_json(fixture("clip_text_tiny/config.json"));
  for (auto const& [k, v] : tref.items()) {
    INFO(k);
    REQUIRE(sd.text_encoder_config.contains(k));
    if (k != "num_attention_heads") CHECK(sd.text_encoder_config.at(k) == v);
  }
  CHECK(sd.text_encoder_config.size() == tref.size());
  CHECK(sd.text_encoder_config.at("num_attention_heads") == 1);  // 32 wide: not CLIP's 64-wide heads
}

TEST_CASE("ldm: the real SD 1.5 name set maps totally and injectively onto the diffusers models", "[ldm]") {
  TensorShapes const file = sd15_file();
  std::size_t unet = 0, vae = 0, text = 0;
  for (auto const& [n, s] : file) {
    unet += n.starts_with("model.diffusion_model.");
    vae += n.starts_with("first_stage_model.");
    text += n.starts_with("cond_stage_model.");
  }
  CHECK(unet == 686);
  CHECK(vae == 248);
  CHECK(text == 197);  // 196 weights + position_ids

  fd::io::LdmMapping const m = fd::io::map_ldm_names(file, "sd15.safetensors");
  CHECK(m.unet.size() == 686);
  CHECK(m.vae.size() == 248);
  CHECK(m.text_encoder.size() == 196);

  // UNet: exactly the parameters UNet2DCondition(sd15) binds, with their shapes.
  {
    B be{{.threads = 1}};
    UNet model(be, fd::models::UNetConfig::sd15());
    std::map<std::string, Shape> want;
    model.visit([&](std::string const& n, T& t) { want.emplace(n, t.shape()); });
    auto const got = alias_shapes(m.unet, file);
    INFO(str(got, want));
    CHECK(got == want);
  }
  // VAE and text encoder: the diffusers/transformers names written out independently.
  {
    TensorShapes want_t;
    sd15_vae(want_t, false);
    std::map<std::string, Shape> const want(want_t.begin(), want_t.end());
    auto const got = alias_shapes(m.vae, file);
    INFO(str(got, want));
    CHECK(got == want);
  }
  {
    TensorShapes want_t;
    sd15_text(want_t, "text_model.", false);
    std::map<std::string, Shape> const want(want_t.begin(), want_t.end());
    auto const got = alias_shapes(m.text_encoder, file);
    INFO(str(got, want));
    CHECK(got == want);
    // Older files without the "text_model." level map to the same names.
    auto const old = fd::io::map_ldm_names(sd15_file("cond_stage_model.transformer."), "old.safetensors");
    CHECK(alias_shapes(old.text_encoder, sd15_file("cond_stage_model.transformer.")) == want);
  }

  // The error-message inverse agrees with the mapping on every name.
  for (auto const& a : m.unet) CHECK(fd::io::ldm::unet_ldm_name(a.name, 2, m.unet_up_attention) == a.source);
  for (auto const& a : m.vae) CHECK(fd::io::ldm::vae_ldm_name(a.name, 4) == a.source);

  // Inferred configs are SD 1.5's.
  auto const u = fd::models::UNetConfig::from_json(fd::io::infer_ldm_unet_config(file, "sd15"), "sd15");
  auto const r = fd::models::UNetConfig::sd15();
  CHECK(u.block_out_channels == r.block_out_channels);
  CHECK(u.layers_per_block == r.layers_per_block);
  CHECK(u.down_blocks == r.down_blocks);
  CHECK(u.up_blocks == r.up_blocks);
  CHECK(u.cross_attention_dim == r.cross_attention_dim);
  CHECK(u.num_heads == r.num_heads);
  CHECK(u.transformer_layers_per_block == r.transformer_layers_per_block);
  CHECK(u.use_linear_projection == r.use_linear_projection);
  CHECK(u.in_channels == 4);
  CHECK(u.out_channels == 4);
  CHECK(u.temb_dim() == 1280);
  CHECK(u.has_mid_block);
  nlohmann::json const v = fd::io::infer_ldm_vae_config(file, "sd15");
  CHECK(v.at("block_out_channels") == nlohmann::json({128, 256, 512, 512}));
  CHECK(v.at("layers_per_block") == 2);
  CHECK(v.at("latent_channels") == 4);
  CHECK(v.at("in_channels") == 3);
  CHECK(v.at("out_channels") == 3);
  CHECK(v.at("scaling_factor") == 0.18215);
  nlohmann::json const c = fd::io::infer_ldm_text_encoder_config(file, "sd15");
  CHECK(c.at("hidden_size") == 768);
  CHECK(c.at("num_hidden_layers") == 12);
  CHECK(c.at("num_attention_heads") == 12);
  CHECK(c.at("intermediate_size") == 3072);
  CHECK(c.at("vocab_size") == 49408);
  CHECK(c.at("max_position_embeddings") == 77);
  CHECK(c.at("hidden_act") == "quick_gelu");
}

TEST_CASE("ldm: SD 2.x, SDXL and unknown tensors are refused by name", "[ldm]") {
  auto code_and_text = [](TensorShapes const& t) -> std::pair<Errc, std::string> {
    auto e = catch_fd_error([&] { (void)fd::io::map_ldm_names(t, "m.safetensors"); });
    REQUIRE(e);
    return {e->code(), e->what()};
  };
  {
    TensorShapes t;
    sd15_unet(t, 1024);
    auto [code, what] = code_and_text(t);
    CHECK(code == Errc::kUnsupported);
    CHECK_THAT(what, Catch::Contains("m.safetensors") && Catch::Contains("1024") && Catch::Contains("SD 2"));
  }
  {
    TensorShapes t = sd15_file();
    t["conditioner.embedders.0.transformer.text_model.final_layer_norm.weight"] = {768};
    auto [code, what] = code_and_text(t);
    CHECK(code == Errc::kUnsupported);
    CHECK_THAT(what, Catch::Contains("SDXL") && Catch::Contains("conditioner.embedders.0"));
  }
  {
    TensorShapes t = sd15_file();
    t["model.diffusion_model.input_blocks.1.0.mystery.weight"] = {3};
    t["cond_stage_model.something_else"] = {3};
    auto [code, what] = code_and_text(t);
    CHECK(code == Errc::kUnexpectedTensor);
    CHECK_THAT(what, Catch::Contains("2 tensors") && Catch::Contains("'model.diffusion_model.input_blocks.1.0.mystery.weight'"));
  }
  {
    TensorShapes t = sd15_file();
    t["model.diffusion_model.output_blocks.5.1.conv.weight"] = {1280, 1280, 3, 3};  // a second upsampler for up block 1
    auto [code, what] = code_and_text(t);
    CHECK(code == Errc::kFormat);
    CHECK_THAT(what, Catch::Contains("output_blocks.5.1.conv.weight") && Catch::Contains("output_blocks.5.2.conv.weight"));
  }
}

TEST_CASE("ldm: bad single files fail with the file and the LDM tensor name", "[ldm]") {
  B be{{.threads = 1}};
  fdtest::TempDir dir;
  SECTION("SD 2.x text encoder") {
    fs::path const f = dir / "sd2.safetensors";
    write_file(f, {f32("model.diffusion_model.input_blocks.0.0.weight", {4, 4, 3, 3}),
                   f32("cond_stage_model.model.token_embedding.weight", {8, 4})});
    auto e = catch_fd_error([&] { (void)fd::io::open_ldm_checkpoint(f); });
    REQUIRE(e);
    CHECK(e->code() == Errc::kUnsupported);
    CHECK_THAT(e->what(), Catch::Contains(f.string()) && Catch::Contains("cond_stage_model.model.token_embedding.weight") &&
                              Catch::Contains("OpenCLIP"));
  }
  SECTION("a UNet tensor missing") {
    fs::path const f = dir / "missing.safetensors";
    std::string const gone = "model.diffusion_model.output_blocks.4.1.transformer_blocks.0.attn2.to_v.weight";
    write_file(f, tiny_ldm_tensors(gone));
    fd::io::LdmOptions opt;
    opt.unet_config = {{"norm_num_groups", 8}};
    auto sd = fd::io::open_ldm_checkpoint(f, opt);
    auto cfg = fd::models::UNetConfig::from_json(sd.unet_config, f.string());
    auto e = catch_fd_error([&] { (void)UNet::from_checkpoint(be, cfg, sd.unet); });
    REQUIRE(e);
    CHECK(e->code() == Errc::kMissingTensor);
    CHECK_THAT(e->what(), Catch::Contains(f.string()) && Catch::Contains("'" + gone + "'") &&
                              Catch::Contains("up_blocks.1.attentions.1.transformer_blocks.0.attn2.to_v.weight"));
  }
  SECTION("a tensor needed for the config missing") {
    fs::path const f = dir / "noconv.safetensors";
    write_file(f, tiny_ldm_tensors("model.diffusion_model.out.2.weight"));
    auto e = catch_fd_error([&] { (void)fd::io::open_ldm_checkpoint(f); });
    REQUIRE(e);
    CHECK(e->code() == Errc::kMissingTensor);
    CHECK_THAT(e->what(), Catch::Contains("'model.diffusion_model.out.2.weight'") && Catch::Contains("out_channels"));
  }
  SECTION("a misshaped tensor names both names") {
    fs::path const f = dir / "shape.safetensors";
    auto ts = tiny_ldm_tensors();
    for (auto& t : ts) {
      if (t.name == "model.diffusion_model.middle_block.1.proj_out.bias") t = f32(t.name, {65});
    }
    write_file(f, ts);
    fd::io::LdmOptions opt;
    opt.unet_config = {{"norm_num_groups", 8}};
    auto sd = fd::io::open_ldm_checkpoint(f, opt);
    auto cfg = fd::models::UNetConfig::from_json(sd.unet_config, f.string());
    auto e = catch_fd_error([&] { (void)UNet::from_checkpoint(be, cfg, sd.unet); });
    REQUIRE(e);
    CHECK(e->code() == Errc::kShapeMismatch);
    CHECK_THAT(e->what(), Catch::Contains("'model.diffusion_model.middle_block.1.proj_out.bias' (as "
                                          "'mid_block.attentions.0.proj_out.bias')"));
  }
  SECTION("leftovers are named as the file stores them") {
    fs::path const f = dir / "ok.safetensors";
    write_file(f, tiny_ldm_tensors());
    auto sd = fd::io::open_ldm_checkpoint(f);
    (void)sd.vae.load(be, "decoder.conv_in.weight");
    auto e = catch_fd_error([&] { sd.vae.require_all_used("AutoencoderKL"); });
    REQUIRE(e);
    CHECK(e->code() == Errc::kUnexpectedTensor);
    CHECK_THAT(e->what(), Catch::Contains(f.string()) && Catch::Contains("'first_stage_model.decoder.conv_in.bias' (as "
                                                                         "'decoder.conv_in.bias')"));
  }
  SECTION("pickle checkpoint") {
    fs::path const f = dir / "v1-5-pruned-emaonly.ckpt";
    std::ofstream(f) << "PK";
    auto e = catch_fd_error([&] { (void)fd::io::open_ldm_checkpoint(f); });
    REQUIRE(e);
    CHECK(e->code() == Errc::kUnsupported);
    CHECK_THAT(e->what(), Catch::Contains(f.string()) && Catch::Contains("pickle"));
  }
  SECTION("truncated file") {
    fs::path const f = dir / "cut.safetensors";
    write_file(f, tiny_ldm_tensors());
    fs::resize_file(f, fs::file_size(f) / 2);
    auto e = catch_fd_error([&] { (void)fd::io::open_ldm_checkpoint(f); });
    REQUIRE(e);
    CHECK(e->code() == Errc::kFormat);
    CHECK_THAT(e->what(), Catch::Contains(f.string()));
  }
  SECTION("text encoder width differs from the UNet's context width") {
    fs::path const f = dir / "mismatch.safetensors";
    auto ts = tiny_ldm_tensors();
    for (auto& t : ts) {
      if (t.name == "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight") {
        t = f32(t.name, {49408, 48});
      }
    }
    write_file(f, ts);
    auto e = catch_fd_error([&] { (void)fd::io::open_ldm_checkpoint(f); });
    REQUIRE(e);
    CHECK(e->code() == Errc::kUnsupported);
    CHECK_THAT(e->what(), Catch::Contains("48") && Catch::Contains("cross_attention_dim"));
  }
}
