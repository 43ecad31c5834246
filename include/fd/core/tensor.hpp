#pragma once
/// @file
/// fd::Tensor<B>: a strided n-dimensional view over memory owned by backend B.
///
/// Tensors are cheap handles: copying one shares the storage (like torch.Tensor). View operations
/// (reshape, slice, select, permute, unsqueeze) never copy; clone() and contiguous() do.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fd/backend/traits.hpp"
#include "fd/core/dtype.hpp"
#include "fd/core/shape.hpp"
#include "fd/error.hpp"

namespace fd {

template <class B>
class Tensor {
  static_assert(backend::Backend<B>,
                "Tensor<B>: B is not an fd backend; give it `using fd_backend = void;`, a memory_space and the "
                "allocate/copy members listed in fd/backend/traits.hpp (see docs/extending.md#backends)");

 public:
  using backend_type = B;

  Tensor() = default;

  /// Uninitialised tensor, contiguous.
  static Tensor empty(B const& be, Shape shape, DType dtype = DType::kF32) {
    for (int i = 0; i < shape.rank(); ++i) {
      if (shape[i] < 0) fail(Errc::kInvalidArgument, "Tensor::empty: negative extent in " + shape.str());
    }
    Tensor t;
    std::size_t const bytes = static_cast<std::size_t>(shape.numel()) * size_of(dtype);
    t.storage_ = be.allocate(bytes);
    t.data_ = t.storage_.get();
    t.shape_ = shape;
    t.strides_ = contiguous_strides(shape);
    t.dtype_ = dtype;
    return t;
  }

  static Tensor zeros(B const& be, Shape shape, DType dtype = DType::kF32) {
    Tensor t = empty(be, shape, dtype);
    if constexpr (backend::accessible_from<B, backend::HostSpace>) {
      std::memset(t.data_, 0, t.nbytes());
    } else {
      std::vector<std::byte> z(t.nbytes());
      be.copy_from_host(t.data_, z.data(), z.size());
    }
    return t;
  }

  /// Copies host values into a new tensor of the same dtype as T.
  template <class T>
  static Tensor from_host(B const& be, Shape shape, T const* values) {
    Tensor t = empty(be, shape, dtype_of<T>::value);
    be.copy_from_host(t.data_, values, t.nbytes());
    return t;
  }
  template <class T>
  static Tensor from_host(B const& be, Shape shape, std::vector<T> const& values) {
    if (static_cast<std::int64_t>(values.size()) != shape.numel()) {
      fail(Errc::kShapeMismatch, "Tensor::from_host: " + std::to_string(values.size()) + " values for shape " +
                                     shape.str());
    }
    return from_host(be, shape, values.data());
  }

  bool defined() const noexcept { return data_ != nullptr || (storage_ && shape_.numel() == 0); }
  Shape const& shape() const noexcept { return shape_; }
  Shape const& strides() const noexcept { return strides_; }
  int rank() const noexcept { return shape_.rank(); }
  std::int64_t dim(int i) const { return shape_.at(i); }
  std::int64_t numel() const noexcept { return shape_.numel(); }
  DType dtype() const noexcept { return dtype_; }
  std::size_t nbytes() const noexcept { return static_cast<std::size_t>(numel()) * size_of(dtype_); }

  /// @post true iff strides() == contiguous_strides(shape()) over every extent > 1.
  bool is_contiguous() const noexcept {
    std::int64_t expect = 1;
    for (int i = rank() - 1; i >= 0; --i) {
      if (shape_[i] != 1 && strides_[i] != expect) return false;
      expect *= shape_[i];
    }
    return true;
  }

  /// Typed pointer to the first element. Throws kDTypeMismatch if T does not match dtype().
  template <class T>
  T* data() const {
    if (dtype_of<T>::value != dtype_) {
      fail(Errc::kDTypeMismatch, "tensor holds " + std::string(dtype_name(dtype_)) + ", accessed as " +
                                     std::string(dtype_name(dtype_of<T>::value)));
    }
    return reinterpret_cast<T*>(data_);
  }
  std::byte* raw() const noexcept { return data_; }
  std::shared_ptr<std::byte> const& storage() const noexcept { return storage_; }
  bool shares_storage_with(Tensor const& o) const noexcept { return storage_ == o.storage_; }

