#include "admin_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "engine.h"
#include "ferry/log.h"
#include "ferry/strings.h"

namespace ferry {
namespace {

using nlohmann::json;

json volumeJson(const VolumeStats& v) {
  json out{{"name", v.name},
           {"size", v.size},
           {"chunk_size", v.chunkSize},
           {"chunks", v.chunks},
           {"cached_chunks", v.cachedChunks},
           {"dirty_chunks", v.dirtyChunks},
           {"remote_chunks", v.remoteChunks},
           {"cached_bytes", v.cachedBytes},
           {"dirty_bytes", v.dirtyBytes},
           {"uploaded_bytes", v.uploadedBytes},
           {"downloaded_bytes", v.downloadedBytes},
           {"uploads", v.uploads},
           {"upload_errors", v.uploadErrors},
           {"read_hits", v.readHits},
           {"read_misses", v.readMisses},
           {"range_reads", v.rangeReads},
           {"journal_reads", v.journalReads},
           {"zero_reads", v.zeroReads},
           {"read_ahead_fetches", v.readAheadFetches},
           {"read_ahead_hits", v.readAheadHits},
           {"journaled_chunks", v.journaledChunks},
           {"journal_segments", v.journalSegments},
           {"journal_only_chunks", v.journalOnlyChunks},
           {"cache_only_chunks", v.cacheOnlyChunks},
           {"unverified_chunks", v.unverifiedChunks},
           {"verified_chunks", v.verifiedChunks},
           {"verify_failures", v.verifyFailures},
           {"patched_chunks", v.patchedChunks},
           {"journal_writes", v.journalWrites},
           {"journal_bytes", v.journalBytes},
           {"hit_ratio", v.readHits + v.readMisses == 0
                             ? 1.0
                             : static_cast<double>(v.readHits) / static_cast<double>(v.readHits + v.readMisses)},
           {"upload_queue", v.queued},
           {"fenced", v.fenced},
           {"last_error", v.lastError}};
  // Made from a snapshot and still reading some chunks from it.
  if (!v.source.empty()) {
    out["hydration"] = {{"source", v.source}, {"chunks_left", v.hydrationLeft}, {"hydrated_bytes", v.hydratedBytes}};
  }
  return out;
}

// A snapshot (or recovery point) as the snapshot ops answer it.
json manifestJson(const std::string& name, const SnapshotManifest& m) {
  return json{{"ok", true},
              {"name", name},
              {"snapshot", m.id},
              {"size", m.size},
              {"chunk_size", m.chunkSize},
              {"created", m.createdUnix},
              {"chunks", m.chunks.size()}};
}

json fail(const Status& s) {
  return json{{"ok", false}, {"error", s.toString()}, {"errno", s.toErrno()}};
}

Result<uint64_t> sizeArg(const json& req, const char* key, uint64_t dflt) {
  if (!req.contains(key)) return dflt;
  const json& v = req[key];
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_string()) return parseSize(v.get<std::string>());
  return Status::invalid(std::string("'") + key + "' must be a number or a size string like \"10G\"");
}

json dispatch(Engine& engine, const json& req) {
  if (!req.is_object() || !req.contains("op") || !req["op"].is_string()) {
    return fail(Status::invalid("request must be a JSON object with a string \"op\""));
  }
  std::string op = req["op"];
  std::string name = req.value("name", std::string());
  if (op == "list") {
    json vols = json::array();
    for (auto& v : engine.volumes())
      vols.push_back({{"name", v->name()}, {"size", v->size()}, {"chunk_size", v->chunkSize()}});
    return json{{"ok", true}, {"volumes", vols}};
  }
  if (op == "purge-store") {
    // A lost gateway's store: {"store": URL}. Not ok while any volume was refused (the
    // others are gone; a rerun finishes the rest).
    if (!req.contains("store") || !req["store"].is_string())
      return fail(Status::invalid("purge-store needs \"store\": URL"));
    auto r = engine.purgeStore(req["store"].get<std::string>());
    if (!r) return fail(r.status());
    json deleted = json::array(), refused = json::array();
    std::vector<std::string> reasons;
    for (const auto& [volume, objects] : r->deleted) deleted.push_back({{"name", volume}, {"objects", objects}});
    for (const auto& [volume, why] : r->refused) {
      refused.push_back({{"name", volume}, {"error", why.toString()}});
      reasons.push_back(why.toString());
    }
    json out{{"ok", reasons.empty()}, {"deleted", deleted}, {"refused", refused}};
    if (!reasons.empty()) {
      out["error"] = "refused " + std::to_string(reasons.size()) + " volume(s): " + join(reasons, "; ");
      out["errno"] = EBUSY;
    }
    return out;
  }
  if (op == "create") {
    auto size = sizeArg(req, "size", 0);
    if (!size) return fail(size.status());
    auto chunk = sizeArg(req, "chunk_size", 0);
    if (!chunk) return fail(chunk.status());
    if (Status s = checkVolumeName(name); !s) return fail(s);
    CreateSpec spec{name, size.value(), chunk.value()};
    if (req.contains("source")) {
      // {"volume": V, "snapshot": ID}: made from that snapshot, hydrated in the background.
      const json& src = req["source"];
      if (!src.is_object() || !src.contains("volume") || !src["volume"].is_string() || !src.contains("snapshot") ||
          !src["snapshot"].is_string()) {
        return fail(Status::invalid("source must be {\"volume\": NAME, \"snapshot\": ID[, \"store\": URL]}"));
      }
      spec.sourceVolume = src["volume"].get<std::string>();
      spec.sourceSnapshot = src["snapshot"].get<std::string>();
      if (src.contains("store") && !src["store"].is_string())
        return fail(Status::invalid("source.store must be a URL"));
      spec.sourceStore = src.value("store", std::string());
    }
    auto v = engine.createVolume(spec);
    if (!v) return fail(v.status());
    json out{{"ok", true}, {"volume", volumeJson(v.value()->stats())}};
    // What it was made from: for "recovery-point", the point taken, and when.
    if (v.value()->hydrating()) {
      out["source"] = {{"volume", v.value()->sourceVolume()},
                       {"snapshot", v.value()->sourceSnapshot()},
                       {"created", v.value()->sourceCreatedUnix()}};
    }
    return out;
  }
  if (op == "delete") {
    if (Status s = engine.deleteVolume(name, req.value("force", false)); !s) return fail(s);
    return json{{"ok", true}};
  }
  if (op == "stats") {
    EngineStats st = engine.stats();
    json vols = json::array();
    for (const auto& v : st.volumes) {
      if (!name.empty() && v.name != name) continue;
      json one = volumeJson(v);
      Engine::CollectStats c = engine.collectProgress(v.name);
      one["collection"] = {{"listed", c.listed}, {"deleted", c.deleted}, {"kept", c.kept}, {"errors", c.errors}};
      vols.push_back(one);
    }
    if (!name.empty() && vols.empty()) return fail(Status::notFound("no volume named " + name));
    return json{{"ok", true},
                {"cache_size", st.cacheLimit},
                {"cached_bytes", st.cachedBytes},
                {"upload_buffer", st.uploadBuffer},
                {"dirty_bytes", st.dirtyBytes},
                {"journaled_bytes", st.journaledBytes},
                {"upload_queue", st.uploadQueue},
                {"uploads_active", st.uploadsActive},
                {"uploads_held_back", st.uploadsHeldBack},
                {"uploads_held_back_seconds", static_cast<double>(st.uploadsHeldBackMs) / 1e3},
                {"upload_limit", st.bandwidth.upload},
                {"download_limit", st.bandwidth.download},
                {"upload_throttled_seconds", static_cast<double>(st.uploadWaitedMicros) / 1e6},
                {"download_throttled_seconds", static_cast<double>(st.downloadWaitedMicros) / 1e6},
                {"volumes", vols}};
  }
  if (op == "flush") {
    for (auto& v : engine.volumes()) {
      if (!name.empty() && v->name() != name) continue;
      if (Status s = v->flush(); !s) return fail(s);
    }
    return json{{"ok", true}};
  }
  if (op == "checkpoint") {
    int timeout = req.value("timeout", 300);
    auto map = engine.checkpoint(name, std::chrono::seconds(timeout));
    if (!map) return fail(map.status());
    auto v = engine.find(name);
    json chunks = json::array();
    for (auto& [idx, gen] : map.value()) chunks.push_back(json::array({idx, gen}));
    return json{{"ok", true},
                {"name", name},
                {"size", v ? v->size() : 0},
                {"chunk_size", v ? v->chunkSize() : 0},
                {"chunks", chunks}};
  }
  if (op == "snapshot") {
    int timeout = req.value("timeout", 300);
    std::string id = req.value("snapshot", std::string());
    if (id.rfind(Engine::kRecoveryPrefix, 0) == 0 || id == Engine::kLatestRecoveryPoint) {
      return fail(Status::invalid("snapshot ids starting with '" + std::string(Engine::kRecoveryPrefix) + "' and '" +
                                  Engine::kLatestRecoveryPoint + "' are the engine's recovery points"));
    }
    Volume::FreezeStats freeze;
    auto m = engine.snapshot(name, id, std::chrono::seconds(timeout), &freeze);
    if (!m) return fail(m.status());
    json out = manifestJson(name, m.value());
    out["freeze"] = {{"pause_us", freeze.pauseMicros}, {"frozen", freeze.frozen}, {"copied", freeze.copied}};
    return out;
  }
  if (op == "recovery-point") {
    // Takes one now (the engine takes them on its own every recovery-interval).
    auto m = engine.takeRecoveryPoint(name);
    if (!m) return fail(m.status());
    return manifestJson(name, m.value());
  }
  if (op == "snapshot-delete") {
    if (Status s = engine.deleteSnapshot(name, req.value("snapshot", std::string())); !s) return fail(s);
    return json{{"ok", true}};
  }
  if (op == "collect") {
    auto st = engine.collect(name);
    if (!st) return fail(st.status());
    return json{{"ok", true},
                {"name", name},
                {"listed", st.value().listed},
                {"deleted", st.value().deleted},
                {"kept", st.value().kept},
                {"errors", st.value().errors}};
  }
  if (op == "snapshots") {
    auto ids = engine.listSnapshots(name);
    if (!ids) return fail(ids.status());
    auto points = engine.listRecoveryPoints(name);
    if (!points) return fail(points.status());
    return json{{"ok", true}, {"name", name}, {"snapshots", ids.value()}, {"recovery_points", points.value()}};
  }
  if (op == "limits") {
    // Sets what it is given ("upload", "download": bytes per second, 0 = none) and
    // answers the limits now in force.
    BandwidthLimits now = engine.bandwidth().get();
    auto up = sizeArg(req, "upload", now.upload);
    if (!up) return fail(up.status().withContext("upload"));
    auto down = sizeArg(req, "download", now.download);
    if (!down) return fail(down.status().withContext("download"));
    if (req.contains("upload") || req.contains("download")) engine.bandwidth().set({up.value(), down.value()});
    return json{{"ok", true}, {"upload", up.value()}, {"download", down.value()}};
  }
  return fail(Status::invalid("unknown op '" + op +
                              "' (list, create, delete, stats, flush, checkpoint, snapshot, snapshot-delete, "
                              "snapshots, recovery-point, collect, limits, purge-store)"));
}

}  // namespace

