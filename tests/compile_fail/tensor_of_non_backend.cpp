// Must not compile: a tensor over a type that is not a backend. The first error must be ours.
#include "fd/core/tensor.hpp"

struct NotABackend {};

int main() {
  fd::Tensor<NotABackend> t;
  return static_cast<int>(t.numel());
}
