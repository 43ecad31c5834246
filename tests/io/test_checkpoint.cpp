// Tests of fd::io::Checkpoint: sharded indexes, model-folder discovery (variants, pickle-only folders),
// use tracking, concurrency, and every malformed-index case (error code + message).

#include "common/temp_dir.hpp"
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <unistd.h>

#include "fd/backend/cpu/backend.hpp"
#include "fd/core/tensor.hpp"
#include "fd/io/checkpoint.hpp"
#include "fd/io/safetensors.hpp"

namespace fs = std::filesystem;
using fd::DType;
using fd::Errc;
using fd::Shape;
using Cpu = fd::backend::Cpu;
using T = fd::Tensor<Cpu>;
using fd::io::Checkpoint;

namespace {

using fdtest::TempDir;

void write_text(fs::path const& p, std::string const& text) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << text;
  REQUIRE(f.good());
}

std::optional<fd::error> catch_fd_error(auto&& f) {
  try {
    f();
  } catch (fd::error const& e) {
    return e;
  }
  return std::nullopt;
}

// A shard holding F32 tensors [n] named `names`, each filled with its index in the list.
void write_shard(fs::path const& p, std::vector<std::string> const& names, std::int64_t n = 4,
                 std::map<std::string, std::string> const& metadata = {}) {
  Cpu cpu;
  std::vector<std::pair<std::string, T>> ts;
  for (std::size_t i = 0; i < names.size(); ++i) {
    std::vector<float> v(static_cast<std::size_t>(n), static_cast<float>(i));
    ts.emplace_back(names[i], T::from_host(cpu, {n}, v));
  }
  fd::io::save_safetensors(cpu, p, ts, metadata);
}

std::vector<float> host_f32(T const& t) {
  std::vector<float> v(static_cast<std::size_t>(t.numel()));
  std::memcpy(v.data(), t.data<float>(), t.nbytes());
  return v;
}

// A valid two-shard checkpoint: a.safetensors {x, y}, b.safetensors {z, extra (unlisted)}.
fs::path make_sharded(TempDir const& dir) {
  write_shard(dir / "a.safetensors", {"x", "y"});
  write_shard(dir / "b.safetensors", {"z", "extra"});
  fs::path const index = dir / "model.safetensors.index.json";
  write_text(index, R"({"metadata": {"total_size": 48, "format": "pt"},
                        "weight_map": {"x": "a.safetensors", "y": "a.safetensors", "z": "b.safetensors"}})");
  return index;
}

}  // namespace

#define CHECK_FD_ERROR(expr, errc, ...)                                                          \
  do {                                                                                           \
    auto const fd_err_ = catch_fd_error([&] { (void)(expr); });                                  \
    REQUIRE(fd_err_.has_value());                                                                \
    INFO("message: " << fd_err_->what());                                                        \
    CHECK(fd_err_->code() == (errc));                                                            \
    for (std::string const& fd_sub_ : std::vector<std::string>{__VA_ARGS__}) {                   \
      CHECK_THAT(std::string(fd_err_->what()), Catch::Contains(fd_sub_));                        \
    }                                                                                            \
  } while (0)

// ---------------------------------------------------------------------------------------------------
// Real fixtures

