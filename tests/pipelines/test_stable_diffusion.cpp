// End to end on the demo model (models/tiny-shapes) against ../shared/fixtures/tiny_shapes_pipeline:
// token ids, text embeddings, seeded noise and the PNDM-50, DDIM-50 and FasterDiffusion images.

#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/compare.hpp"
#include "common/ldm_files.hpp"
#include "common/temp_dir.hpp"
#include "fd/fd.hpp"
#include "fd/pipelines/stable_diffusion.hpp"

namespace {

using B = fd::backend::Cpu;
using T = fd::Tensor<B>;
using Pipe = fd::StableDiffusion<B>;
using Origin = fd::Sampler<fd::keys::All, fd::prop::None, fd::inject::None>;
using Faster = fd::Sampler<fd::keys::Paper50, fd::prop::EncoderPropagation<fd::prop::Parallel>, fd::inject::Prior>;

std::filesystem::path model_dir() { return std::filesystem::path(FD_MODELS_DIR) / "tiny-shapes"; }
std::filesystem::path fixture_dir() { return std::filesystem::path(fdtest::fixtures_dir()) / "tiny_shapes_pipeline"; }

struct Fixture {
  nlohmann::json meta;
  fd::io::SafeTensorsFile file;
  fd::Request request;
};

Fixture const& fixture() {
  static Fixture const f = [] {
    std::ifstream in(fixture_dir() / "tiny_shapes_pipeline.json");
    nlohmann::json j = nlohmann::json::parse(in);
    fd::Request r;
    r.prompts = j["prompts"].get<std::vector<std::string>>();
    r.negative_prompt = j["negative_prompt"].get<std::string>();
    r.seeds = j["seeds"].get<std::vector<std::uint64_t>>();
    r.guidance = j["guidance_scale"].get<float>();
    r.steps = j["num_inference_steps"].get<int>();
    return Fixture{j, fd::io::SafeTensorsFile::open(fixture_dir() / "tiny_shapes_pipeline.safetensors"), r};
  }();
  return f;
}

Pipe const& pipe() {
  static B const be{{.threads = 2}};
  static Pipe const p = Pipe::load(be, model_dir());
  return p;
}

std::vector<std::int64_t> flat(std::vector<std::vector<std::int64_t>> const& rows) {
  std::vector<std::int64_t> out;
  for (auto const& r : rows) out.insert(out.end(), r.begin(), r.end());
  return out;
}

// Token ids are below 2^24, so the float copy is exact.
std::vector<std::int64_t> ids_of(T const& t) {
  B const be;
  std::vector<std::int64_t> out;
  for (float v : t.to_vector_f32(be)) out.push_back(static_cast<std::int64_t>(v));
  return out;
}

/// The fixture's 8-bit images: max |ours - ref| over all values.
int max_level_diff(std::vector<fd::Image> const& ours, nlohmann::json const& ref) {
  int worst = 0;
  for (std::size_t i = 0; i < ours.size(); ++i) {
    auto const& im = ours[i];
    for (int y = 0; y < im.height; ++y) {
      for (int x = 0; x < im.width; ++x) {
        for (int k = 0; k < 3; ++k) {
          int const r = ref[i][static_cast<std::size_t>(y)][static_cast<std::size_t>(x)][static_cast<std::size_t>(k)].get<int>();
          int const o = im.rgb[static_cast<std::size_t>((y * im.width + x) * 3 + k)];
          worst = std::max(worst, std::abs(r - o));
        }
      }
    }
  }
  return worst;
}

void check_images(fd::Generated<B> const& g, std::string const& name) {
  B const be;
  T const ref = fixture().file.load(be, name + ".image");
  double const err = fdtest::rel_to_max(be, g.pixels, ref);
  INFO(name << ".image rel_to_max " << err);
  CHECK(err <= 1e-3);
  CHECK(max_level_diff(g.images, fixture().meta["uint8_images"][name + ".image_uint8"]) <= 1);
}

}  // namespace

