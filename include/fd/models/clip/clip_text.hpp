#pragma once
/// @file
/// fd::models::ClipTextModel: transformers' CLIPTextModel (the Stable Diffusion text encoder):
/// token + position embeddings, pre-LayerNorm layers with causal self-attention, final LayerNorm.
///
/// @code
///   auto te = fd::models::ClipTextModel<fd::backend::Cpu>::load(cpu, "stable-diffusion-v1-5/text_encoder");
///   fd::Tensor<fd::backend::Cpu> ctx = te.encode(ids, 2);   // [2, 77, 768], the UNet's context
/// @endcode

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fd/backend/op_params.hpp"
#include "fd/backend/traits.hpp"
#include "fd/io/checkpoint.hpp"
#include "fd/models/model_folder.hpp"
#include "fd/models/clip/clip_config.hpp"
#include "fd/nn/layers.hpp"
#include "fd/nn/load.hpp"

namespace fd::models {

template <class B>
struct ClipTextOutput {
  Tensor<B> last_hidden_state;           ///< [B, L, D] after the final LayerNorm
  Tensor<B> pooler_output;               ///< [B, D]: last_hidden_state at each row's first highest id (EOS)
  std::vector<Tensor<B>> hidden_states;  ///< if requested: the embeddings, then each layer's output
};

template <class B>
class ClipTextModel {
  static_assert(backend::Backend<B>, "ClipTextModel<B>: B is not an fd backend (see docs/extending.md#backends)");

 public:
  using Config = ClipTextConfig;

  ClipTextModel(B const& be, ClipTextConfig cfg) : be_(be), cfg_(std::move(cfg)) {
    int const d = cfg_.hidden_size;
    token_embedding_ = nn::parameter(be, {cfg_.vocab_size, d});
    position_embedding_ = nn::parameter(be, {cfg_.max_position_embeddings, d});
    for (int i = 0; i < cfg_.num_hidden_layers; ++i) {
      Layer l;
      l.norm1 = nn::LayerNorm<B>(be, d, cfg_.layer_norm_eps);
      l.norm2 = nn::LayerNorm<B>(be, d, cfg_.layer_norm_eps);
      // q, k, v in one [3D, D] weight so the projection is a single GEMM; the checkpoint names are views.
      l.qkv_weight = nn::parameter(be, {3 * d, d});
      l.qkv_bias = nn::parameter(be, {3 * d});
      l.q = nn::Linear<B>::view_of(l.qkv_weight.slice(0, 0, d), l.qkv_bias.slice(0, 0, d));
      l.k = nn::Linear<B>::view_of(l.qkv_weight.slice(0, d, 2 * d), l.qkv_bias.slice(0, d, 2 * d));
      l.v = nn::Linear<B>::view_of(l.qkv_weight.slice(0, 2 * d, 3 * d), l.qkv_bias.slice(0, 2 * d, 3 * d));
      l.out = nn::Linear<B>(be, d, d);
      l.fc1 = nn::Linear<B>(be, d, cfg_.intermediate_size);
      l.fc2 = nn::Linear<B>(be, cfg_.intermediate_size, d);
      layers_.push_back(std::move(l));
    }
    final_norm_ = nn::LayerNorm<B>(be, d, cfg_.layer_norm_eps);
  }

  /// A transformers text encoder folder: config.json + model.safetensors (or sharded / fp16 variant).
  static ClipTextModel load(B const& be, std::filesystem::path const& dir, std::string_view variant = "") {
    return load_model_folder<ClipTextModel>(be, dir, "model", variant);
  }

  /// Builds the model and binds its weights by transformers name (`text_model.*`). The constant
  /// `position_ids` buffer is skipped; anything else left over is an error.
  static ClipTextModel from_checkpoint(B const& be, ClipTextConfig cfg, io::Checkpoint& ckpt) {
    ClipTextModel m(be, std::move(cfg));
    ckpt.ignore("text_model.embeddings.position_ids");
    nn::load_parameters(be, m, ckpt, "");
    return m;
  }

  ClipTextConfig const& config() const noexcept { return cfg_; }

  template <class V>
  void visit(V&& v, std::string const& p = "") {
    std::string const t = p + "text_model.";
    v(t + "embeddings.token_embedding.weight", token_embedding_);
    v(t + "embeddings.position_embedding.weight", position_embedding_);
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      std::string const l = t + "encoder.layers." + std::to_string(i) + ".";
      Layer& L = layers_[i];
      L.q.visit(v, l + "self_attn.q_proj.");
      L.k.visit(v, l + "self_attn.k_proj.");
      L.v.visit(v, l + "self_attn.v_proj.");
      L.out.visit(v, l + "self_attn.out_proj.");
      L.norm1.visit(v, l + "layer_norm1.");
      L.fc1.visit(v, l + "mlp.fc1.");
      L.fc2.visit(v, l + "mlp.fc2.");
      L.norm2.visit(v, l + "layer_norm2.");
    }
    final_norm_.visit(v, t + "final_layer_norm.");
  }

