// What the store accepts, measured with the same S3 client Ferry uses: N threads doing
// PUTs (then GETs) of objects of one size. The baseline Ferry's upload drain and cold
// reads are compared with (bench/s3_vs_store.sh).
//   s3_baseline URL THREADS OBJECTS OBJECT_SIZE   -> "put_MBps get_MBps"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "ferry/object_store.h"
#include "ferry/strings.h"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: s3_baseline STORE_URL THREADS OBJECTS OBJECT_SIZE\n");
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
  if (threads < 1 || objects < 1 || !size) {
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
      pool.emplace_back([&] {
        std::vector<uint8_t> buf(body.size());
        for (int i; (i = next++) < objects;) {
          std::string key = "baseline/obj-" + std::to_string(i);
          bool ok = put ? store.value()->put(key, body).isOk()
                        : store.value()->get(key, 0, buf).isOk();
          if (!ok) ++failed;
        }
      });
    }
    for (auto& t : pool) t.join();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (failed) std::fprintf(stderr, "s3_baseline: %d requests failed\n", failed.load());
    return static_cast<double>(objects) * static_cast<double>(body.size()) / secs / 1e6;
  };
  double putRate = phase(true);
  double getRate = phase(false);
  for (int i = 0; i < objects; ++i) (void)store.value()->remove("baseline/obj-" + std::to_string(i));
  std::printf("%.1f %.1f\n", putRate, getRate);
  return 0;
}
