#pragma once
/// @file
/// diffusers' Attention (classic processor semantics), GEGLU FeedForward, BasicTransformerBlock and
/// Transformer2DModel (continuous input), as used by SD 1.x/2.x UNets.

#include <cmath>
#include <string>
#include <vector>

#include "fd/nn/layers.hpp"

namespace fd::nn {

/// Multi-head attention with bias-free q/k/v projections and a biased output projection
/// (`to_q`, `to_k`, `to_v`, `to_out.0`). Self-attention keeps q, k, v in one fused [3D, C] weight and
/// cross-attention k, v in one [2D, Cctx] weight, so each is a single GEMM; the checkpoint names are
/// views into those.
template <class B>
struct Attention {
  int heads = 1, dim_head = 1, query_dim = 0, context_dim = 0;
  bool self_attention = true;
  Tensor<B> fused_qkv;  // [3D, C] (self) or [D, C] q only (cross)
  Tensor<B> fused_kv;   // [2D, Cctx] (cross only)
  Linear<B> to_q, to_k, to_v, to_out;

  Attention() = default;
  /// @param context_dim_ 0 for self-attention.
  Attention(B const& be, int query_dim_, int context_dim_, int heads_, int dim_head_)
      : heads(heads_), dim_head(dim_head_), query_dim(query_dim_), context_dim(context_dim_) {
    int const inner = heads * dim_head;
    self_attention = context_dim == 0;
    if (self_attention) {
      fused_qkv = parameter(be, {3 * inner, query_dim});
      to_q = Linear<B>::view_of(fused_qkv.slice(0, 0, inner));
      to_k = Linear<B>::view_of(fused_qkv.slice(0, inner, 2 * inner));
      to_v = Linear<B>::view_of(fused_qkv.slice(0, 2 * inner, 3 * inner));
    } else {
      to_q = Linear<B>(be, query_dim, inner, false);
      fused_kv = parameter(be, {2 * inner, context_dim});
      to_k = Linear<B>::view_of(fused_kv.slice(0, 0, inner));
      to_v = Linear<B>::view_of(fused_kv.slice(0, inner, 2 * inner));
    }
    to_out = Linear<B>(be, inner, query_dim, true);
  }

  template <class V>
  void visit(V&& v, std::string const& p) {
    to_q.visit(v, p + "to_q.");
    to_k.visit(v, p + "to_k.");
    to_v.visit(v, p + "to_v.");
    to_out.visit(v, p + "to_out.0.");
  }

  /// x [N, L, C] (already normalised); ctx [N, Lc, Cctx] for cross-attention; returns
  /// to_out(attention) + residual, [N, L, C].
  Tensor<B> operator()(B const& be, Tensor<B> const& x, Tensor<B> const& ctx, Tensor<B> const& residual) const {
    int const inner = heads * dim_head;
    float const scale = 1.0f / std::sqrt(static_cast<float>(dim_head));
    Tensor<B> o;
    if (self_attention) {
      Tensor<B> qkv = linear(be, x, fused_qkv);                                      // [N, L, 3D]
      o = attention(be, qkv.slice(2, 0, inner), qkv.slice(2, inner, 2 * inner),       // [N, L, D]
                    qkv.slice(2, 2 * inner, 3 * inner), heads, scale);
    } else {
      Tensor<B> q = to_q(be, x);                                                     // [N, L, D]
      Tensor<B> kv = linear(be, ctx, fused_kv);                                      // [N, Lc, 2D]
      o = attention(be, q, kv.slice(2, 0, inner), kv.slice(2, inner, 2 * inner), heads, scale);
    }
    return to_out(be, o, residual);                                                  // [N, L, C]
  }
};

/// GEGLU feed-forward: net.0.proj Linear(C, 2*4C) -> value * gelu(gate) -> net.2 Linear(4C, C).
template <class B>
struct FeedForward {
  Linear<B> proj, out;
  FeedForward() = default;
  FeedForward(B const& be, int dim, int mult = 4) : proj(be, dim, 2 * mult * dim), out(be, mult * dim, dim) {}
  template <class V>
  void visit(V&& v, std::string const& p) {
    proj.visit(v, p + "net.0.proj.");
    out.visit(v, p + "net.2.");
  }
  Tensor<B> operator()(B const& be, Tensor<B> const& x, Tensor<B> const& residual) const {
    Tensor<B> h = geglu(be, proj(be, x));  // [N, L, 4C]
    return out(be, h, residual);           // [N, L, C]
  }
};

/// Pre-LayerNorm block: x += attn1(LN1 x); x += attn2(LN2 x, ctx); x += ff(LN3 x).
/// With only_cross_attention, attn1 also attends to the context.
template <class B>
struct BasicTransformerBlock {
  LayerNorm<B> norm1, norm2, norm3;
  Attention<B> attn1, attn2;
  FeedForward<B> ff;
  bool only_cross_attention = false;

