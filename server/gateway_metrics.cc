#include "gateway_metrics.h"

#include <Poco/Data/Session.h>
#include <Poco/Data/Statement.h>
#include <Poco/Tuple.h>

#include <ctime>
#include <tuple>
#include <vector>

#include "ferry/strings.h"
#include "outbox.h"

namespace ferry::control {

using json = nlohmann::json;
using namespace Poco::Data::Keywords;

namespace {

// One row: the gateway's totals (volume "") or one volume's. A hit ratio or buffer use
// of -1 stands for "none" (no reads in the interval; not a gateway total).
struct Sample {
  std::string volume;
  double hitRatio = -1, bufferUsed = -1;
  Poco::Int64 cached = 0, dirty = 0, up = 0, down = 0;
};

Status number(const json& o, const char* key, const std::string& where, Poco::Int64* out) {
  auto it = o.find(key);
  if (it == o.end() || !it->is_number_integer() || it->get<int64_t>() < 0) {
    return Status::invalid(where + key + " must be a count of bytes");
  }
  *out = it->get<int64_t>();
  return Status::ok();
}

Status ratio(const json& o, const char* key, const std::string& where, bool nullable, double* out) {
  auto it = o.find(key);
  if (nullable && (it == o.end() || it->is_null())) {
    *out = -1;
    return Status::ok();
  }
  if (it == o.end() || !it->is_number() || it->get<double>() < 0 || it->get<double>() > 1.0) {
    return Status::invalid(where + key + " must be a ratio from 0 to 1");
  }
  *out = it->get<double>();
  return Status::ok();
}

Result<Sample> sampleOf(const json& o, const std::string& where, bool total) {
  if (!o.is_object()) return Status::invalid(where + "must be an object");
  Sample s;
  if (!total) {
    s.volume = o.value("name", "");
    if (Status c = checkVolumeName(s.volume); !c) return Status::invalid(where + c.message());
  }
  if (Status c = ratio(o, "cache_hit_ratio", where, true, &s.hitRatio); !c) return c;
  if (total) {
    if (Status c = ratio(o, "upload_buffer_used", where, false, &s.bufferUsed); !c) return c;
  }
  for (auto [key, out] : {std::pair{"cached_bytes", &s.cached}, std::pair{"dirty_bytes", &s.dirty},
                          std::pair{"bytes_up", &s.up}, std::pair{"bytes_down", &s.down}}) {
    if (Status c = number(o, key, where, out); !c) return c;
  }
  return s;
}

}  // namespace

Status GatewayMetrics::record(const std::string& gatewayId, const json& report) {
  if (!report.is_object() || report.value("report", "") != "metrics") {
    return Status::invalid("not a metrics report");
  }
  auto at = report.find("at");
  auto interval = report.find("interval");
  int64_t nowSeconds = static_cast<int64_t>(::time(nullptr));
  if (at == report.end() || !at->is_number_integer() || at->get<int64_t>() > nowSeconds + 300 ||
      at->get<int64_t>() < nowSeconds - 7 * 86400) {
    return Status::invalid("metrics report: at must be a Unix time within the last week");
  }
  if (interval == report.end() || !interval->is_number_integer() || interval->get<int64_t>() < 1 ||
      interval->get<int64_t>() > 86400) {
    return Status::invalid("metrics report: interval must be 1 to 86400 seconds");
  }
  std::vector<Sample> rows;
  auto total = sampleOf(report.value("gateway", json()), "metrics report: gateway: ", true);
  if (!total) return total.status();
  rows.push_back(total.value());
  json volumes = report.value("volumes", json::array());
  if (!volumes.is_array() || volumes.size() > kMaxReportVolumes) {
    return Status::invalid("metrics report: volumes must be a list of at most " + std::to_string(kMaxReportVolumes));
  }
  for (size_t i = 0; i < volumes.size(); ++i) {
    auto v = sampleOf(volumes[i], "metrics report: volume " + std::to_string(i + 1) + ": ", false);
    if (!v) return v.status();
    rows.push_back(v.value());
  }
  std::string gid = gatewayId;
  Poco::Int64 when = at->get<int64_t>();
  int seconds = static_cast<int>(interval->get<int64_t>());
  return dbCall("store metrics", [&] {
    Poco::Data::Session ses = db_.session();
    Transaction tx(ses, db_.postgres());
    for (Sample& r : rows) {
      ses << "INSERT INTO metrics (gateway_id, volume, at, interval_seconds, cache_hit_ratio, cached_bytes,"
             " dirty_bytes, upload_buffer_used, bytes_up, bytes_down)"
             " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
          use(gid), use(r.volume), use(when), use(seconds), use(r.hitRatio), use(r.cached), use(r.dirty),
          use(r.bufferUsed), use(r.up), use(r.down), now;
    }
    tx.commit();
    return Status::ok();
  });
}

Result<json> GatewayMetrics::samples(const std::string& accountId, const std::string& gatewayId, int64_t since,
                                     int64_t until, const std::string& volume, int limit) {
  using Row =
      Poco::Tuple<std::string, Poco::Int64, int, double, Poco::Int64, Poco::Int64, double, Poco::Int64, Poco::Int64>;
  std::vector<Row> rows;
  std::string gid = gatewayId, vol = volume;
  Poco::Int64 from = since, to = until;
  int lim = limit;
  bool owned = false;
  Status s = dbCall("read metrics", [&] {
    Poco::Data::Session ses = db_.session();
    owned = ownsGateway(ses, accountId, gatewayId);
    if (!owned) return Status::ok();
    std::string columns =
        "SELECT volume, at, interval_seconds, cache_hit_ratio, cached_bytes, dirty_bytes, upload_buffer_used,"
        " bytes_up, bytes_down FROM metrics WHERE gateway_id = $1 AND at >= $2 AND at <= $3";
    if (volume == "*") {
      ses << columns + " ORDER BY at DESC, volume LIMIT $4", use(gid), use(from), use(to), use(lim), into(rows), now;
    } else {
      ses << columns + " AND volume = $4 ORDER BY at DESC LIMIT $5", use(gid), use(from), use(to), use(vol), use(lim),
          into(rows), now;
    }
    return Status::ok();
  });
  if (!s) return s;
  if (!owned) return Status::notFound("no gateway " + gatewayId);
  json out = json::array();
  for (auto it = rows.rbegin(); it != rows.rend(); ++it) {
    json sample = {{"at", it->get<1>()},
                   {"interval_seconds", it->get<2>()},
                   {"cache_hit_ratio", it->get<3>() < 0 ? json() : json(it->get<3>())},
                   {"cached_bytes", it->get<4>()},
                   {"dirty_bytes", it->get<5>()},
                   {"bytes_up", it->get<7>()},
                   {"bytes_down", it->get<8>()}};
    if (it->get<0>().empty()) {
      sample["upload_buffer_used"] = it->get<6>();
    } else {
      sample["volume"] = it->get<0>();
    }
    out.push_back(sample);
  }
  return out;
}

Result<int64_t> GatewayMetrics::prune(int64_t before) {
  Poco::Int64 b = before;
  size_t removed = 0;
  Status s = dbCall("prune metrics", [&] {
    Poco::Data::Session ses = db_.session();
    Poco::Data::Statement st(ses);
    st << "DELETE FROM metrics WHERE at < $1", use(b);
    removed = st.execute();
    return Status::ok();
  });
  if (!s) return s;
  return static_cast<int64_t>(removed);
}

}  // namespace ferry::control