TEST_CASE("pipeline: tiny-shapes ids, text embeddings and seeded noise match diffusers", "[pipeline][sd]") {
  B const be;
  fd::Request req = fixture().request;
  req.steps = 1;
  auto const g = pipe().generate<Origin>(req);
  auto const& f = fixture().file;
  CHECK(flat(g.input_ids) == ids_of(f.load(be, "input_ids", fd::DType::kI64)));
  CHECK(flat(g.uncond_input_ids) == ids_of(f.load(be, "uncond_input_ids", fd::DType::kI64)));
  double const e_text = fdtest::rel_to_max(be, g.text_embeddings, f.load(be, "encoder_hidden_states"));
  INFO("encoder_hidden_states rel_to_max " << e_text);
  CHECK(e_text <= 1e-5);
  double const e_noise = fdtest::rel_to_max(be, g.init_noise, f.load(be, "init_noise"));
  INFO("init_noise rel_to_max " << e_noise);
  CHECK(e_noise <= 1e-6);
}

TEST_CASE("pipeline: tiny-shapes PNDM-50 matches diffusers", "[pipeline][sd]") {
  auto const g = pipe().generate<Origin>(fixture().request);
  CHECK(g.scheduler == "PNDMScheduler");
  check_images(g, "pndm50");
}

TEST_CASE("pipeline: tiny-shapes DDIM-50 and DDIM-50 + FasterDiffusion match the reference", "[pipeline][sd]") {
  fd::Request req = fixture().request;
  req.scheduler = fd::SchedulerKind::kDdim;
  auto const base = pipe().generate<Origin>(req);
  check_images(base, "ddim50");
  auto const fast = pipe().generate<Faster>(req);
  check_images(fast, "fd_ddim50");
  auto const& st = fixture().meta["fd"]["stats"];
  CHECK(fast.stats.encoder_runs == st["encoder_calls"].get<int>());
  CHECK(fast.stats.decoded_steps == st["decoder_evals"].get<int>());
  CHECK(fast.stats.injected_steps == st["injected_steps"].get<int>());
  CHECK(base.stats.encoder_runs == 50);
}

TEST_CASE("pipeline: an image of a batch equals the same seed generated alone", "[pipeline][sd]") {
  fd::Request req{.prompt = "a green square on a white background", .batch = 3, .steps = 4, .seed = 11};
  auto const batch = pipe().generate<Origin>(req);
  REQUIRE(batch.images.size() == 3);
  CHECK(batch.seeds == std::vector<std::uint64_t>{11, 12, 13});
  fd::Request one = req;
  one.batch = 1;
  one.seed = 12;
  auto const alone = pipe().generate<Origin>(one);
  B const be;
  T const row = batch.pixels.slice(0, 1, 2);
  CHECK(fdtest::rel_to_max(be, alone.pixels, row.contiguous(be)) <= 1e-5);
  CHECK(batch.images[1].rgb != batch.images[0].rgb);
}

TEST_CASE("pipeline: every sampler runs on the demo model and stays finite", "[pipeline][sd]") {
  for (auto kind : {fd::SchedulerKind::kDpmSolverMultistep, fd::SchedulerKind::kDdpm, fd::SchedulerKind::kEulerDiscrete,
                    fd::SchedulerKind::kEulerAncestralDiscrete}) {
    fd::Request req{.prompt = "a red circle on a blue background", .steps = 6, .seed = 3, .scheduler = kind};
    auto const g = pipe().generate<Origin>(req);
    B const be;
    for (float v : g.pixels.to_vector_f32(be)) REQUIRE(std::isfinite(v));
    // Stochastic samplers draw from the same per-image generator: a rerun is identical.
    auto const again = pipe().generate<Origin>(req);
    CHECK(again.images[0].rgb == g.images[0].rgb);
  }
}

TEST_CASE("pipeline: bad requests are clear errors", "[pipeline][sd][errors]") {
  auto code_of = [](auto&& fn) {
    try {
      fn();
    } catch (fd::error const& e) {
      return e.code();
    }
    FAIL("no error");
    return fd::Errc::kIo;
  };
  CHECK(code_of([] { (void)pipe().generate<Origin>({.prompt = " \t\n ", .steps = 1}); }) == fd::Errc::kInvalidArgument);
  CHECK(code_of([] { (void)pipe().generate<Origin>({.prompt = "a", .steps = 1, .width = 36}); }) == fd::Errc::kInvalidArgument);
  CHECK(code_of([] { (void)pipe().generate<Origin>({.prompt = "a", .steps = 0}); }) == fd::Errc::kInvalidArgument);
  CHECK(code_of([] { (void)pipe().generate<Origin>({.prompt = "a", .steps = 1, .seeds = {1, 2}}); }) == fd::Errc::kInvalidArgument);
  CHECK(code_of([] { (void)pipe().generate<Origin>({.prompt = "a", .steps = 1, .clip_skip = 5}); }) == fd::Errc::kInvalidArgument);
}

