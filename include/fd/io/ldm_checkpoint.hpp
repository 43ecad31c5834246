#pragma once
/// @file
/// Single-file Stable Diffusion 1.x checkpoints (the original CompVis latent-diffusion layout, e.g.
/// `v1-5-pruned-emaonly.safetensors`) read as the three diffusers models they hold.
///
/// Nothing is converted on disk: the tensors are renamed at load time (Checkpoint::view) to the names
/// the diffusers-layout loaders bind to, and each model's config.json is inferred from tensor shapes.
/// The renaming follows diffusers 0.23's `convert_from_ckpt.py`. See docs/single_file.md.
/// @code
///   auto sd = fd::io::open_ldm_checkpoint("v1-5-pruned-emaonly.safetensors");
///   auto cfg = fd::models::UNetConfig::from_json(sd.unet_config, "v1-5-pruned-emaonly.safetensors");
///   auto unet = fd::models::UNet2DCondition<fd::backend::Cpu>::from_checkpoint(cpu, cfg, sd.unet);
/// @endcode

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "fd/core/shape.hpp"
#include "fd/error.hpp"
#include "fd/io/checkpoint.hpp"

namespace fd::io {

/// Tensor names and shapes of a checkpoint, without data (what the name mapping works on).
using TensorShapes = std::map<std::string, Shape, std::less<>>;

/// Settings of open_ldm_checkpoint for what tensor shapes cannot tell.
struct LdmOptions {
  /// JSON merge patches (RFC 7386) applied to the inferred configs, e.g. {"attention_head_dim": 8,
  /// "norm_num_groups": 32}. Null = no change.
  nlohmann::json unet_config;
  nlohmann::json vae_config;
  nlohmann::json text_encoder_config;
};

/// The models of a single-file checkpoint, each presented under diffusers names with its config.
/// A component the file does not hold (e.g. a UNet-only file without first_stage_model.*) has an empty
/// Checkpoint and a null config.
struct LdmComponents {
  Checkpoint unet;          ///< UNet2DConditionModel names (conv_in.weight, down_blocks.0...)
  Checkpoint vae;           ///< AutoencoderKL names (encoder.*, decoder.*, quant_conv.*, post_quant_conv.*)
  Checkpoint text_encoder;  ///< CLIPTextModel names (text_model.*)
  nlohmann::json unet_config, vae_config, text_encoder_config;  ///< diffusers/transformers config.json contents
  std::vector<std::string> ignored;  ///< "<tensor or pattern> (<count>): <why>" for every file tensor left out
};

/// The renamed tensors of a file, before any data is touched (see map_ldm_names).
struct LdmMapping {
  std::vector<Alias> unet, vae, text_encoder;
  std::vector<std::string> ignored;  ///< as LdmComponents::ignored
  int unet_layers_per_block = 0;     ///< the layout facts the mapping used (for error messages)
  int unet_blocks = 0;
  std::vector<bool> unet_up_attention;  ///< per up block: has cross-attention
  int vae_blocks = 0;
};

namespace ldm {

inline constexpr std::string_view kUnetPrefix = "model.diffusion_model.";
inline constexpr std::string_view kVaePrefix = "first_stage_model.";
inline constexpr std::string_view kTextPrefix = "cond_stage_model.transformer.";

namespace detail {

// "name.N.rest" -> (N, rest) when `s` starts with `name.` followed by a number and a dot.
inline std::optional<std::pair<int, std::string_view>> numbered(std::string_view s, std::string_view name) {
  if (!s.starts_with(name) || s.size() <= name.size() || s[name.size()] != '.') return std::nullopt;
  std::string_view const t = s.substr(name.size() + 1);
  int n = 0;
  auto const [p, ec] = std::from_chars(t.data(), t.data() + t.size(), n);
  if (ec != std::errc() || p == t.data() || p == t.data() + t.size() || *p != '.' || n < 0) return std::nullopt;
  return std::pair{n, t.substr(static_cast<std::size_t>(p - t.data()) + 1)};
}

inline bool is_param(std::string_view rest) { return rest == "weight" || rest == "bias"; }

inline std::string num(int i) { return std::to_string(i); }

// LDM ResBlock parameter -> diffusers ResnetBlock2D parameter (UNet).
inline std::optional<std::string> unet_resnet(std::string_view r) {
  static constexpr std::pair<std::string_view, std::string_view> kMap[] = {
      {"in_layers.0.", "norm1."},         {"in_layers.2.", "conv1."},   {"emb_layers.1.", "time_emb_proj."},
      {"out_layers.0.", "norm2."},        {"out_layers.3.", "conv2."},  {"skip_connection.", "conv_shortcut."}};
  for (auto const& [from, to] : kMap) {
    if (r.starts_with(from) && is_param(r.substr(from.size()))) return std::string(to) + std::string(r.substr(from.size()));
  }
  return std::nullopt;
}

inline std::optional<std::string> unet_resnet_inverse(std::string_view r) {
  static constexpr std::pair<std::string_view, std::string_view> kMap[] = {
      {"norm1.", "in_layers.0."},         {"conv1.", "in_layers.2."},   {"time_emb_proj.", "emb_layers.1."},
      {"norm2.", "out_layers.0."},        {"conv2.", "out_layers.3."},  {"conv_shortcut.", "skip_connection."}};
  for (auto const& [from, to] : kMap) {
    if (r.starts_with(from)) return std::string(to) + std::string(r.substr(from.size()));
  }
  return std::nullopt;
}

// Transformer2DModel parameters keep their names; only check the name ends in a parameter.
inline std::optional<std::string> unet_attention(std::string_view r) {
  if (r.ends_with(".weight") || r.ends_with(".bias")) return std::string(r);
  return std::nullopt;
}

inline std::optional<std::string> vae_resnet(std::string_view r) {
  for (std::string_view same : {"norm1.", "conv1.", "norm2.", "conv2."}) {
    if (r.starts_with(same) && is_param(r.substr(same.size()))) return std::string(r);
  }
  if (r.starts_with("nin_shortcut.") && is_param(r.substr(13))) return "conv_shortcut." + std::string(r.substr(13));
  return std::nullopt;
}

inline std::optional<std::string> vae_attention(std::string_view r) {
  static constexpr std::pair<std::string_view, std::string_view> kMap[] = {
      {"norm.", "group_norm."}, {"q.", "to_q."}, {"k.", "to_k."}, {"v.", "to_v."}, {"proj_out.", "to_out.0."}};
  for (auto const& [from, to] : kMap) {
    if (r.starts_with(from) && is_param(r.substr(from.size()))) return std::string(to) + std::string(r.substr(from.size()));
  }
  return std::nullopt;
}

inline std::optional<std::string> vae_mid(std::string_view r, std::string const& out) {
  if (r.starts_with("block_1.")) {
    if (auto n = vae_resnet(r.substr(8))) return out + "mid_block.resnets.0." + *n;
  } else if (r.starts_with("block_2.")) {
    if (auto n = vae_resnet(r.substr(8))) return out + "mid_block.resnets.1." + *n;
  } else if (r.starts_with("attn_1.")) {
    if (auto n = vae_attention(r.substr(7))) return out + "mid_block.attentions.0." + *n;
  }
  return std::nullopt;
}

inline std::optional<std::string> prefixed_param(std::string_view s, std::string_view from, std::string_view to) {
  if (s.starts_with(from) && is_param(s.substr(from.size()))) return std::string(to) + std::string(s.substr(from.size()));
  return std::nullopt;
}

}  // namespace detail

/// The diffusers UNet2DConditionModel name of an LDM UNet tensor name (without "model.diffusion_model."),
/// for a UNet with `layers_per_block` resnets per down block; nullopt for a name an SD 1.x UNet does not
/// have. The rules (diffusers convert_from_ckpt): input_blocks.0.0 = conv_in; input_blocks.i (i >= 1) is
/// layer (i-1) % (lpb+1) of down block (i-1) / (lpb+1), its .0 a resnet or (`.0.op`) the downsampler and
/// its .1 the attention; output_blocks.i is layer i % (lpb+1) of up block i / (lpb+1), `.0` the resnet,
/// `.1` the attention, and `.1.conv`/`.2.conv` the upsampler; middle_block.{0,1,2} = mid resnet, attention,
/// resnet; time_embed.{0,2}, out.{0,2} = time_embedding.linear_{1,2}, conv_norm_out, conv_out.
inline std::optional<std::string> unet_name(std::string_view s, int layers_per_block) {
  using namespace detail;
  int const per = layers_per_block + 1;
  if (auto n = prefixed_param(s, "time_embed.0.", "time_embedding.linear_1.")) return n;
  if (auto n = prefixed_param(s, "time_embed.2.", "time_embedding.linear_2.")) return n;
  if (auto n = prefixed_param(s, "input_blocks.0.0.", "conv_in.")) return n;
  if (auto n = prefixed_param(s, "out.0.", "conv_norm_out.")) return n;
  if (auto n = prefixed_param(s, "out.2.", "conv_out.")) return n;
  if (auto ib = numbered(s, "input_blocks"); ib && ib->first >= 1) {
    int const b = (ib->first - 1) / per;
    int const l = (ib->first - 1) % per;
    std::string const blk = "down_blocks." + num(b) + ".";
    if (ib->second.starts_with("0.op.") && l == layers_per_block) {
      if (auto n = prefixed_param(ib->second, "0.op.", blk + "downsamplers.0.conv.")) return n;
    } else if (ib->second.starts_with("0.") && l < layers_per_block) {
      if (auto n = unet_resnet(ib->second.substr(2))) return blk + "resnets." + num(l) + "." + *n;
    } else if (ib->second.starts_with("1.") && l < layers_per_block) {
      if (auto n = unet_attention(ib->second.substr(2))) return blk + "attentions." + num(l) + "." + *n;
    }
    return std::nullopt;
  }
  if (auto mb = numbered(s, "middle_block")) {
    if (mb->first == 0 || mb->first == 2) {
      if (auto n = unet_resnet(mb->second)) return "mid_block.resnets." + num(mb->first / 2) + "." + *n;
    } else if (mb->first == 1) {
      if (auto n = unet_attention(mb->second)) return "mid_block.attentions.0." + *n;
    }
    return std::nullopt;
  }
  if (auto ob = numbered(s, "output_blocks")) {
    int const b = ob->first / per;
    int const l = ob->first % per;
    std::string const blk = "up_blocks." + num(b) + ".";
    std::string_view const r = ob->second;
    if (l == layers_per_block && (r.starts_with("1.conv.") || r.starts_with("2.conv."))) {
      if (auto n = prefixed_param(r.substr(2), "conv.", blk + "upsamplers.0.conv.")) return n;
    } else if (r.starts_with("0.")) {
      if (auto n = unet_resnet(r.substr(2))) return blk + "resnets." + num(l) + "." + *n;
    } else if (r.starts_with("1.")) {
      if (auto n = unet_attention(r.substr(2))) return blk + "attentions." + num(l) + "." + *n;
    }
    return std::nullopt;
  }
  return std::nullopt;
}

/// The inverse of unet_name (for error messages): the LDM name (with prefix) a diffusers UNet name comes
/// from, given the layout; "" if `d` is not a UNet name.
inline std::string unet_ldm_name(std::string_view d, int layers_per_block, std::vector<bool> const& up_attention) {
  using namespace detail;
  int const per = layers_per_block + 1;
  std::string const p(kUnetPrefix);
  auto simple = [&](std::string_view from, std::string_view to) -> std::optional<std::string> {
    if (d.starts_with(from)) return p + std::string(to) + std::string(d.substr(from.size()));
    return std::nullopt;
  };
  for (auto [from, to] : {std::pair<std::string_view, std::string_view>{"time_embedding.linear_1.", "time_embed.0."},
                          {"time_embedding.linear_2.", "time_embed.2."}, {"conv_in.", "input_blocks.0.0."},
                          {"conv_norm_out.", "out.0."}, {"conv_out.", "out.2."}}) {
    if (auto n = simple(from, to)) return *n;
  }
  if (auto db = numbered(d, "down_blocks")) {
    int const base = 1 + db->first * per;
    if (auto r = numbered(db->second, "resnets")) {
      if (auto n = unet_resnet_inverse(r->second)) return p + "input_blocks." + num(base + r->first) + ".0." + *n;
    } else if (auto a = numbered(db->second, "attentions")) {
      return p + "input_blocks." + num(base + a->first) + ".1." + std::string(a->second);
    } else if (db->second.starts_with("downsamplers.0.conv.")) {
      return p + "input_blocks." + num(base + layers_per_block) + ".0.op." + std::string(db->second.substr(20));
    }
    return "";
  }
  if (d.starts_with("mid_block.")) {
    std::string_view const r = d.substr(10);
    if (auto rn = numbered(r, "resnets")) {
      if (auto n = unet_resnet_inverse(rn->second)) return p + "middle_block." + num(2 * rn->first) + "." + *n;
    } else if (r.starts_with("attentions.0.")) {
      return p + "middle_block.1." + std::string(r.substr(13));
    }
    return "";
  }
  if (auto ub = numbered(d, "up_blocks")) {
    int const base = ub->first * per;
    if (auto r = numbered(ub->second, "resnets")) {
      if (auto n = unet_resnet_inverse(r->second)) return p + "output_blocks." + num(base + r->first) + ".0." + *n;
    } else if (auto a = numbered(ub->second, "attentions")) {
      return p + "output_blocks." + num(base + a->first) + ".1." + std::string(a->second);
    } else if (ub->second.starts_with("upsamplers.0.conv.")) {
      bool const attn = static_cast<std::size_t>(ub->first) < up_attention.size() && up_attention[ub->first];
      return p + "output_blocks." + num(base + layers_per_block) + (attn ? ".2.conv." : ".1.conv.") +
             std::string(ub->second.substr(18));
    }
  }
  return "";
}

/// The diffusers AutoencoderKL name of an LDM VAE tensor name (without "first_stage_model."), for a VAE
/// with `blocks` down/up blocks: down.i.block.j = down_blocks.i.resnets.j, decoder up.k = up_blocks.(blocks-1-k)
/// (LDM counts decoder blocks from the lowest resolution up), downsample/upsample.conv =
/// down/upsamplers.0.conv, nin_shortcut = conv_shortcut, norm_out = conv_norm_out, mid.block_1/attn_1/block_2 =
/// mid_block.resnets.0/attentions.0/resnets.1, attention norm/q/k/v/proj_out = group_norm/to_q/to_k/to_v/to_out.0.
inline std::optional<std::string> vae_name(std::string_view s, int blocks) {
  using namespace detail;
  for (std::string_view same : {"quant_conv.", "post_quant_conv.", "encoder.conv_in.", "encoder.conv_out.",
                                "decoder.conv_in.", "decoder.conv_out."}) {
    if (auto n = prefixed_param(s, same, same)) return n;
  }
  if (auto n = prefixed_param(s, "encoder.norm_out.", "encoder.conv_norm_out.")) return n;
  if (auto n = prefixed_param(s, "decoder.norm_out.", "decoder.conv_norm_out.")) return n;
  for (std::string_view part : {"encoder.", "decoder."}) {
    if (!s.starts_with(part)) continue;
    std::string const out(part);
    std::string_view const r = s.substr(part.size());
    if (r.starts_with("mid.")) return vae_mid(r.substr(4), out);
    bool const enc = part == "encoder.";
    auto blk = numbered(r, enc ? "down" : "up");
    if (!blk || blk->first >= blocks) return std::nullopt;
    int const i = enc ? blk->first : blocks - 1 - blk->first;
    std::string const name = out + (enc ? "down_blocks." : "up_blocks.") + num(i) + ".";
    if (auto res = numbered(blk->second, "block")) {
      if (auto n = vae_resnet(res->second)) return name + "resnets." + num(res->first) + "." + *n;
      return std::nullopt;
    }
    if (auto n = prefixed_param(blk->second, enc ? "downsample.conv." : "upsample.conv.",
                                name + (enc ? "downsamplers.0.conv." : "upsamplers.0.conv."))) {
      return n;
    }
    return std::nullopt;
  }
  return std::nullopt;
}

/// The inverse of vae_name (for error messages): the LDM name (with prefix), or "" if `d` is not a VAE name.
inline std::string vae_ldm_name(std::string_view d, int blocks) {
  using namespace detail;
  std::string const p(kVaePrefix);
  auto resnet = [](std::string_view r) {
    return r.starts_with("conv_shortcut.") ? "nin_shortcut." + std::string(r.substr(14)) : std::string(r);
  };
  for (std::string_view part : {"encoder.", "decoder."}) {
    if (!d.starts_with(part)) continue;
    std::string const out = p + std::string(part);
    std::string_view const r = d.substr(part.size());
    if (r.starts_with("conv_norm_out.")) return out + "norm_out." + std::string(r.substr(14));
    if (r.starts_with("mid_block.resnets.0.")) return out + "mid.block_1." + resnet(r.substr(20));
    if (r.starts_with("mid_block.resnets.1.")) return out + "mid.block_2." + resnet(r.substr(20));
    if (r.starts_with("mid_block.attentions.0.")) {
      std::string_view const a = r.substr(23);
      for (auto [from, to] : {std::pair<std::string_view, std::string_view>{"group_norm.", "norm."},
                              {"to_q.", "q."}, {"to_k.", "k."}, {"to_v.", "v."}, {"to_out.0.", "proj_out."}}) {
        if (a.starts_with(from)) return out + "mid.attn_1." + std::string(to) + std::string(a.substr(from.size()));
      }
      return "";
    }
    bool const enc = part == "encoder.";
    auto blk = numbered(r, enc ? "down_blocks" : "up_blocks");
    if (!blk) return out + std::string(r);
    std::string const name = out + (enc ? "down." : "up.") + num(enc ? blk->first : blocks - 1 - blk->first) + ".";
    if (auto res = numbered(blk->second, "resnets")) return name + "block." + num(res->first) + "." + resnet(res->second);
    if (blk->second.starts_with("downsamplers.0.")) return name + "downsample." + std::string(blk->second.substr(15));
    if (blk->second.starts_with("upsamplers.0.")) return name + "upsample." + std::string(blk->second.substr(13));
    return "";
  }
  return p + std::string(d);
}

/// The transformers CLIPTextModel name of an LDM text-encoder tensor name (without
/// "cond_stage_model.transformer."): SD 1.x stores the HF CLIP layout already, with or (older files) without
/// the "text_model." level.
inline std::optional<std::string> text_encoder_name(std::string_view s) {
  if (s.starts_with("text_model.")) s = s.substr(11);
  for (std::string_view part : {"embeddings.", "encoder.", "final_layer_norm."}) {
    if (s.starts_with(part) && (s.ends_with(".weight") || s.ends_with(".bias"))) return "text_model." + std::string(s);
  }
  return std::nullopt;
}

}  // namespace ldm

namespace detail {

struct LdmIgnoreRule {
  std::string_view pattern;  // exact name, or a prefix when it ends in '.'
  std::string_view why;
};

// File tensors that are not weights of the three models.
inline constexpr LdmIgnoreRule kLdmIgnored[] = {
    {"model_ema.", "EMA copy of the UNet weights kept for training (model.diffusion_model.* is used, as diffusers does without --extract_ema)"},
    {"first_stage_model.loss.", "VAE training loss (LPIPS/discriminator) weights"},
    {"cond_stage_model.transformer.text_model.embeddings.position_ids", "constant buffer 0..76 (CLIPTextModel recomputes it)"},
    {"cond_stage_model.transformer.embeddings.position_ids", "constant buffer 0..76 (CLIPTextModel recomputes it)"},
    {"betas", "DDPM noise schedule buffer (the fd schedulers compute their own)"},
    {"alphas_cumprod", "DDPM noise schedule buffer"},
    {"alphas_cumprod_prev", "DDPM noise schedule buffer"},
    {"sqrt_alphas_cumprod", "DDPM noise schedule buffer"},
    {"sqrt_one_minus_alphas_cumprod", "DDPM noise schedule buffer"},
    {"log_one_minus_alphas_cumprod", "DDPM noise schedule buffer"},
    {"sqrt_recip_alphas_cumprod", "DDPM noise schedule buffer"},
    {"sqrt_recipm1_alphas_cumprod", "DDPM noise schedule buffer"},
    {"posterior_variance", "DDPM noise schedule buffer"},
    {"posterior_log_variance_clipped", "DDPM noise schedule buffer"},
    {"posterior_mean_coef1", "DDPM noise schedule buffer"},
    {"posterior_mean_coef2", "DDPM noise schedule buffer"},
    {"lvlb_weights", "DDPM training loss weights"},
    {"logvar", "learned log-variance of the training loss"},
};

inline LdmIgnoreRule const* ldm_ignore_rule(std::string_view name) {
  for (auto const& r : kLdmIgnored) {
    if (r.pattern.ends_with('.') ? name.starts_with(r.pattern) : name == r.pattern) return &r;
  }
  return nullptr;
}

inline std::string ldm_list(std::vector<std::string> const& names) {
  std::string out;
  for (std::size_t i = 0; i < names.size() && i < 5; ++i) out += (i ? ", " : "") + fd::io::detail::quoted(names[i]);
  if (names.size() > 5) out += ", ... (" + std::to_string(names.size() - 5) + " more)";
  return out;
}

// Rejects SD 2.x / SDXL / other LDM families up front with what gave them away.
inline void ldm_require_sd1(TensorShapes const& t, std::string const& source) {
  auto first_with = [&](std::string_view prefix) -> std::string {
    auto it = t.lower_bound(prefix);
    return it != t.end() && it->first.starts_with(prefix) ? it->first : std::string();
  };
  auto unsupported = [&](std::string const& what) {
    fail(Errc::kUnsupported, source + ": not a Stable Diffusion 1.x checkpoint: " + what +
                                 " (single-file loading supports SD 1.x only; convert other models to a diffusers folder)");
  };
  if (auto n = first_with("cond_stage_model.model."); !n.empty()) {
    unsupported("it has an OpenCLIP text encoder ('" + n + "'), as SD 2.x does");
  }
  if (auto n = first_with("conditioner."); !n.empty()) unsupported("it has an SDXL conditioner ('" + n + "')");
  if (auto n = first_with("model.diffusion_model.label_emb."); !n.empty()) {
    unsupported("its UNet has a class/added-condition embedding ('" + n + "'), as SDXL and upscalers do");
  }
  if (auto n = first_with("control_model."); !n.empty()) unsupported("it is a ControlNet ('" + n + "')");
  if (first_with(ldm::kUnetPrefix).empty()) {
    fail(Errc::kMissingTensor, source + ": no UNet tensors (nothing starts with 'model.diffusion_model.'); not a "
                                        "single-file Stable Diffusion checkpoint");
  }
  for (auto const& [name, shape] : t) {
    if (name.starts_with(ldm::kUnetPrefix) && name.ends_with(".attn2.to_k.weight") && shape.rank() == 2) {
      std::int64_t const ctx = shape[1];
      if (ctx == 1024) unsupported("its UNet cross-attends to 1024-wide text embeddings ('" + name + "'), as SD 2.x does");
      if (ctx == 2048) unsupported("its UNet cross-attends to 2048-wide text embeddings ('" + name + "'), as SDXL does");
      break;
    }
  }
}

inline Shape const& ldm_shape(TensorShapes const& t, std::string const& name, std::string const& source,
                              std::string_view needed_for) {
  auto it = t.find(name);
  if (it == t.end()) {
    fail(Errc::kMissingTensor, source + ": no tensor " + fd::io::detail::quoted(name) + " (needed to infer " +
                                   std::string(needed_for) + ")");
  }
  return it->second;
}

inline std::int64_t ldm_dim(TensorShapes const& t, std::string const& name, int dim, int rank, std::string const& source,
                            std::string_view needed_for) {
  Shape const& s = ldm_shape(t, name, source, needed_for);
  if (s.rank() != rank) {
    fail(Errc::kShapeMismatch, source + ": tensor " + fd::io::detail::quoted(name) + " has shape " + s.str() +
                                   ", expected rank " + std::to_string(rank) + " (inferring " +
                                   std::string(needed_for) + ")");
  }
  return s[dim];
}

// Largest N with a tensor `<prefix>N.<rest>`, plus one; 0 if none.
inline int ldm_count(TensorShapes const& t, std::string const& prefix) {
  int n = 0;
  for (auto it = t.lower_bound(prefix); it != t.end() && it->first.starts_with(prefix); ++it) {
    std::string_view const r = std::string_view(it->first).substr(prefix.size());
    int k = 0;
    auto const [q, ec] = std::from_chars(r.data(), r.data() + r.size(), k);
    if (ec != std::errc() || q == r.data() || q == r.data() + r.size() || *q != '.') continue;
    n = std::max(n, k + 1);
  }
  return n;
}

struct LdmUnetLayout {
  int layers_per_block = 0;
  int blocks = 0;
};

inline LdmUnetLayout ldm_unet_layout(TensorShapes const& t, std::string const& source) {
  std::string const p(ldm::kUnetPrefix);
  int const inputs = ldm_count(t, p + "input_blocks.");
  int const outputs = ldm_count(t, p + "output_blocks.");
  // The first downsampler closes block 0: it is input block layers_per_block + 1.
  int first_op = -1;
  for (int i = 1; i < inputs && first_op < 0; ++i) {
    if (t.contains(p + "input_blocks." + std::to_string(i) + ".0.op.weight")) first_op = i;
  }
  LdmUnetLayout l;
  l.layers_per_block = first_op > 0 ? first_op - 1 : inputs - 1;
  if (l.layers_per_block < 1 || inputs % (l.layers_per_block + 1) != 0 || outputs != inputs) {
    fail(Errc::kFormat, source + ": the UNet's block layout is not SD-like (" + std::to_string(inputs) +
                            " input blocks, " + std::to_string(outputs) + " output blocks, first downsampler at " +
                            (first_op > 0 ? "input_blocks." + std::to_string(first_op) : std::string("none")) + ")");
  }
  l.blocks = inputs / (l.layers_per_block + 1);
  return l;
}

inline nlohmann::json ldm_int_or_list(std::vector<int> const& v) {
  bool const same = std::all_of(v.begin(), v.end(), [&](int x) { return x == v.front(); });
  return same ? nlohmann::json(v.front()) : nlohmann::json(v);
}

}  // namespace detail

/// Renames a single-file checkpoint's tensors (names and shapes only; `source` names the file in errors):
/// every tensor must go to exactly one diffusers name or be on the ignore list (see docs/single_file.md).
/// VAE attention 1x1-convolution kernels [C, C, 1, 1] are presented as linear weights [C, C].
/// Throws kUnsupported for SD 2.x / SDXL / ControlNet files, kUnexpectedTensor for a tensor with no
/// diffusers counterpart, kFormat for two tensors mapping to one name or a non-SD block layout.
inline LdmMapping map_ldm_names(TensorShapes const& t, std::string const& source) {
  using namespace detail;
  ldm_require_sd1(t, source);
  LdmMapping m;
  LdmUnetLayout const lay = ldm_unet_layout(t, source);
  m.unet_layers_per_block = lay.layers_per_block;
  m.unet_blocks = lay.blocks;
  std::string const up(ldm::kUnetPrefix);
  for (int b = 0; b < lay.blocks; ++b) {
    m.unet_up_attention.push_back(
        t.contains(up + "output_blocks." + std::to_string(b * (lay.layers_per_block + 1)) + ".1.proj_in.weight"));
  }
  m.vae_blocks = ldm_count(t, std::string(ldm::kVaePrefix) + "encoder.down.");

  std::map<std::string, std::vector<std::string>> ignored;  // why -> names
  std::vector<std::string> unknown;
  std::map<std::string, std::string> taken;  // diffusers name (with component) -> LDM name
  auto add = [&](std::vector<Alias>& to, char comp, std::string const& ldm_name, std::string d, Shape const& shape) {
    auto [it, inserted] = taken.emplace(std::string(1, comp) + d, ldm_name);
    if (!inserted) {
      fail(Errc::kFormat, source + ": tensors " + fd::io::detail::quoted(it->second) + " and " +
                              fd::io::detail::quoted(ldm_name) + " both map to " + fd::io::detail::quoted(d));
    }
    std::optional<Shape> reshape;
    // LDM's VAE attention projects with 1x1 convolutions; diffusers' Attention with linear layers.
    bool const vae_attn_weight = comp == 'v' && d.find(".mid_block.attentions.0.to_") != std::string::npos &&
                                 d.ends_with(".weight");
    if (vae_attn_weight && shape.rank() == 4 && shape[2] == 1 && shape[3] == 1) reshape = Shape{shape[0], shape[1]};
    to.push_back(Alias{std::move(d), ldm_name, reshape});
  };
  for (auto const& [name, shape] : t) {
    std::string_view const n(name);
    if (auto const* rule = ldm_ignore_rule(n)) {
      ignored[std::string(rule->pattern) + (rule->pattern.ends_with('.') ? "*" : "") + "\t" + std::string(rule->why)]
          .push_back(name);
    } else if (n.starts_with(ldm::kUnetPrefix)) {
      auto d = ldm::unet_name(n.substr(ldm::kUnetPrefix.size()), lay.layers_per_block);
      d ? add(m.unet, 'u', name, *d, shape) : unknown.push_back(name);
    } else if (n.starts_with(ldm::kVaePrefix)) {
      auto d = ldm::vae_name(n.substr(ldm::kVaePrefix.size()), m.vae_blocks);
      d ? add(m.vae, 'v', name, *d, shape) : unknown.push_back(name);
    } else if (n.starts_with(ldm::kTextPrefix)) {
      auto d = ldm::text_encoder_name(n.substr(ldm::kTextPrefix.size()));
      d ? add(m.text_encoder, 't', name, *d, shape) : unknown.push_back(name);
    } else {
      unknown.push_back(name);
    }
  }
  if (!unknown.empty()) {
    fail(Errc::kUnexpectedTensor, source + ": " + std::to_string(unknown.size()) + " tensor" +
                                      (unknown.size() == 1 ? "" : "s") +
                                      " with no counterpart in an SD 1.x UNet, VAE or CLIP text encoder: " +
                                      ldm_list(unknown));
  }
  for (auto const& [key, names] : ignored) {
    auto const tab = key.find('\t');
    m.ignored.push_back(key.substr(0, tab) + " (" + std::to_string(names.size()) + "): " + key.substr(tab + 1));
  }
  return m;
}

/// The diffusers UNet2DConditionModel config.json of an SD 1.x LDM UNet, from tensor shapes: in/out
/// channels, kernel sizes, block_out_channels, layers_per_block, block types (attention present or not),
/// transformer_layers_per_block, cross_attention_dim, use_linear_projection, time_embedding_dim. Assumed
/// (shapes cannot tell): attention_head_dim 8 (SD 1.x: 8 heads), norm_num_groups 32, sample_size 64.
inline nlohmann::json infer_ldm_unet_config(TensorShapes const& t, std::string const& source) {
  using namespace detail;
  LdmUnetLayout const lay = ldm_unet_layout(t, source);
  std::string const p(ldm::kUnetPrefix);
  int const per = lay.layers_per_block + 1;
  std::vector<int> channels, tlayers, cross;
  std::vector<std::string> downs, ups;
  bool linear_proj = false;
  for (int b = 0; b < lay.blocks; ++b) {
    std::string const first = p + "input_blocks." + std::to_string(1 + b * per);
    channels.push_back(static_cast<int>(
        ldm_dim(t, first + ".0.out_layers.3.weight", 0, 4, source, "block_out_channels[" + std::to_string(b) + "]")));
    bool const attn = t.contains(first + ".1.proj_in.weight");
    downs.push_back(attn ? "CrossAttnDownBlock2D" : "DownBlock2D");
    bool const up_attn = t.contains(p + "output_blocks." + std::to_string(b * per) + ".1.proj_in.weight");
    ups.push_back(up_attn ? "CrossAttnUpBlock2D" : "UpBlock2D");
    std::string const attn_of = attn ? first + ".1." : p + "output_blocks." + std::to_string((lay.blocks - 1 - b) * per) + ".1.";
    if (attn || t.contains(attn_of + "proj_in.weight")) {
      tlayers.push_back(ldm_count(t, attn_of + "transformer_blocks."));
      cross.push_back(static_cast<int>(
          ldm_dim(t, attn_of + "transformer_blocks.0.attn2.to_k.weight", 1, 2, source, "cross_attention_dim")));
      linear_proj = ldm_shape(t, attn_of + "proj_in.weight", source, "use_linear_projection").rank() == 2;
    } else {
      tlayers.push_back(1);
      cross.push_back(0);
    }
  }
  int const any_cross = *std::max_element(cross.begin(), cross.end());
  for (int& c : cross) c = c == 0 ? (any_cross > 0 ? any_cross : 768) : c;

  Shape const& conv_in = ldm_shape(t, p + "input_blocks.0.0.weight", source, "in_channels");
  Shape const& conv_out = ldm_shape(t, p + "out.2.weight", source, "out_channels");
  if (conv_in.rank() != 4 || conv_out.rank() != 4) {
    fail(Errc::kShapeMismatch, source + ": UNet conv_in/conv_out kernels are not 4-d (" + conv_in.str() + ", " +
                                   conv_out.str() + ")");
  }
  auto const temb = ldm_dim(t, p + "time_embed.0.weight", 0, 2, source, "the time embedding width");
  nlohmann::json mid = nullptr;
  if (t.contains(p + "middle_block.1.proj_in.weight")) {
    mid = "UNetMidBlock2DCrossAttn";
  } else if (t.contains(p + "middle_block.0.in_layers.0.weight")) {
    fail(Errc::kUnsupported, source + ": the UNet mid block has no attention (UNetMidBlock2D), which fd's UNet does not implement");
  }

  nlohmann::json j = {
      {"_class_name", "UNet2DConditionModel"},
      {"_diffusers_version", "0.23.0"},
      {"act_fn", "silu"},
      {"addition_embed_type", nullptr},
      {"addition_embed_type_num_heads", 64},
      {"addition_time_embed_dim", nullptr},
      {"attention_head_dim", 8},
      {"attention_type", "default"},
      {"block_out_channels", channels},
      {"center_input_sample", false},
      {"class_embed_type", nullptr},
      {"class_embeddings_concat", false},
      {"conv_in_kernel", conv_in[2]},
      {"conv_out_kernel", conv_out[2]},
      {"cross_attention_dim", ldm_int_or_list(cross)},
      {"cross_attention_norm", nullptr},
      {"down_block_types", downs},
      {"downsample_padding", 1},
      {"dropout", 0.0},
      {"dual_cross_attention", false},
      {"encoder_hid_dim", nullptr},
      {"encoder_hid_dim_type", nullptr},
      {"flip_sin_to_cos", true},
      {"freq_shift", 0},
      {"in_channels", conv_in[1]},
      {"layers_per_block", lay.layers_per_block},
      {"mid_block_only_cross_attention", nullptr},
      {"mid_block_scale_factor", 1},
      {"mid_block_type", mid},
      {"norm_eps", 1e-05},
      {"norm_num_groups", 32},
      {"num_attention_heads", nullptr},
      {"num_class_embeds", nullptr},
      {"only_cross_attention", false},
      {"out_channels", conv_out[0]},
      {"projection_class_embeddings_input_dim", nullptr},
      {"resnet_out_scale_factor", 1.0},
      {"resnet_skip_time_act", false},
      {"resnet_time_scale_shift", "default"},
      {"reverse_transformer_layers_per_block", nullptr},
      {"sample_size", 64},
      {"time_cond_proj_dim", nullptr},
      {"time_embedding_act_fn", nullptr},
      {"time_embedding_dim", temb == 4 * channels.front() ? nlohmann::json(nullptr) : nlohmann::json(temb)},
      {"time_embedding_type", "positional"},
      {"timestep_post_act", nullptr},
      {"transformer_layers_per_block", ldm_int_or_list(tlayers)},
      {"up_block_types", ups},
      {"upcast_attention", false},
      {"use_linear_projection", linear_proj},
  };
  return j;
}

/// The diffusers AutoencoderKL config.json of an LDM VAE, from tensor shapes: in/out/latent channels,
/// block_out_channels, layers_per_block. Assumed: norm_num_groups 32, scaling_factor 0.18215 (SD 1.x),
/// sample_size 512. Null if the file holds no VAE.
inline nlohmann::json infer_ldm_vae_config(TensorShapes const& t, std::string const& source) {
  using namespace detail;
  std::string const p(ldm::kVaePrefix);
  int const blocks = ldm_count(t, p + "encoder.down.");
  if (blocks == 0) return nullptr;
  std::vector<int> channels;
  for (int b = 0; b < blocks; ++b) {
    channels.push_back(static_cast<int>(ldm_dim(t, p + "encoder.down." + std::to_string(b) + ".block.0.conv1.weight", 0, 4,
                                                source, "the VAE block_out_channels[" + std::to_string(b) + "]")));
  }
  std::string const down = "DownEncoderBlock2D", upb = "UpDecoderBlock2D";
  return nlohmann::json{
      {"_class_name", "AutoencoderKL"},
      {"_diffusers_version", "0.23.0"},
      {"act_fn", "silu"},
      {"block_out_channels", channels},
      {"down_block_types", std::vector<std::string>(static_cast<std::size_t>(blocks), down)},
      {"force_upcast", true},
      {"in_channels", ldm_dim(t, p + "encoder.conv_in.weight", 1, 4, source, "the VAE in_channels")},
      {"latent_channels", ldm_dim(t, p + "decoder.conv_in.weight", 1, 4, source, "the VAE latent_channels")},
      {"layers_per_block", ldm_count(t, p + "encoder.down.0.block.")},
      {"norm_num_groups", 32},
      {"out_channels", ldm_dim(t, p + "decoder.conv_out.weight", 0, 4, source, "the VAE out_channels")},
      {"sample_size", 512},
      {"scaling_factor", 0.18215},
      {"up_block_types", std::vector<std::string>(static_cast<std::size_t>(blocks), upb)},
  };
}

/// The transformers CLIPTextConfig config.json of an SD 1.x text encoder, from tensor shapes: vocab_size,
/// hidden_size, intermediate_size, num_hidden_layers, max_position_embeddings. Assumed: 64-wide heads
/// (num_attention_heads = hidden/64; 1 if hidden < 64), quick_gelu, layer_norm_eps 1e-5, SD's special-token
/// ids. Null if the file holds no text encoder.
inline nlohmann::json infer_ldm_text_encoder_config(TensorShapes const& t, std::string const& source) {
  using namespace detail;
  std::string p(ldm::kTextPrefix);
  if (t.lower_bound(p) == t.end() || !t.lower_bound(p)->first.starts_with(p)) return nullptr;
  if (!t.contains(p + "embeddings.token_embedding.weight")) p += "text_model.";
  auto const vocab = ldm_dim(t, p + "embeddings.token_embedding.weight", 0, 2, source, "the text encoder vocab_size");
  auto const hidden = ldm_dim(t, p + "embeddings.token_embedding.weight", 1, 2, source, "the text encoder hidden_size");
  auto const positions =
      ldm_dim(t, p + "embeddings.position_embedding.weight", 0, 2, source, "the text encoder max_position_embeddings");
  auto const inter = ldm_dim(t, p + "encoder.layers.0.mlp.fc1.weight", 0, 2, source, "the text encoder intermediate_size");
  return nlohmann::json{
      {"architectures", nlohmann::json::array({"CLIPTextModel"})},
      {"attention_dropout", 0.0},
      {"bos_token_id", 0},
      {"dropout", 0.0},
      {"eos_token_id", 2},
      {"hidden_act", "quick_gelu"},
      {"hidden_size", hidden},
      {"initializer_factor", 1.0},
      {"initializer_range", 0.02},
      {"intermediate_size", inter},
      {"layer_norm_eps", 1e-05},
      {"max_position_embeddings", positions},
      {"model_type", "clip_text_model"},
      {"num_attention_heads", hidden >= 64 && hidden % 64 == 0 ? hidden / 64 : 1},
      {"num_hidden_layers", ldm_count(t, p + "encoder.layers.")},
      {"pad_token_id", 1},
      {"projection_dim", hidden},
      {"torch_dtype", "float32"},
      {"transformers_version", "4.26.0"},
      {"vocab_size", vocab},
  };
}

/// Opens a single-file SD 1.x checkpoint (`.safetensors`, LDM names) as three diffusers-named checkpoints
/// with inferred configs (then patched by `options`). Each Checkpoint is a view of the one mapped file:
/// load errors name the file, the original tensor name and the diffusers name, and require_all_used()
/// lists leftovers by their original names. A name a loader wants but the file lacks is reported with the
/// LDM name it would have come from.
/// Throws kIo/kFormat for an unreadable or malformed file, kUnsupported for a pickle file (.ckpt, .pt, .pth,
/// .bin) or an SD 2.x / SDXL / ControlNet
/// file (naming what was found), kUnexpectedTensor for unknown tensors, kMissingTensor / kShapeMismatch
/// when a tensor needed to infer a config is absent or misshaped, kUnsupported when the text encoder's
/// width differs from the UNet's cross-attention width.
inline LdmComponents open_ldm_checkpoint(std::filesystem::path const& file, LdmOptions const& options = {}) {
  std::string const source = file.string();
  std::string const ext = file.extension().string();
  if (ext == ".ckpt" || ext == ".pt" || ext == ".pth" || ext == ".bin") {
    fail(Errc::kUnsupported, source + ": PyTorch pickle checkpoints are not supported (reading them safely needs a "
                                      "Python-compatible unpickler); use the .safetensors release of the model, or "
                                      "convert it, e.g. with safetensors.torch.save_file(torch.load(f)[\"state_dict\"], ...)");
  }
  if (ext == ".json") {
    fail(Errc::kInvalidArgument, source + ": a single-file checkpoint is one .safetensors file, not a JSON index");
  }
  Checkpoint base = Checkpoint::open(file);
  TensorShapes shapes;
  for (std::string const& n : base.names()) shapes.emplace(n, base.info(n).shape);

  LdmMapping m = map_ldm_names(shapes, source);
  nlohmann::json unet = infer_ldm_unet_config(shapes, source);
  nlohmann::json vae = infer_ldm_vae_config(shapes, source);
  nlohmann::json text = infer_ldm_text_encoder_config(shapes, source);
  if (!options.unet_config.is_null()) unet.merge_patch(options.unet_config);
  if (!options.vae_config.is_null() && !vae.is_null()) vae.merge_patch(options.vae_config);
  if (!options.text_encoder_config.is_null() && !text.is_null()) text.merge_patch(options.text_encoder_config);
  if (!text.is_null()) {
    auto const hidden = text.at("hidden_size");
    auto const& cross = unet.at("cross_attention_dim");
    bool const ok = cross.is_array() ? std::all_of(cross.begin(), cross.end(), [&](auto const& c) { return c == hidden; })
                                     : cross == hidden;
    if (!ok) {
      fail(Errc::kUnsupported, source + ": the text encoder's width " + hidden.dump() +
                                   " differs from the UNet's cross_attention_dim " + cross.dump() +
                                   " (not an SD 1.x checkpoint)");
    }
  }

  std::string const fname = file.filename().string();
  auto where = [fname](std::string ldm) {
    return ldm.empty() ? std::string() : fname + " has no tensor '" + ldm + "', which would provide it";
  };
  int const lpb = m.unet_layers_per_block;
  std::vector<bool> const up_attn = m.unet_up_attention;
  int const vae_blocks = m.vae_blocks;
  bool const short_text = shapes.contains(std::string(ldm::kTextPrefix) + "embeddings.token_embedding.weight");
  LdmComponents c{
      .unet = Checkpoint::view(base, m.unet,
                               [=](std::string_view d) { return where(ldm::unet_ldm_name(d, lpb, up_attn)); }),
      .vae = Checkpoint::view(base, m.vae,
                              [=](std::string_view d) { return where(ldm::vae_ldm_name(d, vae_blocks)); }),
      .text_encoder = Checkpoint::view(base, m.text_encoder,
                                       [=](std::string_view d) {
                                         if (!d.starts_with("text_model.")) return std::string();
                                         return where(std::string(ldm::kTextPrefix) +
                                                      std::string(short_text ? d.substr(11) : d));
                                       }),
      .unet_config = std::move(unet),
      .vae_config = std::move(vae),
      .text_encoder_config = std::move(text),
      .ignored = std::move(m.ignored),
  };
  return c;
}

}  // namespace fd::io
