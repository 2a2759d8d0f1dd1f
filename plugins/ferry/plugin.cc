// nbdkit-ferry-plugin: serves every volume of the engine as an NBD export.
// Each callback is a trampoline into the engine behind a firewall: no C++ exception
// crosses into nbdkit, every failure becomes nbdkit_error + an errno.

#define NBDKIT_API_VERSION 2
#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL
#include <nbdkit-plugin.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "admin_server.h"
#include "engine.h"
#include "ferry/log.h"
#include "lease.h"

namespace {

using ferry::Status;

ferry::EngineOptions gOptions;
std::string gAdminSocket;
// Owned by hand, not by static destructors: when nbdkit exits on an error after
// get_ready (say its socket is taken) it may skip .cleanup, and a static destructor
// running at exit would talk to the store after libcurl has gone. Freed in .cleanup
// or .unload; otherwise left to the exiting process.
ferry::Engine* gEngine = nullptr;
ferry::AdminServer* gAdmin = nullptr;

struct Handle {
  std::shared_ptr<ferry::Volume> volume;
  bool readonly;
};

int fail(const Status& s) {
  nbdkit_error("%s", s.toString().c_str());
  nbdkit_set_error(s.toErrno());
  return -1;
}

template <typename F>
int guarded(const char* what, F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    nbdkit_error("ferry %s: %s", what, e.what());
    nbdkit_set_error(EIO);
  } catch (...) {
    nbdkit_error("ferry %s: unknown exception", what);
    nbdkit_set_error(EIO);
  }
  return -1;
}

int parseSizeParam(const char* key, const char* value, uint64_t* out) {
  int64_t r = nbdkit_parse_size(value);
  if (r < 0) return -1;
  if (r == 0) {
    nbdkit_error("%s must be larger than 0", key);
    return -1;
  }
  *out = static_cast<uint64_t>(r);
  return 0;
}

int parseIntParam(const char* key, const char* value, int lo, int hi, int* out) {
  int v;
  if (nbdkit_parse_int(key, value, &v) == -1) return -1;
  if (v < lo || v > hi) {
    nbdkit_error("%s must be between %d and %d", key, lo, hi);
    return -1;
  }
  *out = v;
  return 0;
}

int ferryConfig(const char* key, const char* value) {
  return guarded("config", [&]() -> int {
    std::string k = key;
    if (k == "state") {
      char* abs = nbdkit_absolute_path(value);
      if (!abs) return -1;
      gOptions.stateDir = abs;
      std::free(abs);
    } else if (k == "store") {
      gOptions.storeUrl = value;
    } else if (k == "create") {
      auto spec = ferry::parseCreateSpec(value);
      if (!spec) return fail(spec.status());
      gOptions.creates.push_back(spec.value());
    } else if (k == "cache-size") {
      return parseSizeParam(key, value, &gOptions.cacheSize);
    } else if (k == "upload-buffer") {
      return parseSizeParam(key, value, &gOptions.uploadBuffer);
    } else if (k == "read-ahead") {
      int64_t r = nbdkit_parse_size(value);  // 0 switches read-ahead off
      if (r < 0) return -1;
      if (r > (int64_t{1} << 30)) {
        nbdkit_error("read-ahead must be at most 1G, got %s", value);
        return -1;
      }
      gOptions.readAheadBytes = static_cast<uint64_t>(r);
    } else if (k == "read-ahead-threads") {
      int n;
      if (parseIntParam(key, value, 1, 64, &n) == -1) return -1;
      gOptions.readAheadThreads = static_cast<size_t>(n);
    } else if (k == "recovery-interval") {
      int n;
      if (parseIntParam(key, value, 0, 86400, &n) == -1) return -1;
      gOptions.recoveryIntervalSeconds = n;
    } else if (k == "collect-interval") {
      int n;
      if (parseIntParam(key, value, 0, 30 * 86400, &n) == -1) return -1;
      gOptions.collectIntervalSeconds = n;
    } else if (k == "hydrate-threads") {
      int n;
      if (parseIntParam(key, value, 1, 64, &n) == -1) return -1;
      gOptions.hydrateThreads = static_cast<size_t>(n);
    } else if (k == "upload-limit" || k == "download-limit") {
      int64_t r = nbdkit_parse_size(value);  // bytes per second; 0 = unlimited
      if (r < 0) return -1;
      (k == "upload-limit" ? gOptions.bandwidth.upload : gOptions.bandwidth.download) = static_cast<uint64_t>(r);
    } else if (k == "upload-threads") {
      int n;
      if (parseIntParam(key, value, 1, 256, &n) == -1) return -1;
      gOptions.uploadThreads = static_cast<size_t>(n);
    } else if (k == "lease-ttl") {
      return parseIntParam(key, value, 3, ferry::LeaseKeeper::kMaxTtlSeconds, &gOptions.leaseTtlSeconds);
    } else if (k == "shutdown-timeout") {
      return parseIntParam(key, value, 0, 86400, &gOptions.shutdownTimeoutSeconds);
    } else if (k == "commit-interval") {
      return parseIntParam(key, value, 10, 60000, &gOptions.commitIntervalMs);
    } else if (k == "upload-delay") {
      return parseIntParam(key, value, 0, 3600000, &gOptions.uploadDelayMs);
    } else if (k == "upload-max-age") {
      return parseIntParam(key, value, 0, 86400000, &gOptions.uploadMaxAgeMs);
    } else if (k == "journal") {
      int b = nbdkit_parse_bool(value);
      if (b == -1) return -1;
      gOptions.journal = b;
    } else if (k == "cache-streams") {
      int b = nbdkit_parse_bool(value);
      if (b == -1) return -1;
      gOptions.cacheStreams = b;
    } else if (k == "takeover") {
      int b = nbdkit_parse_bool(value);
      if (b == -1) return -1;
      gOptions.takeover = b;
    } else if (k == "admin-socket") {
      char* abs = nbdkit_absolute_path(value);
      if (!abs) return -1;
      gAdminSocket = abs;
      std::free(abs);
    } else {
      nbdkit_error("unknown parameter '%s' (see nbdkit ferry --help)", key);
      return -1;
    }
    return 0;
  });
}

