// Must not compile: key steps with prop::None (the full UNet runs at every step, so keys would be ignored).
#include "fd/pipelines/sampler.hpp"

int main() {
  using Wrong = fd::Sampler<fd::keys::Paper50, fd::prop::None, fd::inject::None>;
  return sizeof(Wrong) > 0 ? 0 : 1;
}
