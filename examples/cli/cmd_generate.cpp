// `fasterdiffusion generate` and `shapes-eval` (see cmd_generate.hpp).

#include "cmd_generate.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <numeric>

#include <fd/image/metrics.hpp>
#include <fd/image/resize.hpp>
#include <fd/io/image_file.hpp>
#include <fd/io/png.hpp>
#include <fd/pipelines/progress.hpp>
#include <fd/pipelines/stable_diffusion.hpp>

#include "cli_common.hpp"
#include "cmd_control.hpp"
#include "cmd_convert_ldm.hpp"

namespace fdcli {



inline std::optional<fd::SchedulerKind> parse_sampler(std::string const& s) {
  if (s.empty()) return std::nullopt;
  if (s == "ddim") return fd::SchedulerKind::kDdim;
  if (s == "pndm") return fd::SchedulerKind::kPndm;
  if (s == "dpm++2m") return fd::SchedulerKind::kDpmSolverMultistep;
  if (s == "ddpm") return fd::SchedulerKind::kDdpm;
  if (s == "euler") return fd::SchedulerKind::kEulerDiscrete;
  if (s == "euler_a") return fd::SchedulerKind::kEulerAncestralDiscrete;
  fd::fail(fd::Errc::kConfig, "--sampler '" + s + "': expected ddim, pndm, dpm++2m, ddpm, euler or euler_a");
}

/// Runs one request with the acceleration chosen at run time: the compile-time sampler types are
/// instantiated once each and picked here.
template <class B>
fd::Generated<B> run_accel(fd::StableDiffusion<B> const& sd, fd::Request req, std::string const& accel,
                                        std::string const& keys_text, std::string const& injection,
                                        fd::GenerateHooks const& hooks) {
  using Par = fd::prop::EncoderPropagation<fd::prop::Parallel>;
  using Seq = fd::prop::EncoderPropagation<fd::prop::Sequential>;
  if (accel == "none") {
    return sd.template generate<fd::Sampler<fd::keys::All, fd::prop::None, fd::inject::None>>(req, hooks);
  }
  fd::keys::Runtime const keys = fd::keys::Runtime::parse(keys_text);
  std::optional<float> const alpha = parse_injection(injection.empty() ? "0.003" : injection);
  if (alpha) req.noise_injection = *alpha;
  if (accel == "fd") {
    return alpha ? sd.template generate<fd::Sampler<fd::keys::Runtime, Par, fd::inject::Prior>>(req, hooks, keys)
                 : sd.template generate<fd::Sampler<fd::keys::Runtime, Par, fd::inject::None>>(req, hooks, keys);
  }
  return alpha ? sd.template generate<fd::Sampler<fd::keys::Runtime, Seq, fd::inject::Prior>>(req, hooks, keys)
               : sd.template generate<fd::Sampler<fd::keys::Runtime, Seq, fd::inject::None>>(req, hooks, keys);
}

/// `out.png` for one image, `out_<i>.png` for several; `tag` (e.g. "origin") goes before the index.
inline std::filesystem::path image_path(std::filesystem::path const& base, std::string const& tag, std::size_t i,
                                        std::size_t count) {
  std::string stem = base.stem().string();
  if (!tag.empty()) stem += "_" + tag;
  if (count > 1) stem += "_" + std::to_string(i);
  std::filesystem::path ext = base.extension();
  if (ext.empty()) ext = ".png";
  return base.parent_path() / (stem + ext.string());
}

/// The generation parameters, in the widely read "parameters" text-chunk layout.
template <class B>
std::string parameters_text(GenerateArgs const& a, fd::Generated<B> const& g, std::size_t i,
                                   std::string const& accel) {
  char buf[512];
  std::string s = g.prompts[i] + "\n";
  if (!a.negative.empty()) s += "Negative prompt: " + a.negative + "\n";
  std::snprintf(buf, sizeof buf, "Steps: %d, Sampler: %s, CFG scale: %g, Seed: %llu, Size: %dx%d, Model: %s", a.steps,
                g.scheduler.c_str(), static_cast<double>(a.cfg), static_cast<unsigned long long>(g.seeds[i]),
                g.images[i].width, g.images[i].height, std::filesystem::path(a.model).filename().string().c_str());
  s += buf;
  if (accel == "none") {
    s += ", Accel: none";
  } else {
    s += ", Accel: " + accel + " (keys " + a.keys + ", noise injection " + (a.injection.empty() ? "0.003" : a.injection) + ")";
  }
  if (a.clip_skip > 0) s += ", Clip skip: " + std::to_string(a.clip_skip);
  for (std::size_t k = 0; k < a.controlnets.size(); ++k) {
    s += ", ControlNet: " + std::filesystem::path(a.controlnets[k]).filename().string();
  }
  if (!a.canny.empty()) s += ", Canny: " + a.canny;
  return s;
}

template <class B>
void save_images(GenerateArgs const& a, fd::Generated<B> const& g, std::string const& tag,
                        std::string const& accel) {
  for (std::size_t i = 0; i < g.images.size(); ++i) {
    std::filesystem::path const p = image_path(a.output, tag, i, g.images.size());
    fd::io::write_png(p, g.images[i].rgb, g.images[i].width, g.images[i].height, 3,
                      {{"parameters", parameters_text(a, g, i, accel)},
                       {"Software", "FasterDiffusion C++ " + std::to_string(fd::kVersionMajor) + "." +
                                        std::to_string(fd::kVersionMinor) + "." + std::to_string(fd::kVersionPatch)}});
    std::printf("wrote %s\n", p.string().c_str());
  }
}

template <class B>
void print_timing(char const* what, fd::Generated<B> const& g) {
  std::printf("%s: text encoder %.3f s, sampling %.3f s (%d encoder runs, %d decoder calls), decode %.3f s, total %.3f s\n",
              what, g.timing.text_encoder, g.timing.sampling, g.stats.encoder_runs, g.stats.decoder_calls,
              g.timing.decode, g.timing.total);
}

template <class B>
void run_generate(B const& be, GenerateArgs const& a);

void add_generate_command(CLI::App& app, GenerateArgs& a, std::function<void()>& run) {
  auto* cmd = app.add_subcommand("generate", "Text to image with a Stable Diffusion model (baseline or FasterDiffusion)");
  cmd->add_option("-m,--model", a.model,
                  "diffusers pipeline folder (model_index.json) or single-file SD 1.x .safetensors "
                  "(default: the embedded tiny-shapes demo model)")
      ->capture_default_str();
  cmd->add_option("-p,--prompt", a.prompt, "the prompt")->required();
  cmd->add_option("-n,--negative-prompt", a.negative, "negative prompt (default: empty)");
  cmd->add_option("--steps", a.steps, "inference steps")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--cfg-scale", a.cfg, "classifier-free guidance scale (<= 1: no guidance)")->capture_default_str();
  cmd->add_option("--guidance-rescale", a.rescale, "diffusers guidance_rescale")->capture_default_str();
  cmd->add_option("-s,--seed", a.seed, "seed of image 0; image i uses seed + i")->capture_default_str();
  cmd->add_option("--seeds", a.seeds, "one seed per image (sets the batch size)")->delimiter(',');
  cmd->add_option("--sampler", a.sampler, "ddim | pndm | dpm++2m | ddpm | euler | euler_a (default: the model's scheduler)")
      ->check(CLI::IsMember({"ddim", "pndm", "dpm++2m", "ddpm", "euler", "euler_a"}));
  cmd->add_option("--eta", a.eta, "DDIM eta")->capture_default_str();
  cmd->add_option("-H,--height", a.height, "image height (default: the model's)")->check(CLI::NonNegativeNumber);
  cmd->add_option("-W,--width", a.width, "image width (default: the model's)")->check(CLI::NonNegativeNumber);
  cmd->add_option("-b,--batch", a.batch, "images to generate")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--accel", a.accel, "none | fd (parallel encoder propagation) | fd-seq (sequential)")
      ->capture_default_str()
      ->check(CLI::IsMember({"none", "fd", "fd-seq"}));
  cmd->add_option("--keys", a.keys, "key steps: 50ls | 50ls-personalized | 100ls | 75ls | s2 | pro | every:N | LIST")
      ->capture_default_str();
  cmd->add_option("--noise-injection", a.injection, "prior noise injection coefficient, or off (default 0.003)");
  cmd->add_option("--max-decoder-rows", a.max_decoder_rows,
                  "rows per parallel decoder call (default: two steps at a time; -1 = whole key-step groups)");
  cmd->add_option("--taesd", a.taesd, "decode with this AutoencoderTiny (TAESD) folder instead of the VAE")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--tokenizer", a.tokenizer, "CLIP tokenizer folder (default: the model's; single files: the embedded one)");
  cmd->add_option("--config-patch", a.config_patch,
                  "with a single-file --model: JSON {\"unet\": {...}, \"vae\": {...}, \"text_encoder\": {...}} merged "
                  "into the configs inferred from the tensor shapes")
      ->check(CLI::ExistingFile);
  cmd->add_flag("--no-ftfy", a.no_ftfy, "tokenize without ftfy's text fixes (transformers without ftfy installed)");
  cmd->add_option("--clip-skip", a.clip_skip, "use the output of the CLIP layer this many from the end")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--tiled,!--no-tiled", a.tiled, "decode in overlapping tiles (default: for latents above 96x96)");
  cmd->add_option("-o,--output", a.output, "PNG to write (out.png; batches: out_0.png, ...)")->capture_default_str();
  add_backend_options(cmd, a.be);
  cmd->add_option("--variant", a.variant, "weights variant to prefer, e.g. fp16");
  cmd->add_flag("--compare", a.compare,
                "run the baseline and FasterDiffusion with the same seed; print both times, the speed-up and the "
                "PSNR, save <out>_origin.png and <out>_faster.png");
  cmd->add_flag("-q,--quiet", a.quiet, "no progress bar");
  cmd->add_option("--controlnet", a.controlnets, "diffusers ControlNet folder (repeat for several ControlNets)")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--control-image", a.control_images,
                  "PNG or JPEG control image, one per --controlnet or one for all (resized as diffusers does; "
                  "the output size defaults to its size rounded down to a multiple of 8)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--canny", a.canny, "LOW,HIGH: use the Canny edges of the control image (OpenCV's Canny, as the "
                                      "reference demo: 100,200)");
  cmd->add_option("--control-scale", a.control_scales, "conditioning scale, one per --controlnet or one for all (default 1)");
  cmd->add_option("--control-start", a.control_start, "control_guidance_start (fraction of the steps)")->capture_default_str();
  cmd->add_option("--control-end", a.control_end, "control_guidance_end (fraction of the steps)")->capture_default_str();
  cmd->add_flag("--guess-mode", a.guess_mode, "ControlNet guess mode");
  cmd->callback([&run, &a] {
    run = [&a] {
      if (a.model.empty()) fd::fail(fd::Errc::kInvalidArgument, "--model: no model given and no embedded model built in");
      // Fail on an unwritable output before minutes of sampling.
      std::filesystem::path const out_dir = std::filesystem::path(a.output).parent_path();
      std::error_code ec;
      if (!out_dir.empty() && !std::filesystem::is_directory(out_dir, ec)) {
        fd::fail(fd::Errc::kIo, a.output + ": output folder " + out_dir.string() + " does not exist");
      }
      with_backend(a.be, [&](auto const& be) { run_generate(be, a); });
    };
  });
}

template <class B>
void run_generate(B const& be, GenerateArgs const& a) {
  std::error_code ec;
  using Pipeline = fd::StableDiffusion<B>;
  typename Pipeline::LoadOptions lo;
  lo.variant = a.variant;
  lo.decoder = a.taesd;
  lo.tokenizer = a.tokenizer;
  if (lo.tokenizer.empty() && std::filesystem::is_regular_file(a.model, ec) && !embedded_model_dir().empty()) {
    lo.tokenizer = std::filesystem::path(embedded_model_dir()) / "tokenizer";  // SD 1.5's vocabulary
  }
  lo.ldm = read_ldm_options(a.config_patch);
  lo.normalization = a.no_ftfy ? fd::text::Normalization::kBasic : fd::text::Normalization::kFtfy;
  for (auto const& c : a.controlnets) lo.controlnets.emplace_back(c);
  if (a.controlnets.empty() && (!a.control_images.empty() || !a.canny.empty() || !a.control_scales.empty())) {
    fd::fail(fd::Errc::kInvalidArgument, "--control-image, --canny and --control-scale need a --controlnet");
  }
  if (!a.controlnets.empty() && a.control_images.size() != a.controlnets.size() && a.control_images.size() != 1) {
    fd::fail(fd::Errc::kInvalidArgument, std::to_string(a.controlnets.size()) + " --controlnet need one --control-image "
                                         "each (or one for all), got " + std::to_string(a.control_images.size()));
  }
  if (a.control_scales.size() > 1 && a.control_scales.size() != a.controlnets.size()) {
    fd::fail(fd::Errc::kInvalidArgument, std::to_string(a.controlnets.size()) + " --controlnet but " +
                                         std::to_string(a.control_scales.size()) + " --control-scale values");
  }
  // Control images as the reference prepares them: decoded to RGB, Canny edges on the original image
  // when asked, then resized to the output size when the pipeline runs.
  std::vector<fd::io::Rgb8> control_images;
  for (auto const& path : a.control_images) {
    fd::io::Rgb8 img = fd::io::read_image(path);
    if (!a.canny.empty()) {
      auto const [lo_t, hi_t] = parse_thresholds("--canny", a.canny);
      img = canny_edges(img, lo_t, hi_t);
    }
    control_images.push_back(std::move(img));
  }
  double const t_load = now_ms();
  Pipeline const sd = Pipeline::load(be, a.model, lo);
  std::printf("loaded %s in %.3f s\n", a.model.c_str(), (now_ms() - t_load) / 1000.0);

  fd::Request req{.prompt = a.prompt,
                  .negative_prompt = a.negative,
                  .batch = a.seeds.empty() ? a.batch : static_cast<int>(a.seeds.size()),
                  .steps = a.steps,
                  .guidance = a.cfg,
                  .guidance_rescale = a.rescale,
                  .seed = a.seed,
                  .seeds = a.seeds,
                  .height = a.height,
                  .width = a.width,
                  .clip_skip = a.clip_skip,
                  .eta = a.eta,
                  .scheduler = parse_sampler(a.sampler),
                  .max_decoder_rows = a.max_decoder_rows,
                  .tiled_decode = a.tiled};
  if (!control_images.empty()) {
    if (req.height == 0 || req.width == 0) {
      auto const [w, h] = fd::image::default_size_for(control_images.front(), sd.scale_factor());
      if (req.width == 0) req.width = w;
      if (req.height == 0) req.height = h;
    }
    for (std::size_t k = 0; k < a.controlnets.size(); ++k) {
      fd::io::Rgb8 const& img = control_images[control_images.size() == 1 ? 0 : k];
      req.controls.push_back({.image = fd::image::prepare_control_image(img, req.width, req.height),
                              .scale = a.control_scales.empty() ? 1.0f
                                                                : a.control_scales[a.control_scales.size() == 1 ? 0 : k],
                              .guidance_start = a.control_start,
                              .guidance_end = a.control_end});
    }
    req.guess_mode = a.guess_mode;
  }
  auto hooks = [&](std::string label) {
    fd::GenerateHooks h;
    if (!a.quiet) h.on_step = fd::progress::bar({.label = std::move(label)});
    h.on_warning = [](std::string_view w) { std::fprintf(stderr, "warning: %.*s\n", static_cast<int>(w.size()), w.data()); };
    return h;
  };
  if (!a.compare) {
    auto g = run_accel(sd, req, a.accel, a.keys, a.injection, hooks(a.accel == "none" ? "Origin" : "Faster"));
    print_timing(a.accel == "none" ? "origin" : "faster", g);
    if (!req.controls.empty()) std::printf("ControlNet runs: %d\n", g.stats.controlnet_runs);
    save_images(a, g, "", a.accel);
    return;
  }
  std::string const accel = a.accel == "none" ? "fd" : a.accel;
  auto base = run_accel(sd, req, "none", a.keys, a.injection, hooks("Origin Pipeline "));
  auto fast = run_accel(sd, req, accel, a.keys, a.injection, hooks("Faster Diffusion"));
  std::printf("Origin Pipeline: %.3f s\n", base.timing.total);
  std::printf("Faster Diffusion: %.3f s\n", fast.timing.total);
  double psnr_sum = 0;
  for (std::size_t i = 0; i < base.images.size(); ++i) {
    psnr_sum += fd::image::psnr(base.images[i].rgb, fast.images[i].rgb);
  }
  std::printf("Speed-up: %.2fx, PSNR (origin vs faster): %.2f dB\n", base.timing.total / fast.timing.total,
              psnr_sum / static_cast<double>(base.images.size()));
  print_timing("origin", base);
  print_timing("faster", fast);
  if (!req.controls.empty()) {
    std::printf("ControlNet runs: origin %d, faster %d\n", base.stats.controlnet_runs, fast.stats.controlnet_runs);
  }
  save_images(a, base, "origin", "none");
  save_images(a, fast, "faster", accel);
}



namespace shapes {

struct Named {
  char const* name;
  std::array<int, 3> rgb;
};
inline constexpr std::array<Named, 8> kColors{{{"red", {220, 30, 30}},
                                               {"green", {30, 170, 50}},
                                               {"blue", {30, 60, 220}},
                                               {"yellow", {240, 220, 40}},
                                               {"purple", {140, 50, 180}},
                                               {"orange", {250, 140, 20}},
                                               {"white", {245, 245, 245}},
                                               {"black", {20, 20, 20}}}};
inline constexpr std::array<char const*, 3> kShapes{"circle", "square", "triangle"};

struct Caption {
  std::string text;
  int color, shape, background;
};

/// The 168 captions of the grammar, colour-major: colour, then shape, then background.
inline std::vector<Caption> all_captions() {
  std::vector<Caption> out;
  for (int c = 0; c < 8; ++c) {
    for (int s = 0; s < 3; ++s) {
      for (int b = 0; b < 8; ++b) {
        if (b == c) continue;
        out.push_back({std::string("a ") + kColors[c].name + " " + kShapes[s] + " on a " + kColors[b].name + " background",
                       c, s, b});
      }
    }
  }
  return out;
}

inline int nearest_color(std::array<double, 3> const& rgb) {
  int best = 0;
  double bd = 1e30;
  for (int i = 0; i < 8; ++i) {
    double d = 0;
    for (int k = 0; k < 3; ++k) d += (rgb[k] - kColors[i].rgb[k]) * (rgb[k] - kColors[i].rgb[k]);
    if (d < bd) bd = d, best = i;
  }
  return best;
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  std::size_t const n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Verdict {
  int background = -1, color = -1, shape = -1;  // -1: no shape region found
};

/// Background = per-channel median of the 2-pixel border ring; shape region = pixels further than 45
/// (RGB distance) from it; shape colour = the region's per-channel median; form = bounding-box fill
/// ratio nearest to square 1, circle pi/4, triangle 1/2.
inline Verdict judge(fd::Image const& im) {
  int const w = im.width, h = im.height;
  auto px = [&](int x, int y, int k) { return static_cast<double>(im.rgb[static_cast<std::size_t>((y * w + x) * 3 + k)]); };
  std::array<std::vector<double>, 3> ring;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      if (x < 2 || y < 2 || x >= w - 2 || y >= h - 2) {
        for (int k = 0; k < 3; ++k) ring[static_cast<std::size_t>(k)].push_back(px(x, y, k));
      }
    }
  }
  std::array<double, 3> const bg{median(ring[0]), median(ring[1]), median(ring[2])};
  Verdict v;
  v.background = nearest_color(bg);
  std::array<std::vector<double>, 3> region;
  int x0 = w, y0 = h, x1 = -1, y1 = -1, count = 0;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      double d = 0;
      for (int k = 0; k < 3; ++k) d += (px(x, y, k) - bg[static_cast<std::size_t>(k)]) * (px(x, y, k) - bg[static_cast<std::size_t>(k)]);
      if (std::sqrt(d) > 45.0) {
        for (int k = 0; k < 3; ++k) region[static_cast<std::size_t>(k)].push_back(px(x, y, k));
        x0 = std::min(x0, x), y0 = std::min(y0, y), x1 = std::max(x1, x), y1 = std::max(y1, y);
        ++count;
      }
    }
  }
  if (count == 0) return v;
  v.color = nearest_color({median(region[0]), median(region[1]), median(region[2])});
  double const fill = count / static_cast<double>((x1 - x0 + 1) * (y1 - y0 + 1));
  std::array<double, 3> const ideal{0.785398, 1.0, 0.5};  // circle, square, triangle
  v.shape = 0;
  for (int s = 1; s < 3; ++s) {
    if (std::fabs(fill - ideal[static_cast<std::size_t>(s)]) < std::fabs(fill - ideal[static_cast<std::size_t>(v.shape)])) v.shape = s;
  }
  return v;
}

}  // namespace shapes