int ferryConfigComplete() {
  if (gOptions.stateDir.empty() || gOptions.storeUrl.empty()) {
    nbdkit_error("state=DIR and store=URL are required, e.g. state=/var/lib/ferry store=file:///srv/ferry-store");
    return -1;
  }
  return 0;
}

int ferryGetReady() {
  return guarded("start", [&]() -> int {
    ferry::setLogSink([](ferry::LogLevel level, const std::string& m) {
      if (level == ferry::LogLevel::kError) nbdkit_error("%s", m.c_str());
      else nbdkit_debug("%s", m.c_str());
    });
    auto e = ferry::Engine::open(gOptions);
    if (!e) return fail(e.status());
    gEngine = std::move(e).value().release();
    return 0;
  });
}

int ferryAfterFork() {
  return guarded("start", [&]() -> int {
    if (Status s = gEngine->start(); !s) return fail(s);
    gAdmin = new ferry::AdminServer(*gEngine,
                                    gAdminSocket.empty() ? gEngine->stateDir() + "/admin.sock" : gAdminSocket);
    if (Status s = gAdmin->start(); !s) return fail(s);
    return 0;
  });
}

void ferryCleanup() {
  try {
    if (!gEngine) return;
    if (gAdmin) gAdmin->stop();
    gEngine->shutdown();
    delete gAdmin;
    delete gEngine;
    gAdmin = nullptr;
    gEngine = nullptr;
    nbdkit_debug("ferry: stopped cleanly");
  } catch (const std::exception& e) {
    nbdkit_error("ferry shutdown: %s", e.what());
  }
}

int ferryListExports(int, int, struct nbdkit_exports* exports) {
  return guarded("list_exports", [&]() -> int {
    for (auto& v : gEngine->volumes()) {
      std::string desc = "ferry volume, " + std::to_string(v->size()) + " bytes";
      if (nbdkit_add_export(exports, v->name().c_str(), desc.c_str()) == -1) return -1;
    }
    return 0;
  });
}

const char* ferryDefaultExport(int, int) {
  try {
    auto vols = gEngine->volumes();
    if (vols.empty()) return nullptr;
    return nbdkit_strdup_intern(vols.front()->name().c_str());
  } catch (...) {
    return nullptr;
  }
}

void* ferryOpen(int readonly) {
  Handle* h = nullptr;
  guarded("open", [&]() -> int {
    const char* raw = nbdkit_export_name();
    std::string name = raw ? raw : "";
    auto v = gEngine->find(name);
    if (!v) {
      nbdkit_error("no volume named '%s' (nbdinfo --list shows the volumes)", name.c_str());
      nbdkit_set_error(ENOENT);
      return -1;
    }
    h = new Handle{v, readonly != 0};
    gEngine->connectionOpened(name);
    return 0;
  });
  return h;
}

void ferryClose(void* handle) {
  auto* h = static_cast<Handle*>(handle);
  try {
    gEngine->connectionClosed(h->volume->name());
  } catch (...) {
  }
  delete h;
}

int64_t ferryGetSize(void* handle) { return static_cast<int64_t>(static_cast<Handle*>(handle)->volume->size()); }

int ferryCanWrite(void* handle) { return static_cast<Handle*>(handle)->volume->fenced() ? 0 : 1; }
int ferryOne(void*) { return 1; }
int ferryCanFua(void*) { return NBDKIT_FUA_NATIVE; }
int ferryCanCache(void*) { return NBDKIT_CACHE_NONE; }

int ferryBlockSize(void*, uint32_t* minimum, uint32_t* preferred, uint32_t* maximum) {
  *minimum = 1;
  *preferred = 4096;
  *maximum = 0xffffffff;
  return 0;
}

