#include "api_gateway.h"

#include <climits>
#include <ctime>
#include <optional>
#include <vector>

#include "api_util.h"
#include "ferry/bandwidth_schedule.h"
#include "ferry/strings.h"
#include "ferry/timezone.h"
#include "operations.h"

namespace ferry::control {

using json = nlohmann::json;
using Poco::Net::HTTPResponse;

json requestJson(const RequestInfo& r) {
  // CHAP secrets go to the gateway; the request history shows that they were set.
  json args = r.args;
  if (args.is_object()) {
    for (const char* secret : {"initiator_secret", "target_secret"}) {
      auto it = args.find(secret);
      if (it != args.end() && it->is_string() && !it->get<std::string>().empty()) *it = "(set)";
    }
  }
  return {{"id", r.id},
          {"gateway_id", r.gatewayId},
          {"op", r.op},
          {"args", args},
          {"state", r.state},
          {"result", r.result},
          {"error", r.error},
          {"attempts", r.attempts},
          {"delivered_by", r.deliveredBy},
          {"created_at_ms", r.createdAt},
          {"delivered_at_ms", r.deliveredAt},
          {"finished_at_ms", r.finishedAt}};
}

namespace {

json volumeJson(const VolumeInfo& v) {
  json out = {{"name", v.name},
              {"gateway_id", v.gatewayId},
              {"size", v.size},
              {"chunk_size", v.chunkSize},
              {"state", v.state},
              {"request_id", v.requestId},
              {"created_at_ms", v.createdAt}};
  if (!v.source.is_null()) out["source"] = v.source;
  return out;
}

json snapshotJson(const SnapshotInfo& s) {
  return {{"id", s.id},
          {"gateway_id", s.gatewayId},
          {"volume", s.volume},
          {"state", s.state},
          {"request_id", s.requestId},
          {"created_at_ms", s.createdAt},
          {"completed_at_ms", s.completedAt},
          {"detail", s.detail},
          {"scheduled", s.scheduled}};
}

// The setting, and what is in force now in the gateway's time zone.
json bandwidthJson(const BandwidthInfo& b) {
  json out = b.limits;
  out["revision"] = b.revision;
  out["timezone"] = b.timezone;
  auto schedule = BandwidthSchedule::fromJson(b.limits);
  auto zone = TimeZone::load(b.timezone);
  if (schedule && zone) {
    int64_t t = static_cast<int64_t>(::time(nullptr));
    BandwidthRates r = schedule.value().atInstant(t, zone.value().offsetAt(t));
    out["in_force"] = {{"upload_rate", r.upload}, {"download_rate", r.download}};
  }
  return out;
}

json scheduleJson(const SnapshotSchedule& s) {
  return {{"gateway_id", s.gatewayId},
          {"volume", s.volume},
          {"every_hours", s.everyHours},
          {"keep", s.keep},
          {"next_at", s.nextAt}};
}

// "/a/b/c" → {"a", "b", "c"}
std::vector<std::string> segments(const std::string& path) {
  std::vector<std::string> out;
  size_t at = 1;
  while (at <= path.size()) {
    size_t next = path.find('/', at);
    if (next == std::string::npos) next = path.size();
    out.push_back(path.substr(at, next - at));
    at = next + 1;
  }
  return out;
}

// A size in bytes: an integer, or a string as nbdkit parses sizes ("10G").
int64_t sizeField(const json& in, const char* key, int64_t fallback) {
  auto it = in.find(key);
  if (it == in.end() || it->is_null()) {
    if (fallback >= 0) return fallback;
    throw invalidArgument(std::string("'") + key + "' is required (bytes, or a size like \"10G\")");
  }
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_string()) {
    auto v = parseSize(it->get<std::string>());
    if (v && v.value() <= static_cast<uint64_t>(INT64_MAX)) return static_cast<int64_t>(v.value());
  }
  throw invalidArgument(std::string("'") + key + "' must be a number of bytes or a size like \"10G\"");
}

class GatewayRoutes {
 public:
  GatewayRoutes(ApiContext& ctx, const std::string& account, Poco::Net::HTTPServerRequest& req)
      : ctx_(ctx), account_(account), req_(req), method_(req.getMethod()) {}

