#pragma once
/// @file
/// fd::io::Checkpoint: the tensors of one model, from a single safetensors file or a sharded set
/// described by a `*.safetensors.index.json`, with tracking of which tensors a loader consumed.

#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "fd/backend/traits.hpp"
#include "fd/core/dtype.hpp"
#include "fd/core/shape.hpp"
#include "fd/core/tensor.hpp"
#include "fd/error.hpp"
#include "fd/io/mapped_file.hpp"
#include "fd/io/safetensors.hpp"

namespace fd::io {

/// One tensor of a Checkpoint::view(): `source` (a name in the base checkpoint) presented as `name`,
/// optionally with another shape of the same element count (e.g. a 1x1 convolution kernel
/// [C, C, 1, 1] presented as a linear weight [C, C]; the row-major bytes are the same).
struct Alias {
  std::string name;
  std::string source;
  std::optional<Shape> shape = std::nullopt;
};

/// A model's tensors spread over one or more safetensors files.
///
/// Index files ({"metadata": {...}, "weight_map": {tensor: shard file}}) are validated when opened: every
/// listed shard must exist and hold the tensors listed for it. Tensors a shard holds but the index does
/// not list are ignored (invisible through this class), as the reference implementations do.
///
/// Use tracking: load() marks a tensor used and ignore() marks it deliberately skipped; unused() and
/// require_all_used() then reveal tensors no module consumed, which almost always means a naming bug
/// in a loader or a checkpoint for a different architecture.
///
/// Views: Checkpoint::view() presents a subset of another checkpoint's tensors under new names (used to
/// read single-file checkpoints whose names differ from the ones the loaders bind to). A view has its own
/// use tracking, and its errors name the original file and the original tensor name next to the new one.
///
/// Thread-safety: concurrent load(), ignore() and mark_used() calls on one Checkpoint are safe; the set
/// of tensors never changes after open.
/// @code
///   auto ckpt = fd::io::Checkpoint::open_model_dir("stable-diffusion-v1-5/unet");
///   auto w = ckpt.load(cpu, "conv_in.weight", fd::Shape{320, 4, 3, 3});
///   ...
///   ckpt.require_all_used("UNet2DConditionModel");
/// @endcode
class Checkpoint {
 public:
  /// Opens a `.safetensors` file, or a sharded checkpoint through its `.json` index (any path ending
  /// in ".json" is read as an index).
  /// Throws kIo if a file cannot be read (naming the shard and the index), kFormat for a malformed
  /// index or shard, kMissingTensor if the index lists a tensor its shard does not hold.
  static Checkpoint open(std::filesystem::path path) {
    Checkpoint c(path);
    if (path.extension() == ".json") {
      c.open_index();
    } else {
      c.files_->push_back(SafeTensorsFile::open(path));
      SafeTensorsFile const& f = c.files_->back();
      for (std::string const& name : f.names()) {
        c.entries_.emplace(name, Entry{0, &f.info(name), {}, {}, Use::kUnused});
      }
      c.metadata_ = f.metadata();
    }
    return c;
  }

  /// Opens the weights of a diffusers/transformers model folder. Looks for, in order:
  ///   - with a variant: `<stem>.<variant>.safetensors`, `<stem>.<variant>.safetensors.index.json`, then
  ///     the plain names below;
  ///   - `<stem>.safetensors`, `<stem>.safetensors.index.json`;
  ///   - without a variant only: the fp16 variant files `<stem>.fp16.safetensors`,
  ///     `<stem>.fp16.safetensors.index.json`.
  /// Diffusers models use the default stem; transformers text encoders use "model".
  /// Throws kIo naming the folder and every file name tried when nothing matches, or kUnsupported when
  /// the folder only holds PyTorch pickle weights (`.bin`), which fd cannot read.
  static Checkpoint open_model_dir(std::filesystem::path const& dir,
                                   std::string_view stem = "diffusion_pytorch_model", std::string_view variant = "") {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
      fail(Errc::kIo, dir.string() + ": " +
                          (std::filesystem::exists(dir, ec) ? "not a directory" : "no such model folder"));
    }
    std::string const s(stem);
    std::vector<std::string> tried;
    if (!variant.empty()) {
      std::string const v(variant);
      tried.push_back(s + "." + v + ".safetensors");
      tried.push_back(s + "." + v + ".safetensors.index.json");
    }
    tried.push_back(s + ".safetensors");
    tried.push_back(s + ".safetensors.index.json");
    if (variant.empty()) {
      tried.push_back(s + ".fp16.safetensors");
      tried.push_back(s + ".fp16.safetensors.index.json");
    }
    for (std::string const& name : tried) {
      if (std::filesystem::is_regular_file(dir / name, ec)) {
        return open(dir / name);
      }
    }

