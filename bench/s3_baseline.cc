// What the store accepts, measured with the same S3 client Ferry uses: N threads doing
// PUTs (then GETs) of objects of one size. The baseline Ferry's upload drain and cold
// reads are compared with (bench/s3_vs_store.sh).
//   s3_baseline URL THREADS OBJECTS OBJECT_SIZE [RANGE_SIZE GETS]   -> "put_MBps get_MBps"
// With RANGE_SIZE and GETS, the GET phase is GETS range reads of RANGE_SIZE bytes, each
// at a random RANGE_SIZE-aligned offset of a random object (what cold random reads of
// a volume ask of the store), and get_MBps counts the bytes of those ranges.

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ferry/object_store.h"
#include "ferry/strings.h"

int main(int argc, char** argv) {
  if (argc != 5 && argc != 7) {
    std::fprintf(stderr, "usage: s3_baseline STORE_URL THREADS OBJECTS OBJECT_SIZE [RANGE_SIZE GETS]\n");
    return 2;
  }
  auto store = ferry::openStore(argv[1]);
  if (!store) {
    std::fprintf(stderr, "s3_baseline: %s\n", store.status().toString().c_str());
    return 1;
  }
  int threads = std::atoi(argv[2]);
  int objects = std::atoi(argv[3]);
  auto size = ferry::parseSize(argv[4]);
  uint64_t range = 0;
  int gets = objects;
  if (argc == 7) {
    auto r = ferry::parseSize(argv[5]);
    range = r ? r.value() : 0;
    gets = std::atoi(argv[6]);
  }
  if (threads < 1 || objects < 1 || !size || gets < 1 || (argc == 7 && (range == 0 || range > size.value()))) {
    std::fprintf(stderr, "s3_baseline: bad arguments\n");
    return 2;
  }
  std::vector<uint8_t> body(size.value());
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<uint8_t>(i * 2654435761u >> 13);

  auto phase = [&](bool put) {
    std::atomic<int> next{0}, failed{0};
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        std::vector<uint8_t> buf(range > 0 && !put ? range : body.size());
        std::mt19937_64 rng(static_cast<uint64_t>(t) * 7919 + 1);
        for (int i; (i = next++) < (put ? objects : gets);) {
          bool ok;
          if (put) {
            ok = store.value()->put("baseline/obj-" + std::to_string(i), body).isOk();
          } else if (range > 0) {
            uint64_t at = rng() % (body.size() / range) * range;
            ok = store.value()->get("baseline/obj-" + std::to_string(rng() % objects), at, buf).isOk();
          } else {
            ok = store.value()->get("baseline/obj-" + std::to_string(i), 0, buf).isOk();
          }
          if (!ok) ++failed;
        }
      });
    }
    for (auto& t : pool) t.join();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (failed) std::fprintf(stderr, "s3_baseline: %d requests failed\n", failed.load());
    double requests = put ? objects : gets;
    double bytes = put || range == 0 ? static_cast<double>(body.size()) : static_cast<double>(range);
    return requests * bytes / secs / 1e6;
  };
  double putRate = phase(true);
  double getRate = phase(false);
  for (int i = 0; i < objects; ++i) (void)store.value()->remove("baseline/obj-" + std::to_string(i));
  std::printf("%.1f %.1f\n", putRate, getRate);
  return 0;
}