  // ---- views ---------------------------------------------------------------------------------------

  /// Same elements, new shape. One extent may be -1 (inferred).
  /// @pre is_contiguous(). @post result.numel() == numel(), shares storage.
  Tensor reshape(Shape shape) const {
    int infer = -1;
    std::int64_t known = 1;
    for (int i = 0; i < shape.rank(); ++i) {
      if (shape[i] == -1) {
        if (infer >= 0) fail(Errc::kInvalidArgument, "reshape: more than one -1 in " + shape.str());
        infer = i;
      } else {
        known *= shape[i];
      }
    }
    if (infer >= 0) shape[infer] = known == 0 ? 0 : numel() / known;
    if (shape.numel() != numel()) {
      fail(Errc::kShapeMismatch, "reshape: cannot view " + shape_.str() + " as " + shape.str());
    }
    if (!is_contiguous()) fail(Errc::kInvalidArgument, "reshape: tensor " + shape_.str() + " is not contiguous");
    Tensor t = *this;
    t.shape_ = shape;
    t.strides_ = contiguous_strides(shape);
    return t;
  }

  /// Elements [begin, end) along dim.
  /// @post result.dim(dim) == end - begin, shares storage.
  Tensor slice(int dim, std::int64_t begin, std::int64_t end) const {
    int const d = norm_dim(dim);
    if (begin < 0 || end < begin || end > shape_[d]) {
      fail(Errc::kInvalidArgument, "slice [" + std::to_string(begin) + ", " + std::to_string(end) +
                                       ") out of range for dim " + std::to_string(d) + " of " + shape_.str());
    }
    Tensor t = *this;
    t.data_ += static_cast<std::ptrdiff_t>(begin * strides_[d]) * static_cast<std::ptrdiff_t>(size_of(dtype_));
    t.shape_[d] = end - begin;
    return t;
  }

  /// Index i along dim, removing that dimension.
  Tensor select(int dim, std::int64_t i) const {
    int const d = norm_dim(dim);
    Tensor s = slice(d, i, i + 1);
    Shape sh, st;
    for (int k = 0; k < rank(); ++k) {
      if (k == d) continue;
      sh.push_back(s.shape_[k]);
      st.push_back(s.strides_[k]);
    }
    s.shape_ = sh;
    s.strides_ = st;
    return s;
  }

  /// Reorders dimensions: result dim k is this dim perm[k].
  Tensor permute(std::initializer_list<int> perm) const {
    if (static_cast<int>(perm.size()) != rank()) {
      fail(Errc::kInvalidArgument, "permute: " + std::to_string(perm.size()) + " dims for rank " +
                                       std::to_string(rank()));
    }
    Tensor t = *this;
    int k = 0;
    unsigned seen = 0;
    for (int p : perm) {
      int const d = norm_dim(p);
      if (seen & (1u << d)) fail(Errc::kInvalidArgument, "permute: dimension repeated");
      seen |= 1u << d;
      t.shape_[k] = shape_[d];
      t.strides_[k] = strides_[d];
      ++k;
    }
    return t;
  }

  Tensor unsqueeze(int dim) const {
    int const d = dim < 0 ? dim + rank() + 1 : dim;
    if (d < 0 || d > rank()) fail(Errc::kInvalidArgument, "unsqueeze: bad dim");
    Shape sh, st;
    for (int k = 0; k <= rank(); ++k) {
      if (k == d) {
        sh.push_back(1);
        st.push_back(k < rank() ? strides_[k] * shape_[k] : 1);
      }
      if (k < rank()) {
        sh.push_back(shape_[k]);
        st.push_back(strides_[k]);
      }
    }
    Tensor t = *this;
    t.shape_ = sh;
    t.strides_ = st;
    return t;
  }

  // ---- copies ---------------------------------------------------------------------------------------