TEST_CASE("fixture: sharded unet_tiny_sd index", "[io][checkpoint][fixtures]") {
  Cpu cpu;
  fs::path const index = FD_FIXTURES_DIR "/unet_tiny_sd/diffusion_pytorch_model.safetensors.index.json";
  Checkpoint ckpt = Checkpoint::open(index);
  CHECK(ckpt.path() == index);
  CHECK(ckpt.is_sharded());
  REQUIRE(ckpt.size() == 684);
  std::vector<std::string> const names = ckpt.names();
  CHECK(names.size() == 684);
  CHECK(std::is_sorted(names.begin(), names.end()));

  std::int64_t total = 0;
  std::set<fs::path> shards;
  for (std::string const& n : names) {
    fd::io::TensorInfo const& ti = ckpt.info(n);
    CHECK(ti.dtype == DType::kF32);
    total += ti.numel();
    shards.insert(ckpt.file_of(n));
  }
  CHECK(total == 3222692);
  CHECK(shards.size() == 6);

  CHECK(ckpt.info("conv_in.weight").shape == Shape{32, 4, 3, 3});
  CHECK(ckpt.info("conv_out.weight").shape == Shape{4, 32, 3, 3});
  CHECK(ckpt.info("mid_block.resnets.1.time_emb_proj.bias").shape.rank() == 1);
  CHECK(ckpt.contains("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"));
  CHECK(ckpt.file_of("conv_in.weight").filename() == "diffusion_pytorch_model-00001-of-00006.safetensors");
  CHECK(ckpt.metadata().at("num_tensors") == "684");
  CHECK(ckpt.metadata().at("num_parameters") == "3222692");
  CHECK(ckpt.names("conv_").size() == 6);
  CHECK(ckpt.names("zzz").empty());

  T const w = ckpt.load(cpu, "conv_in.weight", Shape{32, 4, 3, 3});
  auto const raw = ckpt.bytes("conv_in.weight");
  REQUIRE(raw.size() == w.nbytes());
  CHECK(std::memcmp(raw.data(), w.raw(), raw.size()) == 0);
  CHECK(ckpt.is_used("conv_in.weight"));
  CHECK(ckpt.unused().size() == 683);
  CHECK_FD_ERROR(ckpt.require_all_used("UNet2DConditionModel"), Errc::kUnexpectedTensor, index.string(),
                 "683 tensors not used by UNet2DConditionModel", "'conv_in.bias'", "(663 more)");
  CHECK_FD_ERROR(ckpt.load(cpu, "conv_out.weight", Shape{4, 32, 1, 1}), Errc::kShapeMismatch,
                 "diffusion_pytorch_model-00006-of-00006.safetensors: tensor 'conv_out.weight': expected shape "
                 "[4, 32, 1, 1], got [4, 32, 3, 3]");
  CHECK_FALSE(ckpt.is_used("conv_out.weight"));  // a failed load does not count
  CHECK_FD_ERROR(ckpt.info("conv_in.weights"), Errc::kMissingTensor, index.string() + ": no tensor 'conv_in.weights'");

  for (std::string const& n : names) {
    (void)ckpt.load(cpu, n);
  }
  CHECK(ckpt.unused().empty());
  CHECK_NOTHROW(ckpt.require_all_used("UNet2DConditionModel"));
}

TEST_CASE("fixture: open_model_dir finds the index, single files and the 'model' stem", "[io][checkpoint][fixtures]") {
  Cpu cpu;
  Checkpoint unet = Checkpoint::open_model_dir(FD_FIXTURES_DIR "/unet_tiny_sd");
  CHECK(unet.is_sharded());
  CHECK(unet.path().filename() == "diffusion_pytorch_model.safetensors.index.json");
  CHECK(unet.size() == 684);

  Checkpoint vae = Checkpoint::open_model_dir(FD_FIXTURES_DIR "/vae_tiny");
  CHECK_FALSE(vae.is_sharded());
  CHECK(vae.path().filename() == "diffusion_pytorch_model.safetensors");
  CHECK(vae.size() == 244);
  CHECK(vae.info("decoder.conv_in.weight").dtype == DType::kF16);
  CHECK(vae.info("decoder.conv_in.weight").shape == Shape{64, 4, 3, 3});
  CHECK(vae.metadata().at("format") == "pt");
  T const w = vae.load(cpu, "decoder.conv_in.weight");  // F16 -> F32
  CHECK(w.dtype() == DType::kF32);
  CHECK(w.numel() == 64 * 4 * 9);

  Checkpoint clip = Checkpoint::open_model_dir(FD_FIXTURES_DIR "/clip_text_tiny", "model");
  CHECK(clip.path().filename() == "model.safetensors");
  CHECK(clip.size() == 37);
  T const ids = clip.load(cpu, "text_model.embeddings.position_ids", Shape{1, 77}, DType::kI64);
  for (std::int64_t i = 0; i < 77; ++i) {
    CHECK(ids.data<std::int64_t>()[i] == i);
  }
  // The text encoder's default stem does not exist there.
  CHECK_FD_ERROR(Checkpoint::open_model_dir(FD_FIXTURES_DIR "/clip_text_tiny"), Errc::kIo, "clip_text_tiny",
                 "diffusion_pytorch_model.safetensors");
}