int ferryPread(void* handle, void* buf, uint32_t count, uint64_t offset, uint32_t) {
  return guarded("pread", [&]() -> int {
    Status s = static_cast<Handle*>(handle)->volume->read(offset, std::span(static_cast<uint8_t*>(buf), count));
    return s ? 0 : fail(s);
  });
}

int ferryPwrite(void* handle, const void* buf, uint32_t count, uint64_t offset, uint32_t flags) {
  return guarded("pwrite", [&]() -> int {
    Status s = static_cast<Handle*>(handle)->volume->write(
        offset, std::span(static_cast<const uint8_t*>(buf), count), (flags & NBDKIT_FLAG_FUA) != 0);
    return s ? 0 : fail(s);
  });
}

int ferryZero(void* handle, uint32_t count, uint64_t offset, uint32_t flags) {
  return guarded("zero", [&]() -> int {
    Status s = static_cast<Handle*>(handle)->volume->zero(offset, count, (flags & NBDKIT_FLAG_FUA) != 0);
    return s ? 0 : fail(s);
  });
}

int ferryTrim(void* handle, uint32_t count, uint64_t offset, uint32_t flags) {
  // Trimmed ranges read back as zeros: the same as zero, which frees whole chunks.
  return ferryZero(handle, count, offset, flags);
}

int ferryFlush(void* handle, uint32_t) {
  return guarded("flush", [&]() -> int {
    Status s = static_cast<Handle*>(handle)->volume->flush();
    return s ? 0 : fail(s);
  });
}

nbdkit_plugin makePlugin() {
  nbdkit_plugin p{};
  p.name = "ferry";
  p.longname = "Ferry block-volume gateway";
  p.version = "0.1.0";
  p.description = "Serves Ferry volumes: a local disk cache in front of an object store";
  p.config = ferryConfig;
  p.config_complete = ferryConfigComplete;
  p.config_help =
      "state=DIR                 (required) gateway state: metadata DB and cache files\n"
      "store=URL                 (required) file:///path or s3://bucket/prefix?endpoint=URL&region=R\n"
      "create=NAME:SIZE[:CHUNK]  create volume NAME if absent (repeatable); chunk default 1M\n"
      "cache-size=SIZE           cache disk budget (default 1G)\n"
      "upload-buffer=SIZE        changes not in the store before writes wait (default cache-size/2)\n"
      "upload-threads=N          parallel uploads (default 8)\n"
      "lease-ttl=SECS            volume lease lifetime in the store, 3-120 (default 30)\n"
      "shutdown-timeout=SECS     how long a clean stop uploads dirty chunks (default 60)\n"
      "upload-delay=MS           upload a dirty chunk once idle this long (default 3000)\n"
      "upload-max-age=MS         … or this long after it became dirty (default 30000)\n"
      "journal=false             whole-chunk uploads only, no journal of changed pages (default true)\n"
      "cache-streams=true        also cache what sequential scans of cold data fetch\n"
      "read-ahead=SIZE           fetched ahead of a sequential cold reader (default 8M; 0 = off)\n"
      "read-ahead-threads=N      parallel read-ahead fetches (default 4)\n"
      "hydrate-threads=N         parallel copies into volumes made from a snapshot (default 4)\n"
      "recovery-interval=SECS    a recovery point of each changed volume this often (default 60; 0 = off)\n"
      "collect-interval=SECS     collect each volume's unreferenced chunk objects this often (default 3600; 0 = off)\n"
      "upload-limit=SIZE         chunk uploads at most SIZE bytes per second (default 0: none)\n"
      "download-limit=SIZE       chunk downloads at most SIZE bytes per second (default 0: none)\n"
      "takeover=true             take volumes over from a gateway that still holds them\n"
      "admin-socket=PATH         admin interface (default STATE/admin.sock)";
  p.magic_config_key = nullptr;
  p.get_ready = ferryGetReady;
  p.after_fork = ferryAfterFork;
  p.cleanup = ferryCleanup;
  p.unload = ferryCleanup;
  p.list_exports = ferryListExports;
  p.default_export = ferryDefaultExport;
  p.open = ferryOpen;
  p.close = ferryClose;
  p.get_size = ferryGetSize;
  p.block_size = ferryBlockSize;
  p.can_write = ferryCanWrite;
  p.can_flush = ferryOne;
  p.can_trim = ferryOne;
  p.can_zero = ferryOne;
  p.can_fast_zero = ferryOne;
  p.can_fua = ferryCanFua;
  p.can_multi_conn = ferryOne;
  p.can_cache = ferryCanCache;
  p.pread = ferryPread;
  p.pwrite = ferryPwrite;
  p.zero = ferryZero;
  p.trim = ferryTrim;
  p.flush = ferryFlush;
  return p;
}

nbdkit_plugin gPlugin = makePlugin();

}  // namespace

NBDKIT_REGISTER_PLUGIN(gPlugin)