std::string handleAdminRequest(Engine& engine, const std::string& line) {
  json reply;
  try {
    reply = dispatch(engine, json::parse(line));
  } catch (const json::exception& e) {
    reply = fail(Status::invalid(std::string("request is not valid JSON: ") + e.what()));
  } catch (const std::exception& e) {
    reply = fail(Status::ioError(e.what()));
  }
  return reply.dump() + "\n";
}

Status AdminServer::start() {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.size() >= sizeof addr.sun_path) return Status::invalid("admin socket path too long: " + path_);
  std::strcpy(addr.sun_path, path_.c_str());
  ::unlink(path_.c_str());
  listen_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listen_.valid()) return errnoStatus("admin socket", errno);
  mode_t old = ::umask(0077);
  int rc = ::bind(listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (rc != 0) return errnoStatus("bind admin socket " + path_, errno);
  if (::listen(listen_.get(), 16) != 0) return errnoStatus("listen admin socket " + path_, errno);
  if (::pipe2(wakePipe_, O_CLOEXEC) != 0) return errnoStatus("pipe", errno);
  acceptor_ = std::thread([this] { acceptLoop(); });
  return Status::ok();
}

void AdminServer::stop() {
  if (stopping_.exchange(true)) return;
  if (wakePipe_[1] >= 0) {
    char c = 1;
    (void)!::write(wakePipe_[1], &c, 1);
  }
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> clients;
  {
    std::lock_guard lock(clientsMu_);
    clients.swap(clients_);
  }
  for (auto& t : clients) t.join();
  for (int& fd : wakePipe_) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  ::unlink(path_.c_str());
}