// ---------------------------------------------------------------------------------------------------
// Use tracking

TEST_CASE("use tracking: load, ignore, mark_used, unused, require_all_used", "[io][checkpoint]") {
  TempDir dir;
  Cpu cpu;
  write_shard(dir / "m.safetensors", {"a", "b", "position_ids", "c"});
  Checkpoint ckpt = Checkpoint::open(dir / "m.safetensors");
  CHECK_FALSE(ckpt.is_sharded());
  CHECK(ckpt.unused() == std::vector<std::string>{"a", "b", "c", "position_ids"});

  CHECK(host_f32(ckpt.load(cpu, "a")) == std::vector<float>(4, 0.0f));
  CHECK(ckpt.ignore("position_ids"));
  CHECK_FALSE(ckpt.ignore("not_there"));  // absent optional buffers are fine
  CHECK_FALSE(ckpt.is_used("position_ids"));
  CHECK(ckpt.unused() == std::vector<std::string>{"b", "c"});
  CHECK_FD_ERROR(ckpt.require_all_used("TinyModel"), Errc::kUnexpectedTensor,
                 (dir / "m.safetensors").string() + ": 2 tensors not used by TinyModel: 'b', 'c'");

  ckpt.mark_used("b");
  CHECK_FD_ERROR(ckpt.require_all_used("TinyModel"), Errc::kUnexpectedTensor, "1 tensor not used by TinyModel: 'c'");
  CHECK_FD_ERROR(ckpt.mark_used("nope"), Errc::kMissingTensor, "no tensor 'nope'");
  CHECK_FD_ERROR(ckpt.is_used("nope"), Errc::kMissingTensor, "no tensor 'nope'");
  (void)ckpt.load(cpu, "c", Shape{4}, DType::kF16);
  CHECK(ckpt.unused().empty());
  CHECK_NOTHROW(ckpt.require_all_used("TinyModel"));

  // Loading an ignored tensor counts as used; ignoring a used one keeps it used.
  (void)ckpt.load(cpu, "position_ids");
  CHECK(ckpt.is_used("position_ids"));
  CHECK(ckpt.ignore("a"));
  CHECK(ckpt.is_used("a"));

  ckpt.reset_usage();
  CHECK(ckpt.unused().size() == 4);

  // Moving keeps everything valid (infos point into node-based maps).
  Checkpoint moved = std::move(ckpt);
  CHECK(moved.info("b").shape == Shape{4});
  CHECK(host_f32(moved.load(cpu, "b")) == std::vector<float>(4, 1.0f));
  CHECK(moved.unused().size() == 3);
}