void add_shapes_eval_command(CLI::App& app, ShapesEvalArgs& a, std::function<void()>& run, int& exit_code) {
  auto* cmd = app.add_subcommand("shapes-eval",
                                 "Colour accuracy of the tiny-shapes demo model, baseline vs FasterDiffusion, and their PSNR");
  cmd->add_option("-m,--model", a.model, "the tiny-shapes model folder")->capture_default_str();
  cmd->add_option("--captions", a.captions, "captions to evaluate, spread evenly over the 168 of the grammar")
      ->capture_default_str()
      ->check(CLI::Range(1, 168));
  cmd->add_option("--seed-base", a.seed_base, "caption k uses seed seed-base + k")->capture_default_str();
  cmd->add_option("--steps", a.steps, "inference steps")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--cfg-scale", a.cfg, "guidance scale")->capture_default_str();
  cmd->add_option("--sampler", a.sampler, "ddim | pndm | dpm++2m | ddpm | euler | euler_a")->capture_default_str();
  cmd->add_option("--keys", a.keys, "FasterDiffusion key steps")->capture_default_str();
  cmd->add_option("--noise-injection", a.injection, "prior noise injection coefficient, or off")->capture_default_str();
  cmd->add_option("--chunk", a.chunk, "images per pipeline call")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--threads", a.threads, "CPU threads (0 = all)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--expect-min-shape-colour", a.min_shape_colour,
                  "exit 1 if the baseline's shape-colour accuracy (%) is below this");
  cmd->add_option("--expect-min-psnr", a.min_psnr, "exit 1 if the mean PSNR (dB) between the two is below this");
  cmd->callback([&run, &a, &exit_code] {
    run = [&a, &exit_code] {
      Backend be{{.threads = a.threads}};
      auto const sd = fd::StableDiffusion<Backend>::load(be, a.model);
      std::vector<shapes::Caption> const all = shapes::all_captions();
      std::vector<shapes::Caption> picked;
      for (int k = 0; k < a.captions; ++k) picked.push_back(all[static_cast<std::size_t>(k * 168 / a.captions)]);

      struct Score {
        int bg = 0, color = 0, both = 0, form = 0;
        double seconds = 0;
      };
      Score base_s, fast_s;
      std::vector<double> psnrs;
      auto score = [](Score& s, shapes::Caption const& c, fd::Image const& im) {
        shapes::Verdict const v = shapes::judge(im);
        s.bg += v.background == c.background;
        s.color += v.color == c.color;
        s.both += v.background == c.background && v.color == c.color;
        s.form += v.shape == c.shape;
      };
      for (std::size_t k0 = 0; k0 < picked.size(); k0 += static_cast<std::size_t>(a.chunk)) {
        fd::Request req{.steps = a.steps, .guidance = a.cfg, .scheduler = parse_sampler(a.sampler)};
        for (std::size_t k = k0; k < std::min(picked.size(), k0 + static_cast<std::size_t>(a.chunk)); ++k) {
          req.prompts.push_back(picked[k].text);
          req.seeds.push_back(static_cast<std::uint64_t>(a.seed_base) + k);
        }
        auto const base = run_accel(sd, req, "none", a.keys, a.injection, {});
        auto const fast = run_accel(sd, req, "fd", a.keys, a.injection, {});
        base_s.seconds += base.timing.total;
        fast_s.seconds += fast.timing.total;
        for (std::size_t i = 0; i < req.prompts.size(); ++i) {
          score(base_s, picked[k0 + i], base.images[i]);
          score(fast_s, picked[k0 + i], fast.images[i]);
          psnrs.push_back(fd::image::psnr(base.images[i].rgb, fast.images[i].rgb));
        }
        std::fprintf(stderr, "\r%zu/%zu captions", std::min(picked.size(), k0 + static_cast<std::size_t>(a.chunk)), picked.size());
      }
      std::fprintf(stderr, "\n");
      double const n = static_cast<double>(picked.size());
      auto pct = [&](int x) { return 100.0 * x / n; };
      std::printf("tiny-shapes colour check: %zu captions, seeds %d..%d, %s %d steps, guidance %g\n", picked.size(),
                  a.seed_base, a.seed_base + static_cast<int>(picked.size()) - 1, a.sampler.c_str(), a.steps,
                  static_cast<double>(a.cfg));
      std::printf("| sampler | background colour | shape colour | both | form (heuristic) | time |\n");
      std::printf("|---|---|---|---|---|---|\n");
      std::printf("| %s %d | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.2f s |\n", a.sampler.c_str(), a.steps, pct(base_s.bg),
                  pct(base_s.color), pct(base_s.both), pct(base_s.form), base_s.seconds);
      std::printf("| %s %d + FasterDiffusion (keys %s, injection %s) | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.2f s |\n",
                  a.sampler.c_str(), a.steps, a.keys.c_str(), a.injection.c_str(), pct(fast_s.bg), pct(fast_s.color),
                  pct(fast_s.both), pct(fast_s.form), fast_s.seconds);
      double const mean = std::accumulate(psnrs.begin(), psnrs.end(), 0.0) / n;
      std::printf("PSNR FasterDiffusion vs baseline: mean %.2f dB, median %.2f dB, min %.2f dB\n", mean,
                  shapes::median(psnrs), *std::min_element(psnrs.begin(), psnrs.end()));
      std::printf("speed-up: %.2fx\n", base_s.seconds / fast_s.seconds);
      if (a.min_shape_colour >= 0 && pct(base_s.color) < a.min_shape_colour) {
        std::fprintf(stderr, "shapes-eval: baseline shape-colour accuracy %.1f%% is below the expected %.1f%%\n",
                     pct(base_s.color), a.min_shape_colour);
        exit_code = 1;
      }
      if (a.min_psnr >= 0 && !(mean >= a.min_psnr)) {
        std::fprintf(stderr, "shapes-eval: mean PSNR %.2f dB is below the expected %.2f dB\n", mean, a.min_psnr);
        exit_code = 1;
      }
    };
  });
}

}  // namespace fdcli