  // ?routing= of a call that makes a request (the server's setting when absent); a
  // bad value is refused before anything is stored.
  Routing routing() {
    Routing mode = ctx_.routing;
    std::string asked = queryParam(req_, "routing");
    if (!asked.empty() && !parseRouting(asked, &mode)) {
      throw invalidArgument("routing must be lookup or broadcast, not '" + asked + "'");
    }
    return mode;
  }

  // What the request now is, once routed: the API's answer for a change.
  json routed(const RequestInfo& r, Routing mode) {
    RouteOutcome how = ctx_.router.route(r.gatewayId, mode);
    return {{"request", requestJson(r)},
            {"routing", {{"mode", routingName(mode)}, {"how", how.how}, {"server", how.server}}}};
  }

  HTTPResponse::HTTPStatus serve(const std::vector<std::string>& p, json& out) {
    // p[0] = "v1", p[1] = "gateways", p[2] = ID, p[3] = collection, …
    const std::string& gw = p[2];
    const std::string& what = p[3];
    if (what == "volumes" && p.size() == 4) {
      if (method_ == "GET") {
        out = {{"volumes", json::array()}};
        auto volumes = orThrow(ctx_.inventory.volumes(account_, gw));
        auto iscsi = ctx_.iscsi ? orThrow(ctx_.iscsi->forGateway(gw)) : std::map<std::string, IscsiInfo>{};
        for (const auto& v : volumes) {
          json one = volumeJson(v);
          auto it = iscsi.find(v.name);
          one["iscsi"] = iscsiJson(it != iscsi.end() ? it->second : IscsiInfo{gw, v.name});
          out["volumes"].push_back(std::move(one));
        }
        return HTTPResponse::HTTP_OK;
      }
      if (method_ == "POST") {
        Routing mode = routing();
        json in = readBody(req_);
        // 0: not given (the default, or with a source the source's).
        int64_t chunk = sizeField(in, "chunk_size", 0);
        // From a snapshot ("snapshot": ID) or a volume's recovery point ("from":
        // {"gateway_id", "volume"}), of any of the account's gateways.
        std::optional<VolumeSource> source;
        if (in.contains("snapshot")) {
          source = VolumeSource{str(in, "snapshot"), "", ""};
        } else if (in.contains("from")) {
          const json& from = in["from"];
          if (!from.is_object()) throw invalidArgument("from must be {\"gateway_id\": ID, \"volume\": NAME}");
          source = VolumeSource{"", str(from, "gateway_id"), str(from, "volume")};
        }
        int64_t size = sizeField(in, "size", source ? 0 : -1);
        if (!source && chunk == 0) chunk = kDefaultChunkSize;
        auto made = orThrow(
            ctx_.inventory.createVolume(account_, gw, str(in, "name"), size, chunk, source ? &*source : nullptr));
        out = routed(made.second, mode);
        out["volume"] = volumeJson(made.first);
        return HTTPResponse::HTTP_ACCEPTED;
      }
    }
    if (what == "volumes" && p.size() == 5) {
      if (method_ == "GET") {
        out = {{"volume", volumeJson(orThrow(ctx_.inventory.volume(account_, gw, p[4])))}};
        if (ctx_.iscsi) out["volume"]["iscsi"] = iscsiJson(orThrow(ctx_.iscsi->get(account_, gw, p[4])));
        return HTTPResponse::HTTP_OK;
      }
      if (method_ == "DELETE") {
        Routing mode = routing();
        out = routed(orThrow(ctx_.inventory.deleteVolume(account_, gw, p[4])), mode);
        return HTTPResponse::HTTP_ACCEPTED;
      }
    }
    if (what == "volumes" && p.size() == 6 && p[5] == "snapshots") {
      if (method_ == "GET") {
        out = {{"snapshots", json::array()}};
        orThrow(ctx_.inventory.volume(account_, gw, p[4]));
        for (const auto& s : orThrow(ctx_.inventory.snapshots(account_, gw, p[4]))) {
          out["snapshots"].push_back(snapshotJson(s));
        }
        return HTTPResponse::HTTP_OK;
      }
      if (method_ == "POST") {
        Routing mode = routing();
        auto made = orThrow(ctx_.inventory.createSnapshot(account_, gw, p[4]));
        out = routed(made.second, mode);
        out["snapshot"] = snapshotJson(made.first);
        return HTTPResponse::HTTP_ACCEPTED;
      }
    }
    if (what == "volumes" && p.size() == 6 && p[5] == "iscsi" && method_ == "GET" && ctx_.iscsi) {
      out = {{"iscsi", iscsiJson(orThrow(ctx_.iscsi->get(account_, gw, p[4])))}};
      return HTTPResponse::HTTP_OK;
    }
    // PUT sets the volume's CHAP credentials (mutual with a target user and secret),
    // DELETE turns CHAP off; either is a volume.chap request to the gateway.
    if (what == "volumes" && p.size() == 6 && p[5] == "chap" && (method_ == "PUT" || method_ == "DELETE") &&
        ctx_.iscsi) {
      Routing mode = routing();
      ChapSetting chap;
      if (method_ == "PUT") {
        json in = readBody(req_);
        for (const auto& [k, v] : in.items()) {
          if (k != "initiator_user" && k != "initiator_secret" && k != "target_user" && k != "target_secret") {
            throw invalidArgument("unknown field '" + k +
                                  "' (initiator_user, initiator_secret, target_user, target_secret)");
          }
        }
        chap = orThrow(chapFromJson(in));
        if (!chap.enabled()) throw invalidArgument("initiator_user is required (DELETE turns CHAP off)");
      }
      out = routed(orThrow(ctx_.iscsi->setChap(account_, gw, p[4], chap)), mode);
      return HTTPResponse::HTTP_ACCEPTED;
    }
    if (what == "volumes" && p.size() == 6 && p[5] == "schedule") {
      if (method_ == "GET") {
        out = {{"schedule", scheduleJson(orThrow(ctx_.schedules.get(account_, gw, p[4])))}};
        return HTTPResponse::HTTP_OK;
      }
      if (method_ == "PUT") {
        json in = readBody(req_);
        auto every = in.find("every_hours");
        auto keep = in.find("keep");
        if (every == in.end() || !every->is_number_integer() || keep == in.end() || !keep->is_number_integer()) {
          throw invalidArgument("want {\"every_hours\": N, \"keep\": K} (whole numbers)");
        }
        int64_t e = every->get<int64_t>(), k = keep->get<int64_t>();
        if (e < 1 || e > kMaxScheduleHours || k < 1 || k > kMaxScheduleKeep) {
          throw invalidArgument("every_hours must be from 1 to " + std::to_string(kMaxScheduleHours) +
                                " and keep from 1 to " + std::to_string(kMaxScheduleKeep));
        }
        out = {{"schedule", scheduleJson(orThrow(
                                ctx_.schedules.set(account_, gw, p[4], static_cast<int>(e), static_cast<int>(k))))}};
        return HTTPResponse::HTTP_OK;
      }
      if (method_ == "DELETE") {
        orThrow(ctx_.schedules.remove(account_, gw, p[4]));
        return HTTPResponse::HTTP_NO_CONTENT;
      }
    }
    if (what == "snapshots" && p.size() == 4 && method_ == "GET") {
      out = {{"snapshots", json::array()}};
      for (const auto& s : orThrow(ctx_.inventory.snapshots(account_, gw, ""))) {
        out["snapshots"].push_back(snapshotJson(s));
      }
      return HTTPResponse::HTTP_OK;
    }
    if (what == "snapshots" && p.size() == 5 && method_ == "DELETE") {
      Routing mode = routing();
      auto r = orThrow(ctx_.inventory.deleteSnapshot(account_, gw, p[4]));
      if (!r) return HTTPResponse::HTTP_NO_CONTENT;  // a failed snapshot: gone at once
      out = routed(*r, mode);
      return HTTPResponse::HTTP_ACCEPTED;
    }
    if (what == "bandwidth" && p.size() == 4) {
      if (method_ == "GET") {
        out = {{"bandwidth", bandwidthJson(orThrow(ctx_.bandwidth.get(account_, gw)))}};
        return HTTPResponse::HTTP_OK;
      }
      if (method_ == "PUT") {
        Routing mode = routing();
        json in = readBody(req_);
        auto made = orThrow(ctx_.bandwidth.set(account_, gw, in));
        out = routed(made.second, mode);
        out["bandwidth"] = bandwidthJson(made.first);
        return HTTPResponse::HTTP_ACCEPTED;
      }
    }
    if (what == "metrics" && p.size() == 4 && method_ == "GET") {
      int64_t nowSeconds = static_cast<int64_t>(::time(nullptr));
      int64_t until = integerParam("until", nowSeconds, 0, INT64_MAX);
      int64_t since = integerParam("since", until - 3600, 0, INT64_MAX);
      int limit = static_cast<int>(integerParam("limit", 1440, 1, 10000));
      std::string volume = queryParam(req_, "volume");
      if (!volume.empty() && volume != "*") {
        if (Status s = checkVolumeName(volume); !s) throw invalidArgument(s.message());
      }
      out = {{"gateway_id", gw},
             {"since", since},
             {"until", until},
             {"samples", orThrow(ctx_.metrics.samples(account_, gw, since, until, volume, limit))}};
      return HTTPResponse::HTTP_OK;
    }
    if (what == "requests" && p.size() == 4) {
      if (method_ == "GET") {
        int limit = static_cast<int>(integerParam("limit", 100, 1, 1000));
        out = {{"requests", json::array()}};
        for (const auto& r : orThrow(ctx_.outbox.list(account_, gw, limit))) out["requests"].push_back(requestJson(r));
        return HTTPResponse::HTTP_OK;
      }
      if (method_ == "POST") {
        Routing mode = routing();
        json in = readBody(req_);
        std::string op = str(in, "op");
        json args = in.contains("args") ? in["args"] : json::object();
        orThrow(checkRequest(op, args));
        if (!isDirectOp(op)) {
          throw invalidArgument(op + " is asked through its resource (/volumes, /snapshots), which keeps its record");
        }
        out = routed(orThrow(ctx_.outbox.submit(account_, gw, op, args)), mode);
        return HTTPResponse::HTTP_ACCEPTED;
      }
    }
    if (what == "purge" && p.size() == 4 && method_ == "POST") {
      // A lost gateway's store, cleaned up by another of the account's gateways.
      Routing mode = routing();
      json in = readBody(req_);
      for (const auto& [k, v] : in.items()) {
        if (k != "via") throw invalidArgument("unknown field '" + k + "' (only \"via\": a gateway id)");
      }
      out = routed(orThrow(ctx_.inventory.purgeGateway(account_, gw, optStr(in, "via"))), mode);
      return HTTPResponse::HTTP_ACCEPTED;
    }
    bool known = (what == "volumes" && p.size() >= 4 && p.size() <= 6) || (what == "bandwidth" && p.size() == 4) ||
                 (what == "metrics" && p.size() == 4) || (what == "purge" && p.size() == 4) ||
                 (what == "snapshots" && p.size() <= 5) || (what == "requests" && p.size() == 4);
    if (known) {
      throw ApiError{HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                     method_ + " is not allowed on " + req_.getURI()};
    }
    throw ApiError{HTTPResponse::HTTP_NOT_FOUND, "not_found", "no such path " + req_.getURI()};
  }