  BasicTransformerBlock() = default;
  BasicTransformerBlock(B const& be, int dim, int heads, int dim_head, int context_dim, bool only_cross)
      : norm1(be, dim, 1e-5f), norm2(be, dim, 1e-5f), norm3(be, dim, 1e-5f),
        attn1(be, dim, only_cross ? context_dim : 0, heads, dim_head), attn2(be, dim, context_dim, heads, dim_head),
        ff(be, dim), only_cross_attention(only_cross) {}

  template <class V>
  void visit(V&& v, std::string const& p) {
    norm1.visit(v, p + "norm1.");
    attn1.visit(v, p + "attn1.");
    norm2.visit(v, p + "norm2.");
    attn2.visit(v, p + "attn2.");
    norm3.visit(v, p + "norm3.");
    ff.visit(v, p + "ff.");
  }

  Tensor<B> operator()(B const& be, Tensor<B> x, Tensor<B> const& ctx) const {
    x = attn1(be, norm1(be, x), only_cross_attention ? ctx : Tensor<B>{}, x);  // [N, L, C]
    x = attn2(be, norm2(be, x), ctx, x);                                      // [N, L, C]
    return ff(be, norm3(be, x), x);                                           // [N, L, C]
  }
};

/// Transformer2DModel for continuous inputs: GroupNorm(eps 1e-6) -> proj_in (1x1 conv or linear) ->
/// transformer blocks over the H*W tokens -> proj_out -> + input.
template <class B>
struct Transformer2D {
  GroupNorm<B> norm;
  bool linear_projection = false;
  Conv2d<B> proj_in_conv, proj_out_conv;
  Linear<B> proj_in_linear, proj_out_linear;
  std::vector<BasicTransformerBlock<B>> blocks;

  Transformer2D() = default;
  Transformer2D(B const& be, int channels, int heads, int context_dim, int groups, int layers, bool use_linear,
                bool only_cross)
      : norm(be, groups, channels, 1e-6f), linear_projection(use_linear) {
    int const dim_head = channels / heads;
    int const inner = heads * dim_head;
    if (use_linear) {
      proj_in_linear = Linear<B>(be, channels, inner);
      proj_out_linear = Linear<B>(be, inner, channels);
    } else {
      proj_in_conv = Conv2d<B>(be, channels, inner, 1);
      proj_out_conv = Conv2d<B>(be, inner, channels, 1);
    }
    for (int i = 0; i < layers; ++i) blocks.emplace_back(be, inner, heads, dim_head, context_dim, only_cross);
  }

  template <class V>
  void visit(V&& v, std::string const& p) {
    norm.visit(v, p + "norm.");
    if (linear_projection) {
      proj_in_linear.visit(v, p + "proj_in.");
    } else {
      proj_in_conv.visit(v, p + "proj_in.");
    }
    for (std::size_t i = 0; i < blocks.size(); ++i) blocks[i].visit(v, p + "transformer_blocks." + std::to_string(i) + ".");
    if (linear_projection) {
      proj_out_linear.visit(v, p + "proj_out.");
    } else {
      proj_out_conv.visit(v, p + "proj_out.");
    }
  }

  Tensor<B> operator()(B const& be, Tensor<B> const& x, Tensor<B> const& ctx) const {
    Tensor<B> h = norm(be, x);                                                         // [N, C, H, W]
    // Conv 1x1 and per-token linear are the same product; only the weight's shape differs.
    Linear<B> const& pin = linear_projection ? proj_in_linear : as_linear(proj_in_conv);
    Linear<B> const& pout = linear_projection ? proj_out_linear : as_linear(proj_out_conv);
    Tensor<B> t = channels_to_tokens(be, h, pin.weight, pin.bias);                     // [N, HW, D]
    for (auto const& blk : blocks) t = blk(be, t, ctx);                                 // [N, HW, D]
    return tokens_to_channels(be, t, pout.weight, pout.bias, x);                        // [N, C, H, W]
  }

 private:
  static Linear<B> as_linear(Conv2d<B> const& c) { return Linear<B>::view_of(c.weight, c.bias); }
};

}  // namespace fd::nn
