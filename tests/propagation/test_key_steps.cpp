#include <catch2/catch.hpp>

#include <vector>

#include "fd/propagation/key_steps.hpp"

using fd::keys::KeySchedule;

namespace {
std::vector<int> keys_of(KeySchedule const& s) {
  std::vector<int> k;
  for (auto const& g : s.groups()) k.push_back(g.front());
  return k;
}
std::vector<int> sizes_of(KeySchedule const& s) {
  std::vector<int> k;
  for (auto const& g : s.groups()) k.push_back(static_cast<int>(g.size()));
  return k;
}
}  // namespace

TEST_CASE("key schedules: the paper's 50ls set and its groups", "[propagation][keys]") {
  KeySchedule const ddim(fd::keys::Paper50{}, 50);
  CHECK(keys_of(ddim) == std::vector<int>{0, 1, 2, 3, 5, 10, 15, 25, 35});
  CHECK(sizes_of(ddim) == std::vector<int>{1, 1, 1, 2, 5, 5, 10, 10, 15});
  KeySchedule const pndm(fd::keys::Paper50{}, 51);  // PNDM-50 makes 51 calls; the last group has 16
  CHECK(sizes_of(pndm).back() == 16);
  KeySchedule const dpm(fd::keys::Paper50{}, 20);  // 25 and 35 never reached
  CHECK(sizes_of(dpm) == std::vector<int>{1, 1, 1, 2, 5, 5, 5});
  // Run-time spelling of the same set, and an explicit list.
  CHECK(keys_of(KeySchedule(fd::keys::Runtime::parse("50ls"), 50)) == keys_of(ddim));
  CHECK(keys_of(KeySchedule(fd::keys::Runtime::parse("0,1,2,3,5,10,15,25,35"), 50)) == keys_of(ddim));
  CHECK(keys_of(KeySchedule(fd::keys::Runtime::parse("50ls-personalized"), 50)).back() == 40);
}

TEST_CASE("key schedules: the reference presets", "[propagation][keys]") {
  // 'pro' (x4 upscaler, 75 steps): 9 + 8i is a perfect square.
  CHECK(keys_of(KeySchedule(fd::keys::Runtime::parse("pro"), 75)) ==
        std::vector<int>{0, 2, 5, 9, 14, 20, 27, 35, 44, 54, 65});
  // '100ls' (IF stage I): 0-9, every 5th, 86-99 -> 40 keys.
  CHECK(KeySchedule(fd::keys::Runtime::parse("100ls"), 100).num_keys() == 40);
  // '100ls' over 25 steps (if_demo): keys 0-9, 10, 15, 20.
  CHECK(keys_of(KeySchedule(fd::keys::Runtime::parse("100ls"), 25)) ==
        std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20});
  // 's2' over 25 (IF stage II demo): only 21 and 23 are not key.
  KeySchedule const s2(fd::keys::Runtime::parse("s2"), 25);
  CHECK(s2.num_keys() == 23);
  CHECK_FALSE(s2.is_key(21));
  CHECK_FALSE(s2.is_key(23));
  // Uniform 1:4 (community models).
  CHECK(sizes_of(KeySchedule(fd::keys::Every<4>{}, 50)) == std::vector<int>{4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 2});
  CHECK(keys_of(KeySchedule(fd::keys::Runtime::parse("every:4"), 50)) == keys_of(KeySchedule(fd::keys::Every<4>{}, 50)));
  CHECK(KeySchedule(fd::keys::All{}, 7).num_keys() == 7);
  // Index 0 is key whatever the policy says.
  struct NeverKey {
    bool is_key(int, int) const { return false; }
  };
  CHECK(KeySchedule(NeverKey{}, 5).num_keys() == 1);
}

TEST_CASE("key schedules: bad run-time spellings name the text", "[propagation][keys][errors]") {
  for (char const* bad : {"51ls", "every:0", "every:x", "1,,2", "-1,3", ""}) {
    try {
      fd::keys::Runtime::parse(bad);
      FAIL("accepted " << bad);
    } catch (fd::error const& e) {
      CHECK(e.code() == fd::Errc::kConfig);
      CHECK_THAT(std::string(e.what()), Catch::Contains(std::string("'") + bad + "'"));
    }
  }
}