 private:
  // ?name= as an integer from lo to hi; fallback when absent.
  int64_t integerParam(const char* name, int64_t fallback, int64_t lo, int64_t hi) {
    std::string text = queryParam(req_, name);
    if (text.empty()) return fallback;
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(text, &used);
    } catch (...) {
      used = 0;
    }
    if (used != text.size() || v < lo || v > hi) {
      throw invalidArgument(std::string(name) + " must be a whole number from " + std::to_string(lo) + " to " +
                            std::to_string(hi));
    }
    return v;
  }

  ApiContext& ctx_;
  const std::string& account_;
  Poco::Net::HTTPServerRequest& req_;
  std::string method_;
};

}  // namespace

bool routeGatewayResources(ApiContext& ctx, const std::string& account, Poco::Net::HTTPServerRequest& req,
                           const std::string& path, json& out, HTTPResponse::HTTPStatus& status) {
  auto p = segments(path);
  if (p.size() == 3 && p[0] == "v1" && p[1] == "requests") {
    if (req.getMethod() != "GET") {
      throw ApiError{HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                     req.getMethod() + " is not allowed on " + path};
    }
    out = {{"request", requestJson(orThrow(ctx.outbox.get(account, p[2])))}};
    status = HTTPResponse::HTTP_OK;
    return true;
  }
  if (p.size() < 4 || p[0] != "v1" || p[1] != "gateways" || p[2].empty()) return false;
  status = GatewayRoutes(ctx, account, req).serve(p, out);
  return true;
}

}  // namespace ferry::control