TEST_CASE("concurrent loads of different tensors from one Checkpoint", "[io][checkpoint]") {
  TempDir dir;
  Cpu cpu;
  std::vector<std::string> a_names, b_names;
  std::string weight_map;
  for (int i = 0; i < 64; ++i) {
    std::string const name = std::string("layer.").append(std::to_string(i));
    (i % 2 ? a_names : b_names).push_back(name);
    weight_map += (weight_map.empty() ? "" : ", ") + ("\"" + name + "\": \"" + (i % 2 ? "a" : "b") + ".safetensors\"");
  }
  write_shard(dir / "a.safetensors", a_names, 256);
  write_shard(dir / "b.safetensors", b_names, 256);
  write_text(dir / "idx.safetensors.index.json", "{\"weight_map\": {" + weight_map + "}}");
  Checkpoint ckpt = Checkpoint::open(dir / "idx.safetensors.index.json");
  REQUIRE(ckpt.size() == 64);

  std::vector<std::string> const names = ckpt.names();
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (std::size_t i = static_cast<std::size_t>(t); i < names.size(); i += 8) {
        T const x = ckpt.load(cpu, names[i], DType::kF16);
        if (x.numel() != 256) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(bad == 0);
  CHECK(ckpt.unused().empty());
}

// ---------------------------------------------------------------------------------------------------
// Sharded indexes

TEST_CASE("sharded index: tensors resolve to their shards, unlisted shard tensors are ignored", "[io][checkpoint]") {
  TempDir dir;
  Cpu cpu;
  fs::path const index = make_sharded(dir);
  Checkpoint ckpt = Checkpoint::open(index);
  CHECK(ckpt.is_sharded());
  CHECK(ckpt.names() == std::vector<std::string>{"x", "y", "z"});
  CHECK_FALSE(ckpt.contains("extra"));
  CHECK(ckpt.file_of("x") == dir / "a.safetensors");
  CHECK(ckpt.file_of("z") == dir / "b.safetensors");
  CHECK(host_f32(ckpt.load(cpu, "y")) == std::vector<float>(4, 1.0f));
  CHECK(host_f32(ckpt.load(cpu, "z")) == std::vector<float>(4, 0.0f));
  CHECK(ckpt.metadata().at("total_size") == "48");
  CHECK(ckpt.metadata().at("format") == "pt");
  CHECK(ckpt.unused() == std::vector<std::string>{"x"});
  CHECK_FD_ERROR(ckpt.load(cpu, "extra"), Errc::kMissingTensor, index.string() + ": no tensor 'extra'");
  CHECK_FD_ERROR(ckpt.file_of("extra"), Errc::kMissingTensor, "'extra'");

  // Shards in a subfolder are allowed; "metadata" may be absent or null.
  fs::create_directories(dir / "sub");
  write_shard(dir / "sub" / "s.safetensors", {"w"});
  write_text(dir / "sub.index.json", R"({"metadata": null, "weight_map": {"w": "sub/s.safetensors"}})");
  Checkpoint sub = Checkpoint::open(dir / "sub.index.json");
  CHECK(sub.names() == std::vector<std::string>{"w"});
  CHECK(sub.metadata().empty());

  // require_finite goes to the right shard.
  CHECK_NOTHROW(ckpt.require_finite("z"));
}

TEST_CASE("bad index: not JSON, not an object, missing or ill-typed weight_map", "[io][checkpoint][errors]") {
  TempDir dir;
  make_sharded(dir);
  fs::path const idx = dir / "bad.safetensors.index.json";
  auto open_with = [&](std::string const& text) {
    write_text(idx, text);
    return Checkpoint::open(idx);
  };
  CHECK_FD_ERROR(open_with("{\"weight_map\": {"), Errc::kFormat, idx.string() + ": not valid JSON");
  CHECK_FD_ERROR(open_with(""), Errc::kFormat, idx.string(), "not valid JSON");
  CHECK_FD_ERROR(open_with("[\"a.safetensors\"]"), Errc::kFormat, idx.string() + ": index is not a JSON object (it is array)");
  CHECK_FD_ERROR(open_with("{\"metadata\": {}}"), Errc::kFormat, idx.string() + ": missing \"weight_map\"");
  CHECK_FD_ERROR(open_with("{\"weight_map\": [\"x\"]}"), Errc::kFormat,
                 idx.string() + ": \"weight_map\" is not a JSON object (it is array)");
  CHECK_FD_ERROR(open_with("{\"weight_map\": {\"x\": 3}}"), Errc::kFormat,
                 idx.string() + ": weight_map entry for tensor 'x' is not a string (it is 3)");
  CHECK_FD_ERROR(open_with("{\"metadata\": \"pt\", \"weight_map\": {}}"), Errc::kFormat,
                 idx.string() + ": \"metadata\" is not a JSON object");
  CHECK_FD_ERROR(Checkpoint::open(dir / "absent.safetensors.index.json"), Errc::kIo,
                 (dir / "absent.safetensors.index.json").string(), "No such file or directory");
  // An empty weight_map is a valid, empty checkpoint.
  CHECK(open_with("{\"weight_map\": {}}").size() == 0);
}

TEST_CASE("bad index: missing shard names the shard and the index", "[io][checkpoint][errors]") {
  TempDir dir;
  make_sharded(dir);
  fs::path const idx = dir / "m.safetensors.index.json";
  write_text(idx, R"({"weight_map": {"x": "a.safetensors", "q": "missing-00002.safetensors"}})");
  CHECK_FD_ERROR(Checkpoint::open(idx), Errc::kIo, idx.string(), "shard 'missing-00002.safetensors'",
                 "(for tensor 'q')", (dir / "missing-00002.safetensors").string(), "does not exist");
}

TEST_CASE("bad index: tensor listed but absent from its shard names both", "[io][checkpoint][errors]") {
  TempDir dir;
  make_sharded(dir);
  fs::path const idx = dir / "m.safetensors.index.json";
  write_text(idx, R"({"weight_map": {"x": "a.safetensors", "z": "a.safetensors"}})");
  CHECK_FD_ERROR(Checkpoint::open(idx), Errc::kMissingTensor, idx.string(), "tensor 'z'",
                 (dir / "a.safetensors").string(), "does not hold it");
}

TEST_CASE("bad index: a corrupt shard names the index and the shard", "[io][checkpoint][errors]") {
  TempDir dir;
  make_sharded(dir);
  write_text(dir / "broken.safetensors", std::string("\x05\0\0\0\0\0\0\0{\"a\":", 13));
  fs::path const idx = dir / "m.safetensors.index.json";
  write_text(idx, R"({"weight_map": {"x": "a.safetensors", "b0": "broken.safetensors"}})");
  CHECK_FD_ERROR(Checkpoint::open(idx), Errc::kFormat, idx.string() + ": shard 'broken.safetensors': ",
                 (dir / "broken.safetensors").string() + ": header: not valid JSON");
  // A directory where a shard should be.
  fs::create_directories(dir / "dir.safetensors");
  write_text(idx, R"({"weight_map": {"x": "dir.safetensors"}})");
  CHECK_FD_ERROR(Checkpoint::open(idx), Errc::kIo, "shard 'dir.safetensors'", "not a regular file");
}

TEST_CASE("bad index: shard paths must stay inside the index's folder", "[io][checkpoint][errors]") {
  TempDir dir;
  make_sharded(dir);
  fs::path const idx = dir / "m.safetensors.index.json";
  for (std::string const shard : {"../a.safetensors", "/etc/passwd", "sub/../../a.safetensors", ""}) {
    INFO(shard);
    write_text(idx, "{\"weight_map\": {\"x\": \"" + shard + "\"}}");
    CHECK_FD_ERROR(Checkpoint::open(idx), Errc::kFormat, idx.string(), "shard '" + shard + "' (for tensor 'x')",
                   "not a file name relative to the index's folder");
  }
}

// ---------------------------------------------------------------------------------------------------
// Model folders

TEST_CASE("open_model_dir: preference order and the fp16 variant fallback", "[io][checkpoint]") {
  TempDir dir;
  SECTION("only the fp16 variant file") {
    write_shard(dir / "diffusion_pytorch_model.fp16.safetensors", {"w"});
    Checkpoint c = Checkpoint::open_model_dir(dir.path());
    CHECK(c.path() == dir / "diffusion_pytorch_model.fp16.safetensors");
    CHECK(c.contains("w"));
    // Asking for the variant finds it too.
    CHECK(Checkpoint::open_model_dir(dir.path(), "diffusion_pytorch_model", "fp16").contains("w"));
  }
  SECTION("only an fp16 variant index") {
    write_shard(dir / "diffusion_pytorch_model.fp16-00001-of-00001.safetensors", {"w"});
    write_text(dir / "diffusion_pytorch_model.fp16.safetensors.index.json",
               R"({"weight_map": {"w": "diffusion_pytorch_model.fp16-00001-of-00001.safetensors"}})");
    Checkpoint c = Checkpoint::open_model_dir(dir.path());
    CHECK(c.is_sharded());
    CHECK(c.contains("w"));
  }
  SECTION("the plain file wins over its index and over the fp16 variant") {
    write_shard(dir / "diffusion_pytorch_model.safetensors", {"w"}, 4, {{"which", "plain"}});
    write_shard(dir / "diffusion_pytorch_model.fp16.safetensors", {"w"}, 4, {{"which", "fp16"}});
    write_text(dir / "diffusion_pytorch_model.safetensors.index.json", "{ broken");
    CHECK(Checkpoint::open_model_dir(dir.path()).metadata().at("which") == "plain");
    // An explicit variant wins over the plain file.
    CHECK(Checkpoint::open_model_dir(dir.path(), "diffusion_pytorch_model", "fp16").metadata().at("which") == "fp16");
  }
  SECTION("the plain index wins over the fp16 variant") {
    write_shard(dir / "s.safetensors", {"w"}, 4, {{"which", "index"}});
    write_text(dir / "diffusion_pytorch_model.safetensors.index.json", R"({"weight_map": {"w": "s.safetensors"}})");
    write_shard(dir / "diffusion_pytorch_model.fp16.safetensors", {"w"}, 4, {{"which", "fp16"}});
    CHECK(Checkpoint::open_model_dir(dir.path()).is_sharded());
  }
  SECTION("a requested variant that is missing falls back to the plain files") {
    write_shard(dir / "model.safetensors", {"w"});
    Checkpoint c = Checkpoint::open_model_dir(dir.path(), "model", "bf16");
    CHECK(c.path() == dir / "model.safetensors");
  }
  SECTION("a requested non-fp16 variant") {
    write_shard(dir / "model.ema.safetensors", {"ema"});
    write_shard(dir / "model.safetensors", {"plain"});
    CHECK(Checkpoint::open_model_dir(dir.path(), "model", "ema").contains("ema"));
    CHECK(Checkpoint::open_model_dir(dir.path(), "model").contains("plain"));
  }
}

TEST_CASE("open_model_dir: nothing found lists every name tried", "[io][checkpoint][errors]") {
  TempDir dir;
  write_text(dir / "config.json", "{}");
  CHECK_FD_ERROR(Checkpoint::open_model_dir(dir.path()), Errc::kIo, dir.path().string(),
                 "no safetensors checkpoint found (tried diffusion_pytorch_model.safetensors, "
                 "diffusion_pytorch_model.safetensors.index.json, diffusion_pytorch_model.fp16.safetensors, "
                 "diffusion_pytorch_model.fp16.safetensors.index.json)");
  CHECK_FD_ERROR(Checkpoint::open_model_dir(dir.path(), "model", "fp16"), Errc::kIo,
                 "(tried model.fp16.safetensors, model.fp16.safetensors.index.json, model.safetensors, "
                 "model.safetensors.index.json)");
  CHECK_FD_ERROR(Checkpoint::open_model_dir(dir / "missing"), Errc::kIo, (dir / "missing").string(),
                 "no such model folder");
  CHECK_FD_ERROR(Checkpoint::open_model_dir(dir / "config.json"), Errc::kIo, "config.json: not a directory");
}

TEST_CASE("open_model_dir: pickle-only folders are rejected as unsupported", "[io][checkpoint][errors]") {
  TempDir dir;
  write_text(dir / "diffusion_pytorch_model.bin", "PK\x03\x04 not really a zip");
  CHECK_FD_ERROR(Checkpoint::open_model_dir(dir.path()), Errc::kUnsupported,
                 (dir / "diffusion_pytorch_model.bin").string(), "PyTorch pickle checkpoints are not supported",
                 "safetensors", "save_pretrained");

  TempDir tdir;
  write_text(tdir / "pytorch_model.bin", "x");
  CHECK_FD_ERROR(Checkpoint::open_model_dir(tdir.path(), "model"), Errc::kUnsupported, "pytorch_model.bin",
                 "convert");
  // A safetensors file next to the pickle is used.
  write_shard(dir / "diffusion_pytorch_model.safetensors", {"w"});
  CHECK(Checkpoint::open_model_dir(dir.path()).contains("w"));
}

TEST_CASE("Checkpoint::open on a single corrupt file passes the file's error through", "[io][checkpoint][errors]") {
  TempDir dir;
  write_text(dir / "x.safetensors", "short");
  CHECK_FD_ERROR(Checkpoint::open(dir / "x.safetensors"), Errc::kFormat, (dir / "x.safetensors").string(),
                 "file is 5 bytes");
  CHECK_FD_ERROR(Checkpoint::open(dir / "y.safetensors"), Errc::kIo, (dir / "y.safetensors").string(), "cannot open");
}
