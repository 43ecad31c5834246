#pragma once
// A single-file SD 1.x checkpoint (CompVis LDM names) built from the tiny diffusers fixtures, for the
// [ldm] tests and the CLI tests (tests/cli/make_ldm_file.cpp). The LDM names are written out here from
// the layout rules, independently of the library's mapping (fd/io/ldm_checkpoint.hpp).

#include <cstddef>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fd/io/checkpoint.hpp"
#include "fd/io/safetensors.hpp"

namespace fdtest {

using fd::DType;
using fd::Shape;
using fd::io::Checkpoint;
namespace fs = std::filesystem;

inline std::string fixture(std::string const& rel) { return std::string(FD_FIXTURES_DIR) + "/" + rel; }

inline std::string num(int i) { return std::to_string(i); }

// ---------------------------------------------------------------------------------------------------
// diffusers name -> LDM name, written from the layout rules (the inverse of what the library does).

inline std::string ldm_resnet_param(std::string const& r) {  // UNet ResBlock
  static std::vector<std::pair<std::string, std::string>> const m = {
      {"norm1.", "in_layers.0."},  {"conv1.", "in_layers.2."},  {"time_emb_proj.", "emb_layers.1."},
      {"norm2.", "out_layers.0."}, {"conv2.", "out_layers.3."}, {"conv_shortcut.", "skip_connection."}};
  for (auto const& [d, l] : m) {
    if (r.rfind(d, 0) == 0) return l + r.substr(d.size());
  }
  throw std::logic_error("not a resnet parameter: " + r);
  return "";
}

// Splits "a.b.c" into parts.
inline std::vector<std::string> parts(std::string const& s) {
  std::vector<std::string> out;
  std::size_t b = 0;
  for (std::size_t e; (e = s.find('.', b)) != std::string::npos; b = e + 1) out.push_back(s.substr(b, e - b));
  out.push_back(s.substr(b));
  return out;
}
inline std::string join(std::vector<std::string> const& p, std::size_t from) {
  std::string s;
  for (std::size_t i = from; i < p.size(); ++i) s += (i > from ? "." : "") + p[i];
  return s;
}

// For an SD-like UNet with `lpb` layers per block; up_attn[b]: up block b has attention.
inline std::string ldm_unet(std::string const& d, int lpb, std::vector<bool> const& up_attn) {
  std::string const P = "model.diffusion_model.";
  auto p = parts(d);
  if (p[0] == "conv_in") return P + "input_blocks.0.0." + p[1];
  if (p[0] == "conv_norm_out") return P + "out.0." + p[1];
  if (p[0] == "conv_out") return P + "out.2." + p[1];
  if (p[0] == "time_embedding") return P + (p[1] == "linear_1" ? "time_embed.0." : "time_embed.2.") + p[2];
  if (p[0] == "down_blocks") {
    int const b = std::stoi(p[1]);
    if (p[2] == "resnets") return P + "input_blocks." + num(1 + b * (lpb + 1) + std::stoi(p[3])) + ".0." + ldm_resnet_param(join(p, 4));
    if (p[2] == "attentions") return P + "input_blocks." + num(1 + b * (lpb + 1) + std::stoi(p[3])) + ".1." + join(p, 4);
    return P + "input_blocks." + num(1 + b * (lpb + 1) + lpb) + ".0.op." + join(p, 5);  // downsamplers.0.conv.X
  }
  if (p[0] == "mid_block") {
    if (p[1] == "attentions") return P + "middle_block.1." + join(p, 3);
    return P + "middle_block." + (p[2] == "0" ? "0." : "2.") + ldm_resnet_param(join(p, 3));
  }
  if (p[0] == "up_blocks") {
    int const b = std::stoi(p[1]);
    if (p[2] == "resnets") return P + "output_blocks." + num(b * (lpb + 1) + std::stoi(p[3])) + ".0." + ldm_resnet_param(join(p, 4));
    if (p[2] == "attentions") return P + "output_blocks." + num(b * (lpb + 1) + std::stoi(p[3])) + ".1." + join(p, 4);
    return P + "output_blocks." + num(b * (lpb + 1) + lpb) + (up_attn[static_cast<std::size_t>(b)] ? ".2." : ".1.") + join(p, 4);
  }
  throw std::logic_error("not a UNet name: " + d);
  return "";
}

// VAE: `blocks` down/up blocks. Returns the LDM name; sets conv_attn if the tensor is an attention
// projection weight that LDM stores as a 1x1 convolution.
inline std::string ldm_vae(std::string const& d, int blocks, bool& conv_attn) {
  std::string const P = "first_stage_model.";
  conv_attn = false;
  auto p = parts(d);
  auto resnet = [](std::string const& r) { return r.rfind("conv_shortcut.", 0) == 0 ? "nin_shortcut." + r.substr(14) : r; };
  if (p[0] == "quant_conv" || p[0] == "post_quant_conv") return P + d;
  std::string const part = p[0];
  if (p[1] == "conv_in" || p[1] == "conv_out") return P + d;
  if (p[1] == "conv_norm_out") return P + part + ".norm_out." + p[2];
  if (p[1] == "mid_block") {
    if (p[2] == "resnets") return P + part + ".mid.block_" + (p[3] == "0" ? "1." : "2.") + resnet(join(p, 4));
    static std::map<std::string, std::string> const a = {
        {"group_norm", "norm"}, {"to_q", "q"}, {"to_k", "k"}, {"to_v", "v"}, {"to_out", "proj_out"}};
    std::string const what = a.at(p[4]);
    std::string const param = p[4] == "to_out" ? p[6] : p[5];
    conv_attn = what != "norm" && param == "weight";
    return P + part + ".mid.attn_1." + what + "." + param;
  }
  int const i = std::stoi(p[2]);
  bool const enc = part == "encoder";
  std::string const blk = P + part + (enc ? ".down." : ".up.") + num(enc ? i : blocks - 1 - i) + ".";
  if (p[3] == "resnets") return blk + "block." + p[4] + "." + resnet(join(p, 5));
  return blk + (enc ? "downsample.conv." : "upsample.conv.") + join(p, 6);
}

// Copies tensors (their stored bytes and dtype) into a new safetensors file, under new names/shapes.
struct Out {
  std::string name;
  DType dtype;
  Shape shape;
  std::vector<std::byte> bytes;
};

inline void write_file(fs::path const& path, std::vector<Out> const& ts) {
  fd::io::SafeTensorsWriter w(path);
  for (auto const& t : ts) w.add(t.name, t.dtype, t.shape, t.bytes);
  w.write();
}

inline Out copy_of(Checkpoint const& ck, std::string const& from, std::string to, std::optional<Shape> shape = std::nullopt) {
  auto const b = ck.bytes(from);
  return Out{std::move(to), ck.info(from).dtype, shape ? *shape : ck.info(from).shape, {b.begin(), b.end()}};
}

inline Out f32(std::string name, Shape shape, float v = 0.5f) {
  std::vector<float> x(static_cast<std::size_t>(shape.numel()), v);
  auto const b = std::as_bytes(std::span(x));
  return Out{std::move(name), DType::kF32, shape, {b.begin(), b.end()}};
}

inline std::vector<bool> tiny_up_attention() { return {false, true, true, true}; }  // unet_tiny_sd

// The tiny fixtures as one LDM-layout file: UNet (unet_tiny_sd), VAE (vae_tiny, attention as 1x1 convs),
// text encoder (clip_text_tiny), plus the non-weight tensors real files carry. `drop` leaves one out.
inline std::vector<Out> tiny_ldm_tensors(std::string const& drop = "") {
  std::vector<Out> ts;
  Checkpoint unet = Checkpoint::open(fixture("unet_tiny_sd/diffusion_pytorch_model.safetensors.index.json"));
  for (auto const& n : unet.names()) ts.push_back(copy_of(unet, n, ldm_unet(n, 2, tiny_up_attention())));
  Checkpoint vae = Checkpoint::open(fixture("vae_tiny/diffusion_pytorch_model.safetensors"));
  for (auto const& n : vae.names()) {
    bool conv = false;
    std::string const l = ldm_vae(n, 4, conv);
    Shape const s = vae.info(n).shape;
    ts.push_back(copy_of(vae, n, l, conv ? std::optional(Shape{s[0], s[1], 1, 1}) : std::nullopt));
  }
  Checkpoint clip = Checkpoint::open(fixture("clip_text_tiny/model.safetensors"));
  for (auto const& n : clip.names()) ts.push_back(copy_of(clip, n, "cond_stage_model.transformer." + n));
  // Not weights of the three models: all must be ignored.
  for (char const* s : {"betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                        "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                        "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                        "posterior_mean_coef1", "posterior_mean_coef2"}) {
    ts.push_back(f32(s, {1000}));
  }
  ts.push_back(f32("logvar", {1000}));
  ts.push_back(f32("model_ema.decay", {}));
  ts.push_back(f32("model_ema.num_updates", {}));
  ts.push_back(f32("model_ema.diffusion_modelinput_blocks00weight", {32, 4, 3, 3}));
  ts.push_back(f32("model_ema.diffusion_modelout2bias", {4}));
  std::erase_if(ts, [&](Out const& t) { return t.name == drop; });
  return ts;
}

}  // namespace fdtest
