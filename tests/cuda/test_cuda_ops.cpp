// Conformance of every CUDA op with the CPU op of the same name, on fresh random inputs, in f32 (to
// 1e-5..1e-4 of the output's largest magnitude) and in f16 / bf16 storage (to the rounding of that
// storage: 1e-2 and 4e-2).

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <map>
#include <vector>

#include "common/compare.hpp"
#include "cuda/cuda_test_common.hpp"
#include "fd/backend/cpu/ops.hpp"
#include "fd/backend/cuda/ops.hpp"
#include "fd/nn/init.hpp"

using namespace fdtest::cuda;
using fd::DType;

namespace {

G& gpu(DType dt) {
  static std::map<DType, G> gs;
  auto it = gs.find(dt);
  if (it == gs.end()) it = gs.emplace(dt, G{{.dtype = dt}}).first;
  return it->second;
}

std::uint64_t next_seed() {
  static std::uint64_t s = 1000;
  return ++s;
}

TC rnd(fd::Shape s, float scale = 1.0f) {
  std::uint64_t const seed = next_seed();
  std::vector<float> v(static_cast<std::size_t>(s.numel()));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = scale * fd::nn::detail::approx_normal(seed, i);
  return TC::from_host(cpu(), s, v);
}

// The CPU tensor rounded through dtype dt, so both backends see the same input values.
TC rounded(TC const& t, DType dt) { return t.to(cpu(), dt).to(cpu(), DType::kF32); }

TG up(G& g, TC const& t) {
  return fd::backend::cast(g, TG::from_host(g, t.shape(), t.contiguous(cpu()).to_vector_f32(cpu())), g.dtype());
}

double tol(DType dt, double f32) { return dt == DType::kF32 ? f32 : dt == DType::kF16 ? 1e-2 : 4e-2; }

constexpr DType kAll[] = {DType::kF32, DType::kF16, DType::kBF16};

#define CHECK_CLOSE(got, want, t)                                              \
  do {                                                                        \
    double const e_ = fdtest::rel_to_max(cpu(), (got), (want));              \
    INFO(#got << " in " << fd::dtype_name(dt) << ": rel_to_max " << e_);      \
    CHECK(e_ <= (t));                                                         \
  } while (0)

}  // namespace

TEST_CASE("cuda: linear, channels_to_tokens, tokens_to_channels match the CPU", "[cuda][ops]") {
  for (DType dt : kAll) {
    G& g = gpu(dt);
    TC x = rounded(rnd({2, 37, 96}), dt), w = rounded(rnd({80, 96}, 0.1f), dt), b = rounded(rnd({80}), dt);
    TC r = rounded(rnd({2, 37, 80}), dt);
    CHECK_CLOSE(down(g, linear(g, up(g, x), up(g, w), up(g, b), up(g, r))), linear(cpu(), x, w, b, r), tol(dt, 1e-5));
    CHECK_CLOSE(down(g, linear(g, up(g, x), up(g, w))), linear(cpu(), x, w), tol(dt, 1e-5));
    // A row-strided view (one third of a fused projection).
    TC wide = rounded(rnd({2, 37, 288}), dt);
    TG wide_g = up(g, wide);
    CHECK_CLOSE(down(g, linear(g, wide_g.slice(2, 96, 192), up(g, w))), linear(cpu(), wide.slice(2, 96, 192), w),
                tol(dt, 1e-5));
    TC img = rounded(rnd({2, 64, 6, 5}), dt), pw = rounded(rnd({48, 64}, 0.1f), dt), pb = rounded(rnd({48}), dt);
    TC toks = channels_to_tokens(cpu(), img, pw, pb);
    CHECK_CLOSE(down(g, channels_to_tokens(g, up(g, img), up(g, pw), up(g, pb))), toks, tol(dt, 1e-5));
    TC ow = rounded(rnd({64, 48}, 0.1f), dt), ob = rounded(rnd({64}), dt);
    TC tk = rounded(toks, dt);
    CHECK_CLOSE(down(g, tokens_to_channels(g, up(g, tk), up(g, ow), up(g, ob), up(g, img))),
                tokens_to_channels(cpu(), tk, ow, ob, img), tol(dt, 1e-5));
  }
}

TEST_CASE("cuda: attention matches the CPU (masks, strided views, query chunks)", "[cuda][ops]") {
  for (DType dt : kAll) {
    G& g = gpu(dt);
    TC q = rounded(rnd({3, 50, 64}), dt), k = rounded(rnd({3, 77, 64}), dt), v = rounded(rnd({3, 77, 64}), dt);
    float const s = 1.0f / std::sqrt(16.0f);
    CHECK_CLOSE(down(g, attention(g, up(g, q), up(g, k), up(g, v), 4, s)), attention(cpu(), q, k, v, 4, s),
                tol(dt, 1e-5));
    TC qs = rounded(rnd({2, 40, 64}), dt);
    CHECK_CLOSE(down(g, attention(g, up(g, qs), up(g, qs), up(g, qs), 2, s, fd::backend::AttentionMask::kCausal)),
                attention(cpu(), qs, qs, qs, 2, s, fd::backend::AttentionMask::kCausal), tol(dt, 1e-5));
    // Views into a fused QKV projection [B, L, 3C].
    TC qkv = rounded(rnd({2, 33, 192}), dt);
    TG qkv_g = up(g, qkv);
    CHECK_CLOSE(down(g, attention(g, qkv_g.slice(2, 0, 64), qkv_g.slice(2, 64, 128), qkv_g.slice(2, 128, 192), 8, s)),
                attention(cpu(), qkv.slice(2, 0, 64), qkv.slice(2, 64, 128), qkv.slice(2, 128, 192), 8, s),
                tol(dt, 1e-5));
  }
  // A workspace of a few rows forces many query chunks; the result must not change.
  G small{{.dtype = DType::kF32, .attention_workspace = 4096}};
  DType const dt = DType::kF32;
  TC q = rnd({2, 70, 32}), k = rnd({2, 45, 32});
  CHECK_CLOSE(down(small, attention(small, up(small, q), up(small, k), up(small, k), 2, 0.25f,
                                    fd::backend::AttentionMask::kCausal)),
              attention(cpu(), q, k, k, 2, 0.25f, fd::backend::AttentionMask::kCausal), 1e-5);
}

TEST_CASE("cuda: the fused f16/bf16 attention kernel matches the CPU at SD's head widths", "[cuda][ops][flash]") {
  // Head widths 40/80/160 (SD 1.x), 64 (SD 2.x, CLIP); query and key counts off the 64/32 tiles.
  struct Case {
    std::int64_t b, lq, lk;
    int heads, d;
    bool causal;
  };
  for (DType dt : {DType::kF16, DType::kBF16}) {
    G fused{{.dtype = dt, .fused_attention = true}};
    G plain{{.dtype = dt, .fused_attention = false}};
    for (Case c : {Case{2, 130, 77, 8, 40, false}, Case{1, 100, 100, 8, 80, false}, Case{2, 65, 33, 4, 160, false},
                   Case{2, 77, 77, 12, 64, true}, Case{3, 16, 200, 2, 24, false}}) {
      std::int64_t const hd = c.heads * c.d;
      TC q = rounded(rnd({c.b, c.lq, hd}), dt), k = rounded(rnd({c.b, c.lk, hd}), dt), v = rounded(rnd({c.b, c.lk, hd}), dt);
      auto const mask = c.causal ? fd::backend::AttentionMask::kCausal : fd::backend::AttentionMask::kNone;
      float const s = 1.0f / std::sqrt(static_cast<float>(c.d));
      TC const want = attention(cpu(), q, k, v, c.heads, s, mask);
      INFO("b " << c.b << " lq " << c.lq << " lk " << c.lk << " heads " << c.heads << " d " << c.d);
      CHECK_CLOSE(down(fused, attention(fused, up(fused, q), up(fused, k), up(fused, v), c.heads, s, mask)), want,
                  tol(dt, 0));
      CHECK_CLOSE(down(plain, attention(plain, up(plain, q), up(plain, k), up(plain, v), c.heads, s, mask)), want,
                  tol(dt, 0));
    }
  }
}

TEST_CASE("cuda: conv2d and its epilogues match the CPU", "[cuda][ops]") {
  for (DType dt : kAll) {
    G& g = gpu(dt);
    TC x = rounded(rnd({2, 16, 13, 11}), dt);
    TC w3 = rounded(rnd({24, 16, 3, 3}, 0.1f), dt), b = rounded(rnd({24}), dt);
    CHECK_CLOSE(down(g, conv2d(g, up(g, x), up(g, w3), up(g, b), {.stride = 1, .padding = 1})),
                conv2d(cpu(), x, w3, b, {.stride = 1, .padding = 1}), tol(dt, 1e-5));
    CHECK_CLOSE(down(g, conv2d(g, up(g, x), up(g, w3), up(g, b), {.stride = 2, .padding = 1})),
                conv2d(cpu(), x, w3, b, {.stride = 2, .padding = 1}), tol(dt, 1e-5));
    TC w1 = rounded(rnd({24, 16, 1, 1}, 0.2f), dt);
    CHECK_CLOSE(down(g, conv2d(g, up(g, x), up(g, w1), TG{}, {})), conv2d(cpu(), x, w1, TC{}, {}), tol(dt, 1e-5));
    TC sb = rounded(rnd({2, 24}), dt), res = rounded(rnd({2, 24, 13, 11}), dt);
    fd::backend::Conv2dEpilogue<C> ec{.sample_bias = sb, .residual = res};
    fd::backend::Conv2dEpilogue<G> eg{.sample_bias = up(g, sb), .residual = up(g, res)};
    CHECK_CLOSE(down(g, conv2d(g, up(g, x), up(g, w3), up(g, b), {.stride = 1, .padding = 1}, eg)),
                conv2d(cpu(), x, w3, b, {.stride = 1, .padding = 1}, ec), tol(dt, 1e-5));
  }
}

TEST_CASE("cuda: group_norm and layer_norm match the CPU", "[cuda][ops]") {
  for (DType dt : kAll) {
    G& g = gpu(dt);
    TC x = rounded(rnd({2, 32, 9, 7}, 3.0f), dt);
    TC ga = rounded(rnd({32}), dt), be = rounded(rnd({32}), dt);
    for (auto act : {fd::backend::Activation::kNone, fd::backend::Activation::kSilu}) {
      CHECK_CLOSE(down(g, group_norm(g, up(g, x), 8, up(g, ga), up(g, be), 1e-5f, act)),
                  group_norm(cpu(), x, 8, ga, be, 1e-5f, act), tol(dt, 1e-5));
    }
    TC t = rounded(rnd({3, 19, 1280}, 2.0f), dt), lg = rounded(rnd({1280}), dt), lb = rounded(rnd({1280}), dt);
    CHECK_CLOSE(down(g, layer_norm(g, up(g, t), up(g, lg), up(g, lb), 1e-5f)), layer_norm(cpu(), t, lg, lb, 1e-5f),
                tol(dt, 1e-5));
  }
}

TEST_CASE("cuda: elementwise and data-movement ops match the CPU", "[cuda][ops]") {
  for (DType dt : kAll) {
    G& g = gpu(dt);
    TC x = rounded(rnd({2, 6, 5, 9}, 2.0f), dt);
    auto unary = [&](auto op_g, auto op_c) {
      TG xg = up(g, x);
      op_g(xg);
      TC xc = x.clone(cpu());
      op_c(xc);
      return fdtest::rel_to_max(cpu(), down(g, xg), xc);
    };
    CHECK(unary([&](TG& t) { silu_(g, t); }, [&](TC& t) { silu_(cpu(), t); }) <= tol(dt, 1e-6));
    CHECK(unary([&](TG& t) { gelu_(g, t); }, [&](TC& t) { gelu_(cpu(), t); }) <= tol(dt, 1e-6));
    CHECK(unary([&](TG& t) { quick_gelu_(g, t); }, [&](TC& t) { quick_gelu_(cpu(), t); }) <= tol(dt, 1e-6));
    CHECK(unary([&](TG& t) { relu_(g, t); }, [&](TC& t) { relu_(cpu(), t); }) <= tol(dt, 1e-6));
    CHECK(unary([&](TG& t) { tanh_clamp_(g, t, 1.5f); }, [&](TC& t) { tanh_clamp_(cpu(), t, 1.5f); }) <= tol(dt, 1e-6));
    CHECK(unary([&](TG& t) { clamp_(g, t, -1, 0.5f); }, [&](TC& t) { clamp_(cpu(), t, -1, 0.5f); }) <= tol(dt, 1e-6));
    CHECK(unary([&](TG& t) { scale_(g, t, 0.18215f); }, [&](TC& t) { scale_(cpu(), t, 0.18215f); }) <= tol(dt, 1e-6));
    CHECK(unary([&](TG& t) { add_scalar_(g, t, 0.5f); }, [&](TC& t) { add_scalar_(cpu(), t, 0.5f); }) <= tol(dt, 1e-6));
    TC y = rounded(rnd({2, 6, 5, 9}), dt);
    CHECK(unary([&](TG& t) { add_(g, t, up(g, y), -0.25f); }, [&](TC& t) { add_(cpu(), t, y, -0.25f); }) <=
          tol(dt, 1e-6));
    CHECK_CLOSE(down(g, add(g, up(g, x), up(g, y))), add(cpu(), x, y), tol(dt, 1e-6));
    TC gg = rounded(rnd({3, 7, 40}), dt);
    CHECK_CLOSE(down(g, geglu(g, up(g, gg))), geglu(cpu(), gg), tol(dt, 1e-6));
    TC b2 = rounded(rnd({2, 3, 5, 9}), dt);
    CHECK_CLOSE(down(g, concat_channels(g, up(g, x), up(g, b2))), concat_channels(cpu(), x, b2), 0.0);
    CHECK_CLOSE(down(g, upsample_nearest(g, up(g, x), 10, 18)), upsample_nearest(cpu(), x, 10, 18), 0.0);
    CHECK_CLOSE(down(g, upsample_nearest(g, up(g, x), 7, 13)), upsample_nearest(cpu(), x, 7, 13), 0.0);
    CHECK_CLOSE(down(g, tile_halves(g, up(g, x), 2, 3)), tile_halves(cpu(), x, 2, 3), 0.0);
    std::vector<float> ts{999.0f, 801.0f, 1.0f};
    CHECK_CLOSE(down(g, timestep_embedding(g, ts, 320, true, 0.0f)), timestep_embedding(cpu(), ts, 320, true, 0.0f),
                0.0);
    TC rows = rounded(rnd({4, 12}), dt), bias = rounded(rnd({12}), dt);
    {
      TG rg = up(g, rows);
      add_rows_(g, rg, up(g, bias));
      TC rc = rows.clone(cpu());
      add_rows_(cpu(), rc, bias);
      CHECK_CLOSE(down(g, rg), rc, tol(dt, 1e-6));
    }
    {
      TC mod = rounded(rnd({2, 12}), dt);
      TG xg = up(g, x);
      modulate_silu_(g, xg, up(g, mod));
      TC xc = x.clone(cpu());
      modulate_silu_(cpu(), xc, mod);
      CHECK_CLOSE(down(g, xg), xc, tol(dt, 1e-6));
    }
    {
      TC dst = rounded(rnd({1, 3, 20, 24}), dt), tile = rounded(rnd({1, 3, 8, 10}), dt);
      TG dg = up(g, dst);
      composite_tile_(g, dg, up(g, tile), 5, 9, 3, 4);
      TC dc = dst.clone(cpu());
      composite_tile_(cpu(), dc, tile, 5, 9, 3, 4);
      CHECK_CLOSE(down(g, dg), dc, tol(dt, 1e-6));
    }
    {
      TC table = rounded(rnd({50, 16}), dt), pos = rounded(rnd({8, 16}), dt);
      std::vector<std::int64_t> ids{3, 49, 0, 7, 7, 1};
      CHECK_CLOSE(down(g, embedding(g, up(g, table), ids, 2, up(g, pos))), embedding(cpu(), table, ids, 2, pos),
                  tol(dt, 1e-6));
    }
  }
}

TEST_CASE("cuda: casts round-trip and bad arguments give fd errors", "[cuda][ops][errors]") {
  G& g = gpu(DType::kF32);
  TC x = rnd({5, 7});
  TG xg = up(g, x);
  DType const dt = DType::kF32;
  CHECK_CLOSE(down(g, fd::backend::cast(g, fd::backend::cast(g, xg, DType::kBF16), DType::kF32)), rounded(x, DType::kBF16),
              0.0);
  CHECK_THROWS_WITH(fd::backend::add_(g, xg, up(g, rnd({7, 5}))), Catch::Contains("add: [5, 7] vs [7, 5]"));
  CHECK_THROWS_WITH(fd::backend::linear(g, xg, up(g, rnd({3, 6}))), Catch::Contains("does not end in 6"));
  CHECK_THROWS_WITH(fd::backend::cast(g, xg, DType::kI64), Catch::Contains("not f32, f16 or bf16"));
  try {
    fd::backend::Cuda bad{{.dtype = DType::kI32}};
    FAIL("an i32 backend was accepted");
  } catch (fd::error const& e) {
    CHECK(e.code() == fd::Errc::kUnsupported);
  }
  try {
    (void)g.allocate(std::size_t{1} << 52);
    FAIL("a 4 PiB allocation succeeded");
  } catch (fd::error const& e) {
    CHECK(e.code() == fd::Errc::kOutOfMemory);
    CHECK_THAT(e.what(), Catch::Contains("bytes"));
  }
  G capped{{.dtype = DType::kF32, .memory_cap = std::size_t{1} << 20}};
  CHECK_THROWS_WITH(TG::empty(capped, {1024, 1024}), Catch::Contains("memory cap"));
}
