// Must not compile: a Scheduler for a tag nobody specialized. The first error is our static_assert.
#include "fd/schedulers/all.hpp"

struct MySchedulerTag {};

int main() {
  fd::Scheduler<MySchedulerTag> s;
  (void)s;
}