TEST_CASE("pipeline: broken model folders are clear errors naming the part", "[pipeline][sd][errors]") {
  fdtest::TempDir tmp;
  auto copy_model = [&](std::string const& name) {
    std::filesystem::path const dst = tmp.path() / name;
    std::filesystem::copy(model_dir(), dst, std::filesystem::copy_options::recursive);
    return dst;
  };
  B const be;
  auto message_of = [&](std::filesystem::path const& p) {
    try {
      (void)Pipe::load(be, p);
    } catch (fd::error const& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::filesystem::path const no_unet = copy_model("no_unet");
  std::filesystem::remove_all(no_unet / "unet");
  CHECK_THAT(message_of(no_unet), Catch::Contains("unet") && Catch::Contains("missing"));

  std::filesystem::path const no_index = copy_model("no_index");
  std::filesystem::remove(no_index / "model_index.json");
  CHECK_THAT(message_of(no_index), Catch::Contains("model_index.json"));

  std::filesystem::path const bad_sched = copy_model("bad_sched");
  {
    std::ifstream in(bad_sched / "model_index.json");
    nlohmann::json j = nlohmann::json::parse(in);
    j["scheduler"] = {"diffusers", "UniPCMultistepScheduler"};
    std::ofstream(bad_sched / "model_index.json") << j.dump(2);
  }
  CHECK_THAT(message_of(bad_sched), Catch::Contains("UniPCMultistepScheduler") && Catch::Contains("scheduler"));

  std::filesystem::path const bad_cfg = copy_model("bad_cfg");
  {
    std::ifstream in(bad_cfg / "scheduler/scheduler_config.json");
    nlohmann::json j = nlohmann::json::parse(in);
    j["_class_name"] = "LMSDiscreteScheduler";
    std::ofstream(bad_cfg / "scheduler/scheduler_config.json") << j.dump(2);
  }
  CHECK_THAT(message_of(bad_cfg), Catch::Contains("LMSDiscreteScheduler"));

  std::filesystem::path const no_tok = copy_model("no_tok");
  std::filesystem::remove(no_tok / "tokenizer/merges.txt");
  CHECK_THAT(message_of(no_tok), Catch::Contains("merges.txt"));

  CHECK_THAT(message_of(tmp.path() / "does_not_exist"), Catch::Contains("does_not_exist"));
}

// A latent-space model assembled from the tiny fixtures (unet_tiny_sd, clip_text_tiny, vae_tiny, the
// demo model's tokenizer and scheduler), once as a diffusers folder and once as a single LDM file: the
// two loads give the same images, and the VAE path and a TAESD replacement run end to end.
TEST_CASE("pipeline: single-file checkpoint == diffusers folder; VAE and TAESD decoding", "[pipeline][sd][ldm]") {
  namespace fs = std::filesystem;
  fdtest::TempDir tmp;
  fs::path const fx = fdtest::fixtures_dir();
  fs::path const folder = tmp / "tiny-latent";
  fs::create_directories(folder);
  auto copy_dir = [](fs::path const& from, fs::path const& to) {
    fs::create_directories(to);
    for (auto const& e : fs::directory_iterator(from)) {
      std::string const n = e.path().filename().string();
      if (e.is_regular_file() && !n.ends_with("_io.safetensors") && !n.ends_with("_io.json")) {
        fs::copy_file(e.path(), to / n);
      }
    }
  };
  copy_dir(fx / "unet_tiny_sd", folder / "unet");
  copy_dir(fx / "clip_text_tiny", folder / "text_encoder");
  copy_dir(fx / "vae_tiny", folder / "vae");
  copy_dir(model_dir() / "tokenizer", folder / "tokenizer");
  copy_dir(model_dir() / "scheduler", folder / "scheduler");
  nlohmann::json idx = {{"_class_name", "StableDiffusionPipeline"},
                        {"unet", {"diffusers", "UNet2DConditionModel"}},
                        {"text_encoder", {"transformers", "CLIPTextModel"}},
                        {"tokenizer", {"transformers", "CLIPTokenizer"}},
                        {"vae", {"diffusers", "AutoencoderKL"}},
                        {"scheduler", {"diffusers", "PNDMScheduler"}},
                        {"safety_checker", {nullptr, nullptr}}};
  std::ofstream(folder / "model_index.json") << idx.dump(2);

  fs::path const single = tmp / "tiny-latent.safetensors";
  fdtest::write_file(single, fdtest::tiny_ldm_tensors());

  B const be{{.threads = 2}};
  Pipe const from_folder = Pipe::load(be, folder);
  REQUIRE(from_folder.decoder() != nullptr);
  CHECK(from_folder.scale_factor() == 8);
  CHECK(from_folder.default_size() == 128);

  Pipe::LoadOptions lo;
  lo.tokenizer = model_dir() / "tokenizer";
  // What shapes cannot tell about these tiny models (SD 1.x values are assumed otherwise).
  lo.ldm.unet_config = {{"norm_num_groups", 8}, {"sample_size", 16}};
  lo.ldm.vae_config = {{"norm_num_groups", 16}};
  lo.ldm.text_encoder_config = {{"num_attention_heads", 4}};
  Pipe const from_file = Pipe::load(be, single, lo);
  CHECK(from_file.scheduler_config().kind == fd::SchedulerKind::kPndm);

  fd::Request req{.prompt = "a photo of an astronaut riding a horse on mars", .steps = 4, .seed = 5};
  auto const a = from_folder.generate<Faster>(req);
  auto const b = from_file.generate<Faster>(req);
  REQUIRE(a.images.size() == 1);
  CHECK(a.images[0].width == 128);
  CHECK(a.images[0].height == 128);
  CHECK(a.latents.shape() == fd::Shape{1, 4, 16, 16});
  CHECK(fdtest::rel_to_max(be, b.pixels, a.pixels) == 0.0);
  // The VAE decode is the fixture-tested decoder: the pipeline's pixels are its output on the latents.
  CHECK(fdtest::rel_to_max(be, a.pixels, from_folder.decoder()->decode(a.latents)) == 0.0);

  // Tiled decoding through the request (tiles of 8 latents with overlap 2 would be the CLI's choice;
  // here the automatic rule keeps 16x16 latents in one tile, so forcing tiling must not change them).
  fd::Request tiled = req;
  tiled.tiled_decode = true;
  CHECK(fdtest::rel_to_max(be, from_folder.generate<Faster>(tiled).pixels, a.pixels) == 0.0);

  Pipe::LoadOptions taesd;
  taesd.decoder = fx / "taesd_tiny";
  Pipe const with_taesd = Pipe::load(be, folder, taesd);
  REQUIRE(with_taesd.decoder()->tiny());
  auto const c = with_taesd.generate<Faster>(req);
  CHECK(fdtest::rel_to_max(be, c.latents, a.latents) == 0.0);  // same sampling, another decoder
  CHECK(fdtest::rel_to_max(be, c.pixels, with_taesd.decoder()->decode(a.latents)) == 0.0);

  // A single file needs a tokenizer folder.
  CHECK_THROWS_WITH(Pipe::load(be, single), Catch::Contains("no tokenizer"));
}

TEST_CASE("pipeline: an over-long prompt is truncated to 77 tokens with a warning naming the rest", "[pipeline][sd]") {
  std::string prompt;
  for (int i = 0; i < 80; ++i) prompt += "red ";
  prompt += "circle";
  std::vector<std::string> warnings;
  fd::GenerateHooks hooks;
  hooks.on_warning = [&](std::string_view w) { warnings.emplace_back(w); };
  auto const g = pipe().generate<Origin>({.prompt = prompt, .steps = 1}, hooks);
  REQUIRE(warnings.size() == 1);
  CHECK_THAT(warnings[0], Catch::Contains("77 tokens") && Catch::EndsWith("red red red red red circle"));
  REQUIRE(g.input_ids.size() == 1);
  CHECK(g.input_ids[0].size() == 77);
  CHECK(g.input_ids[0].back() == 49407);
}