void AdminServer::acceptLoop() {
  while (!stopping_) {
    pollfd fds[2] = {{listen_.get(), POLLIN, 0}, {wakePipe_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      logError(std::string("admin socket poll: ") + std::strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    int fd = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::lock_guard lock(clientsMu_);
    clients_.emplace_back([this, fd] { serve(fd); });
  }
}

void AdminServer::serve(int rawFd) {
  UniqueFd fd(rawFd);
  std::string buf;
  char chunk[4096];
  while (!stopping_) {
    pollfd fds[2] = {{fd.get(), POLLIN, 0}, {wakePipe_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if (fds[1].revents) return;
    ssize_t n = ::read(fd.get(), chunk, sizeof chunk);
    if (n <= 0) return;
    buf.append(chunk, static_cast<size_t>(n));
    if (buf.size() > (1 << 20)) return;  // no request is this large
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      std::string reply = handleAdminRequest(engine_, buf.substr(0, nl));
      buf.erase(0, nl + 1);
      const char* p = reply.data();
      size_t left = reply.size();
      while (left > 0) {
        ssize_t w = ::send(fd.get(), p, left, MSG_NOSIGNAL);
        if (w <= 0) return;
        p += w;
        left -= static_cast<size_t>(w);
      }
    }
  }
}

}  // namespace ferry