  /// Full forward. `input_ids` holds batch x L ids (row-major), L <= max_position_embeddings.
  ClipTextOutput<B> forward(std::span<std::int64_t const> input_ids, std::int64_t batch,
                            bool output_hidden_states = false) const {
    ClipTextOutput<B> out;
    Tensor<B> h = run(input_ids, batch, cfg_.num_hidden_layers, output_hidden_states ? &out.hidden_states : nullptr);
    out.last_hidden_state = final_norm_(be_, h);
    std::int64_t const len = static_cast<std::int64_t>(input_ids.size()) / batch;
    out.pooler_output = Tensor<B>::empty(be_, {batch, cfg_.hidden_size});
    for (std::int64_t b = 0; b < batch; ++b) {
      auto const row = input_ids.subspan(static_cast<std::size_t>(b * len), static_cast<std::size_t>(len));
      std::int64_t const eos = std::max_element(row.begin(), row.end()) - row.begin();  // first maximum
      Tensor<B> dst = out.pooler_output.select(0, b);
      out.last_hidden_state.select(0, b).select(0, eos).copy_to(be_, dst);
    }
    return out;
  }

  /// What Stable Diffusion feeds the UNet: last_hidden_state for clip_skip 0, otherwise (diffusers
  /// 0.23) final_layer_norm(hidden_states[-(clip_skip + 1)]). The skipped layers are not run.
  Tensor<B> encode(std::span<std::int64_t const> input_ids, std::int64_t batch, int clip_skip = 0) const {
    if (clip_skip < 0 || clip_skip >= cfg_.num_hidden_layers) {
      fail(Errc::kInvalidArgument, "text encoder: clip_skip " + std::to_string(clip_skip) + " out of range [0, " +
                                       std::to_string(cfg_.num_hidden_layers) + ")");
    }
    return final_norm_(be_, run(input_ids, batch, cfg_.num_hidden_layers - clip_skip, nullptr));
  }

 private:
  struct Layer {
    nn::LayerNorm<B> norm1, norm2;
    Tensor<B> qkv_weight, qkv_bias;
    nn::Linear<B> q, k, v, out, fc1, fc2;
  };

  // Embeddings and the first `layers` layers; the output before the final LayerNorm.
  Tensor<B> run(std::span<std::int64_t const> ids, std::int64_t batch, int layers, std::vector<Tensor<B>>* hidden) const {
    if (batch <= 0 || ids.empty() || static_cast<std::int64_t>(ids.size()) % batch != 0) {
      fail(Errc::kShapeMismatch, "text encoder: " + std::to_string(ids.size()) + " input ids do not form a batch of " +
                                     std::to_string(batch));
    }
    std::int64_t const len = static_cast<std::int64_t>(ids.size()) / batch;
    if (len > cfg_.max_position_embeddings) {
      fail(Errc::kShapeMismatch, "text encoder: sequences of " + std::to_string(len) + " tokens, the model has " +
                                     std::to_string(cfg_.max_position_embeddings) + " positions");
    }
    int const d = cfg_.hidden_size, heads = cfg_.num_attention_heads;
    float const scale = 1.0f / std::sqrt(static_cast<float>(cfg_.head_dim()));
    Tensor<B> h = embedding(be_, token_embedding_, ids, batch, position_embedding_);  // [B, L, D]
    if (hidden) hidden->push_back(h);
    for (int i = 0; i < layers; ++i) {
      Layer const& L = layers_[static_cast<std::size_t>(i)];
      Tensor<B> qkv = linear(be_, L.norm1(be_, h), L.qkv_weight, L.qkv_bias);  // [B, L, 3D]
      Tensor<B> a = attention(be_, qkv.slice(2, 0, d), qkv.slice(2, d, 2 * d), qkv.slice(2, 2 * d, 3 * d), heads, scale,
                              backend::AttentionMask::kCausal);
      h = L.out(be_, a, h);
      Tensor<B> m = L.fc1(be_, L.norm2(be_, h));  // [B, L, I]
      if (cfg_.hidden_act == ClipActivation::kQuickGelu) {
        quick_gelu_(be_, m);
      } else {
        gelu_(be_, m);
      }
      h = L.fc2(be_, m, h);
      if (hidden) hidden->push_back(h);
    }
    return h;
  }

  B be_;
  ClipTextConfig cfg_;
  Tensor<B> token_embedding_, position_embedding_;
  std::vector<Layer> layers_;
  nn::LayerNorm<B> final_norm_;
};

}  // namespace fd::models
