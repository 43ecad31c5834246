// Must not compile: a model instantiated over a type that is not a backend.
#include "fd/models/unet/unet.hpp"

struct NotABackend {
  using fd_backend = void;  // claims to be one, but lacks memory_space and the allocation members
};

int main() {
  return sizeof(fd::models::UNet2DCondition<NotABackend>) > 0 ? 0 : 1;
}