    std::vector<std::string> pickles;
    pickles.push_back(s + ".bin");
    pickles.push_back(s + ".bin.index.json");
    if (!variant.empty()) {
      pickles.push_back(s + "." + std::string(variant) + ".bin");
    } else {
      pickles.push_back(s + ".fp16.bin");
    }
    if (stem == "model") {  // transformers names its pickle weights differently from its safetensors
      pickles.push_back("pytorch_model.bin");
      pickles.push_back("pytorch_model.bin.index.json");
    }
    for (std::string const& name : pickles) {
      if (std::filesystem::exists(dir / name, ec)) {
        fail(Errc::kUnsupported,
             (dir / name).string() +
                 ": PyTorch pickle checkpoints are not supported (reading them safely needs a Python-compatible "
                 "unpickler); convert the folder to safetensors first, e.g. load it in Python with diffusers "
                 "or transformers and call save_pretrained(folder, safe_serialization=True)");
      }
    }

    std::string list;
    for (std::string const& name : tried) {
      list += (list.empty() ? "" : ", ") + name;
    }
    fail(Errc::kIo, dir.string() + ": no safetensors checkpoint found (tried " + list + ")");
  }

  /// A checkpoint presenting `aliases` of `base`'s tensors (sharing its mapped files, which stay alive as
  /// long as any view does). Use marks start empty and are independent of `base`'s. path() is base's path.
  /// `describe_missing`, when given, explains in missing-tensor errors where a name absent from the view
  /// would have come from (e.g. "the original file has no tensor 'model.diffusion_model.out.2.weight'").
  /// Throws kMissingTensor if a source is not in `base`, kInvalidArgument for a duplicate name,
  /// kShapeMismatch if a new shape has a different element count; each naming base's file.
  static Checkpoint view(Checkpoint const& base, std::vector<Alias> const& aliases,
                         std::function<std::string(std::string_view)> describe_missing = {}) {
    Checkpoint c(base.path_);
    c.files_ = base.files_;
    c.sharded_ = base.sharded_;
    c.metadata_ = base.metadata_;
    c.describe_missing_ = std::move(describe_missing);
    for (Alias const& a : aliases) {
      auto const src = base.entries_.find(a.source);
      if (src == base.entries_.end()) {
        fail(Errc::kMissingTensor, base.path_.string() + ": no tensor " + detail::quoted(a.source) +
                                       " (wanted as " + detail::quoted(a.name) + ")");
      }
      Entry e;
      e.file = src->second.file;
      e.stored = src->second.stored.empty() ? a.source : src->second.stored;
      e.info = src->second.info;
      if (a.shape && !(*a.shape == src->second.info->shape)) {
        if (a.shape->numel() != src->second.info->shape.numel()) {
          fail(Errc::kShapeMismatch, base.path_.string() + ": tensor " + detail::quoted(e.stored) + " " +
                                         src->second.info->shape.str() + " cannot be presented as " +
                                         detail::quoted(a.name) + " " + a.shape->str() + " (element counts differ)");
        }
        auto own = std::make_shared<TensorInfo>(*src->second.info);
        own->shape = *a.shape;
        e.info = own.get();
        e.own = std::move(own);
      }
      if (e.stored == a.name) e.stored.clear();
      if (!c.entries_.emplace(a.name, std::move(e)).second) {
        fail(Errc::kInvalidArgument, base.path_.string() + ": two tensors presented as " + detail::quoted(a.name));
      }
    }
    return c;
  }