  /// A contiguous copy (or *this when already contiguous).
  Tensor contiguous(B const& be) const {
    if (is_contiguous()) return *this;
    return clone(be);
  }

  /// A new contiguous tensor with the same values.
  Tensor clone(B const& be) const {
    Tensor out = empty(be, shape_, dtype_);
    copy_strided(be, out);
    return out;
  }

  /// Copies the values of *this into dst (same shape and dtype; dst may have any strides).
  void copy_to(B const& be, Tensor& dst) const {
    if (!(dst.shape_ == shape_) || dst.dtype_ != dtype_) {
      fail(Errc::kShapeMismatch, "copy_to: source " + shape_.str() + " " + std::string(dtype_name(dtype_)) +
                                     ", destination " + dst.shape_.str() + " " +
                                     std::string(dtype_name(dst.dtype_)));
    }
    copy_strided(be, dst);
  }

  /// Host copy of the values as float32 (any floating or integer dtype).
  std::vector<float> to_vector_f32(B const& be) const {
    Tensor c = contiguous(be);
    std::vector<std::byte> raw(c.nbytes());
    be.copy_to_host(raw.data(), c.data_, raw.size());
    std::vector<float> v(static_cast<std::size_t>(numel()));
    convert_to_f32(dtype_, raw.data(), v.data(), v.size());
    return v;
  }

  /// A copy converted to dtype (floating types through float32).
  Tensor to(B const& be, DType dtype) const {
    if (dtype == dtype_) return clone(be);
    std::vector<float> v = to_vector_f32(be);
    Tensor out = empty(be, shape_, dtype);
    std::vector<std::byte> raw(out.nbytes());
    convert_from_f32(v.data(), dtype, raw.data(), v.size());
    be.copy_from_host(out.data_, raw.data(), raw.size());
    return out;
  }

 private:
  int norm_dim(int dim) const {
    int const d = dim < 0 ? dim + rank() : dim;
    if (d < 0 || d >= rank()) {
      fail(Errc::kInvalidArgument, "dimension " + std::to_string(dim) + " out of range for " + shape_.str());
    }
    return d;
  }

  // Copies element by element along the innermost contiguous run; enough for the API edge, hot paths
  // use the backend's ops instead.
  void copy_strided(B const& be, Tensor& dst) const {
    std::size_t const es = size_of(dtype_);
    if (numel() == 0) return;
    if (is_contiguous() && dst.is_contiguous()) {
      be.copy(dst.data_, data_, nbytes());
      return;
    }
    int const r = rank();
    std::int64_t const inner = r ? shape_[r - 1] : 1;
    bool const inner_dense = r == 0 || (strides_[r - 1] == 1 && dst.strides_[r - 1] == 1);
    std::vector<std::int64_t> idx(static_cast<std::size_t>(r), 0);
    std::int64_t const outer = numel() / (r ? inner : 1);
    for (std::int64_t o = 0; o < outer; ++o) {
      std::int64_t so = 0, dof = 0;
      for (int k = 0; k < r - 1; ++k) {
        so += idx[static_cast<std::size_t>(k)] * strides_[k];
        dof += idx[static_cast<std::size_t>(k)] * dst.strides_[k];
      }
      if (inner_dense) {
        be.copy(dst.data_ + dof * static_cast<std::int64_t>(es), data_ + so * static_cast<std::int64_t>(es),
                static_cast<std::size_t>(inner) * es);
      } else {
        for (std::int64_t i = 0; i < inner; ++i) {
          be.copy(dst.data_ + (dof + i * dst.strides_[r - 1]) * static_cast<std::int64_t>(es),
                  data_ + (so + i * strides_[r - 1]) * static_cast<std::int64_t>(es), es);
        }
      }
      for (int k = r - 2; k >= 0; --k) {
        if (++idx[static_cast<std::size_t>(k)] < shape_[k]) break;
        idx[static_cast<std::size_t>(k)] = 0;
      }
    }
  }

  std::shared_ptr<std::byte> storage_;
  std::byte* data_ = nullptr;
  Shape shape_;
  Shape strides_;
  DType dtype_ = DType::kF32;
};

}  // namespace fd
