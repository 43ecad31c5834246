// Must not compile: a key policy without `bool is_key(int, int) const`.
#include "fd/pipelines/sampler.hpp"

struct NotAKeyPolicy {
  int keys[3] = {0, 5, 10};
};

int main() {
  using Wrong = fd::Sampler<NotAKeyPolicy, fd::prop::EncoderPropagation<fd::prop::Parallel>, fd::inject::None>;
  return sizeof(Wrong) > 0 ? 0 : 1;
}