  Checkpoint(Checkpoint&&) noexcept = default;
  Checkpoint& operator=(Checkpoint&&) noexcept = default;
  Checkpoint(Checkpoint const&) = delete;
  Checkpoint& operator=(Checkpoint const&) = delete;

  /// The file opened: the safetensors file or the index.
  std::filesystem::path const& path() const noexcept { return path_; }
  bool is_sharded() const noexcept { return sharded_; }

  /// Number of tensors.
  std::size_t size() const noexcept { return entries_.size(); }

  /// All tensor names, sorted.
  std::vector<std::string> names() const { return names(""); }

  /// Sorted names starting with `prefix` (e.g. "down_blocks.0.").
  std::vector<std::string> names(std::string_view prefix) const {
    std::vector<std::string> out;
    for (auto it = entries_.lower_bound(prefix); it != entries_.end() && it->first.starts_with(prefix); ++it) {
      out.push_back(it->first);
    }
    return out;
  }

  bool contains(std::string_view name) const { return entries_.find(name) != entries_.end(); }

  /// Throws kMissingTensor "<checkpoint>: no tensor '<name>'" if absent.
  TensorInfo const& info(std::string_view name) const { return *entry(name).info; }

  /// The safetensors file holding `name`.
  std::filesystem::path const& file_of(std::string_view name) const { return file(entry(name)).path(); }

  /// The name `name` is stored under in its file (differs from `name` only in views).
  std::string const& stored_name(std::string_view name) const {
    Entry const& e = entry(name);
    return e.stored.empty() ? entries_.find(name)->first : e.stored;
  }

  /// How a tensor is named in error messages: "'name'", or in views "'name' (stored as 'original')".
  std::string describe(std::string_view name) const {
    auto it = entries_.find(name);
    if (it == entries_.end() || it->second.stored.empty()) return detail::quoted(name);
    return detail::quoted(name) + " (stored as " + detail::quoted(it->second.stored) + ")";
  }

  /// Extra explanation for a name this checkpoint lacks ("" for plain checkpoints; views may say which
  /// original tensor would have provided it).
  std::string missing_note(std::string_view name) const {
    return describe_missing_ && !contains(name) ? describe_missing_(name) : std::string();
  }

  /// The stored bytes of a tensor (does not mark it used). A view's reshaped tensor has the same bytes.
  std::span<std::byte const> bytes(std::string_view name) const {
    Entry const& e = entry(name);
    return file(e).bytes(e.stored.empty() ? name : std::string_view(e.stored));
  }

  /// Metadata of the single file's "__metadata__", or of the index's "metadata" (non-string values are
  /// given as their JSON text, e.g. "684").
  std::map<std::string, std::string> const& metadata() const noexcept { return metadata_; }

  /// Loads a tensor (see SafeTensorsFile::load) and marks it used.
  template <backend::Backend B>
  Tensor<B> load(B const& be, std::string_view name, DType target = DType::kF32) {
    Entry& e = entry(name);
    Tensor<B> t = detail::load_tensor(be, *e.info, bytes(name), target, who(name, e));
    set_use(e, Use::kLoaded);
    return t;
  }

  /// As load(), checking the shape first: kShapeMismatch "<file>: tensor '<name>': expected shape [..], got [..]".
  template <backend::Backend B>
  Tensor<B> load(B const& be, std::string_view name, Shape const& expected, DType target = DType::kF32) {
    Entry& e = entry(name);
    std::string const w = who(name, e);
    detail::require_shape(*e.info, expected, w);
    Tensor<B> t = detail::load_tensor(be, *e.info, bytes(name), target, w);
    set_use(e, Use::kLoaded);
    return t;
  }

  /// Throws kNonFinite naming the file, tensor and first bad index if the tensor holds NaN/infinity.
  void require_finite(std::string_view name) const {
    Entry const& e = entry(name);
    detail::require_finite_bytes(e.info->dtype, e.info->shape, bytes(name), who(name, e));
  }

  /// Marks a tensor used without loading it (e.g. when its bytes were read directly).
  void mark_used(std::string_view name) { set_use(entry(name), Use::kLoaded); }

  /// Marks a tensor as deliberately skipped (e.g. CLIP's `position_ids` buffer). Returns false, and does
  /// nothing, if the checkpoint has no such tensor: optional buffers come and go between library versions.
  bool ignore(std::string_view name) {
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      return false;
    }
    std::lock_guard<std::mutex> lock(*mu_);
    if (it->second.use == Use::kUnused) {
      it->second.use = Use::kIgnored;
    }
    return true;
  }

  /// Whether `name` was loaded or marked used (ignored tensors are not "used").
  bool is_used(std::string_view name) const {
    Entry const& e = entry(name);
    std::lock_guard<std::mutex> lock(*mu_);
    return e.use == Use::kLoaded;
  }

  /// Names neither loaded nor ignored, sorted.
  std::vector<std::string> unused() const {
    std::lock_guard<std::mutex> lock(*mu_);
    std::vector<std::string> out;
    for (auto const& [name, e] : entries_) {
      if (e.use == Use::kUnused) {
        out.push_back(name);
      }
    }
    return out;
  }

  /// Throws kUnexpectedTensor "<checkpoint>: N tensor(s) not used by <consumer>: a, b, ..." if unused()
  /// is not empty.
  void require_all_used(std::string_view consumer) const {
    std::vector<std::string> const left = unused();
    if (left.empty()) {
      return;
    }
    constexpr std::size_t kShown = 20;
    std::string list;
    for (std::size_t i = 0; i < left.size() && i < kShown; ++i) {
      // Views name the tensor as the file stores it: that is the name a user can look up.
      Entry const& e = entry(left[i]);
      list += (i ? ", " : "") + (e.stored.empty() ? detail::quoted(left[i])
                                                 : detail::quoted(e.stored) + " (as " + detail::quoted(left[i]) + ")");
    }
    if (left.size() > kShown) {
      list += ", ... (" + std::to_string(left.size() - kShown) + " more)";
    }
    fail(Errc::kUnexpectedTensor, path_.string() + ": " + std::to_string(left.size()) + " tensor" +
                                      (left.size() == 1 ? "" : "s") + " not used by " + std::string(consumer) +
                                      ": " + list);
  }

  /// Forgets every load/ignore mark.
  void reset_usage() {
    std::lock_guard<std::mutex> lock(*mu_);
    for (auto& [name, e] : entries_) e.use = Use::kUnused;
  }

 private:
  enum class Use : unsigned char { kUnused, kLoaded, kIgnored };

  struct Entry {
    std::size_t file = 0;
    TensorInfo const* info = nullptr;  // owned by (*files_)[file] or by `own`; map nodes are stable across moves
    std::string stored;                // views: the name in the file when it differs from the key
    std::shared_ptr<TensorInfo const> own;  // views: the info with the presented shape
    Use use = Use::kUnused;
  };

  explicit Checkpoint(std::filesystem::path path)
      : path_(std::move(path)),
        files_(std::make_shared<std::vector<SafeTensorsFile>>()),
        mu_(std::make_unique<std::mutex>()) {}

  SafeTensorsFile const& file(Entry const& e) const { return (*files_)[e.file]; }

  // Error context for a tensor: "<file>: tensor 'name'" plus the stored name in views.
  std::string who(std::string_view name, Entry const& e) const {
    if (e.stored.empty()) return detail::tensor_context(file(e).path(), name);
    return file(e).path().string() + ": tensor " + detail::quoted(e.stored) + " (as " + detail::quoted(name) + ")";
  }

  Entry const& entry(std::string_view name) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      std::string const note = describe_missing_ ? describe_missing_(name) : std::string();
      fail(Errc::kMissingTensor, path_.string() + ": no tensor " + detail::quoted(name) +
                                     (note.empty() ? "" : " (" + note + ")"));
    }
    return it->second;
  }
  Entry& entry(std::string_view name) { return const_cast<Entry&>(std::as_const(*this).entry(name)); }

  void set_use(Entry& e, Use u) {
    std::lock_guard<std::mutex> lock(*mu_);
    e.use = u;
  }

  [[noreturn]] void bad(std::string const& what) const { fail(Errc::kFormat, path_.string() + ": " + what); }

  void open_index() {
    sharded_ = true;
    MappedFile const index(path_);
    std::string_view const text(reinterpret_cast<char const*>(index.bytes().data()), index.size());
    nlohmann::json const j = detail::parse_json(text, path_.string());
    if (!j.is_object()) {
      bad(std::string("index is not a JSON object (it is ") + j.type_name() + ")");
    }

    if (auto m = j.find("metadata"); m != j.end() && !m->is_null()) {
      if (!m->is_object()) {
        bad("\"metadata\" is not a JSON object (it is " + m->dump() + ")");
      }
      for (auto const& [k, v] : m->items()) {
        metadata_.emplace(k, v.is_string() ? v.get<std::string>() : v.dump());
      }
    }

    auto const wm = j.find("weight_map");
    if (wm == j.end()) {
      bad("missing \"weight_map\"");
    }
    if (!wm->is_object()) {
      bad(std::string("\"weight_map\" is not a JSON object (it is ") + wm->type_name() + ")");
    }

    std::filesystem::path const folder = path_.parent_path();
    std::map<std::string, std::size_t> shard_index;
    for (auto const& [tensor, shard_json] : wm->items()) {
      if (!shard_json.is_string()) {
        bad("weight_map entry for tensor " + detail::quoted(tensor) + " is not a string (it is " +
            shard_json.dump() + ")");
      }
      std::string const& shard = shard_json.get_ref<std::string const&>();
      auto [it, inserted] = shard_index.try_emplace(shard, files_->size());
      if (inserted) {
        files_->push_back(open_shard(folder, shard, tensor));
      }
      SafeTensorsFile const& f = (*files_)[it->second];
      if (!f.contains(tensor)) {
        fail(Errc::kMissingTensor, path_.string() + ": tensor " + detail::quoted(tensor) +
                                       " is listed in weight_map but its shard " + f.path().string() +
                                       " does not hold it");
      }
      entries_.emplace(tensor, Entry{it->second, &f.info(tensor), {}, {}, Use::kUnused});
    }
  }

  SafeTensorsFile open_shard(std::filesystem::path const& folder, std::string const& shard,
                             std::string const& first_tensor) const {
    std::filesystem::path const rel(shard);
    bool escapes = shard.empty() || rel.is_absolute() || rel.has_root_path();
    for (auto const& part : rel) {
      escapes = escapes || part == "..";
    }
    if (escapes) {
      bad("shard " + detail::quoted(shard) + " (for tensor " + detail::quoted(first_tensor) +
          ") is not a file name relative to the index's folder");
    }
    std::filesystem::path const full = folder / rel;
    std::error_code ec;
    if (!std::filesystem::exists(full, ec)) {
      fail(Errc::kIo, path_.string() + ": shard " + detail::quoted(shard) + " (for tensor " +
                          detail::quoted(first_tensor) + ") not found: " + full.string() + " does not exist");
    }
    return with_context(path_.string() + ": shard " + detail::quoted(shard),
                        [&] { return SafeTensorsFile::open(full); });
  }

  std::filesystem::path path_;
  bool sharded_ = false;
  std::shared_ptr<std::vector<SafeTensorsFile>> files_;  // shared with views
  std::function<std::string(std::string_view)> describe_missing_;
  std::map<std::string, Entry, std::less<>> entries_;
  std::map<std::string, std::string> metadata_;
  std::unique_ptr<std::mutex> mu_;
};

}  // namespace fd::io
