#include "lease.h"

#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "ferry/log.h"
#include "format.h"

namespace ferry {
namespace {

int64_t nowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string hostName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

// Writes l only if the lease is still the version tagged `tag` ("": only if there is
// none), and moves tag on to what was written. kConflict: another gateway wrote it in
// between. A lease of l's owner and epoch found instead is this keeper's own earlier
// write (a store request retried after its answer was lost, a failed write that
// landed after all): its tag is taken and the write tried again.
Status casLease(ObjectStore& store, const std::string& key, const LeaseInfo& l, std::string& tag) {
  std::string body = encodeLease(l);
  for (int attempt = 0;; ++attempt) {
    auto written = store.putIfTag(key, bytesOf(body), tag);
    if (written) {
      tag = std::move(written).value();
      return Status::ok();
    }
    if (written.status().code() != Code::kConflict || attempt == 1) return written.status();
    auto now = store.getTagged(key);
    if (!now) return now.status().code() == Code::kNotFound ? written.status() : now.status();
    auto there = decodeLease(now->data);
    if (!there || there->owner != l.owner || there->epoch != l.epoch) return written.status();
    tag = now->tag;
    if (now->data == body) return Status::ok();
  }
}

}  // namespace

std::string encodeLease(const LeaseInfo& l) {
  nlohmann::json j{{"format", kFormatVersion}, {"owner", l.owner},         {"host", l.host},
                   {"epoch", l.epoch},         {"expires", l.expiresUnix}, {"ttl", l.ttlSeconds}};
  if (l.waitingOutTtl > 0) j["waiting_out"] = l.waitingOutTtl;
  return j.dump();
}

Result<LeaseInfo> decodeLease(std::string_view json) {
  try {
    auto j = nlohmann::json::parse(json);
    LeaseInfo l;
    l.owner = j.at("owner").get<std::string>();
    l.host = j.value("host", std::string());
    l.epoch = j.at("epoch").get<uint64_t>();
    l.expiresUnix = j.at("expires").get<int64_t>();
    l.ttlSeconds = j.value("ttl", 0);
    l.waitingOutTtl = j.value("waiting_out", 0);
    return l;
  } catch (const std::exception& e) {
    return Status::corruption(std::string("lease does not parse: ") + e.what());
  }
}

Result<std::optional<LeaseInfo>> readLease(ObjectStore& store, const std::string& volume) {
  auto cur = store.getAll(leaseKey(volume));
  if (!cur) {
    if (cur.status().code() == Code::kNotFound) return std::optional<LeaseInfo>();
    return cur.status().withContext("read lease of volume " + volume);
  }
  auto l = decodeLease(cur.value());
  if (!l) return l.status().withContext("volume " + volume);
  return std::optional<LeaseInfo>(std::move(l).value());
}

Result<uint64_t> LeaseKeeper::acquire(uint64_t minEpoch, bool force, std::string_view advice) {
  std::string key = leaseKey(volume_);
  // Another gateway's, not released: unexpired, or expired by this gateway's clock
  // (which may run ahead); its owner may still be changing the volume.
  bool unreleased = false;
  int ownerTtl = 0;
  std::string tag;  // of the lease as read or last written, "" if there is none
  LeaseInfo mine;
  for (int attempt = 1;; ++attempt) {
    uint64_t epoch = minEpoch;
    unreleased = false;
    ownerTtl = 0;
    tag.clear();
    auto cur = store_.getTagged(key);
    if (cur) {
      tag = cur->tag;
      auto l = decodeLease(cur->data);
      if (!l) return l.status().withContext("volume " + volume_);
      int64_t left = l->expiresUnix - nowUnix();
      bool live = l->owner != gatewayId_ && left > 0;
      unreleased = l->owner != gatewayId_ && l->expiresUnix != 0;
      // An owner still waiting out the one before it (killed in that wait, perhaps):
      // that one may still be changing the volume, for as long as its own ttl says.
      ownerTtl = std::max(l->ttlSeconds, l->waitingOutTtl);
      if (l->owner == gatewayId_ && l->waitingOutTtl > 0) {
        // Its own, from a start that was waiting out another owner and did not finish
        // (killed, restarted): wait again.
        unreleased = true;
      }
      if (live && !force) {
        return Status::busy("volume " + volume_ + " is in use by gateway " + l->owner + " on " + l->host +
                            " (its lease expires in " + std::to_string(left) + " s); " + std::string(advice));
      }
      epoch = std::max(epoch, l->epoch);
    } else if (cur.status().code() != Code::kNotFound) {
      return cur.status().withContext("read lease of volume " + volume_);
    }
    // While it waits, the lease says whose ttl it waits out (unknown: its own, as
    // takeoverWait assumes).
    mine = LeaseInfo{gatewayId_,       hostName(), epoch + 1,
                     nowUnix() + ttl_, ttl_,       unreleased ? (ownerTtl > 0 ? ownerTtl : ttl_) : 0};
    Status s = casLease(store_, key, mine, tag);
    if (s) break;
    if (s.code() != Code::kConflict) return s.withContext("write lease of volume " + volume_);
    // The lease changed between the read and the write: another gateway starting at
    // the same time won (read again, it refuses this start, naming that one), or the
    // owner a takeover is taking it from renewed it (taken on the next try).
    if (attempt == 3) return lostWhileStarting(mine);
  }
  // A store that ignores the write's condition lets the later of two writes win: the
  // other sees it here and backs off.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto started = std::chrono::steady_clock::now();
  if (Status s = checkOurs(mine); !s) return s;
  if (unreleased) {
    // The old owner may still be changing the volume until its own confirmation runs
    // out; then the lease must still be this gateway's.
    auto wait = takeoverWait(ownerTtl);
    logInfo("volume " + volume_ + ": taken over; waiting " + std::to_string(wait.count()) +
            " ms for the old owner to stop");
    // Written again every ttl/4 meanwhile, as a held lease is renewed: the wait can be
    // longer than this gateway's own ttl (an owner with a longer one), and the lease
    // must not look expired to a third gateway, during the wait or just after it.
    auto end = std::chrono::steady_clock::now() + wait;
    for (;;) {
      auto left = end - std::chrono::steady_clock::now();
      if (left <= std::chrono::steady_clock::duration::zero()) break;
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(left, renewInterval()));
      // Taken by another gateway: given up. A store error: tried again at the next
      // interval (the read back after the wait must succeed).
      mine.expiresUnix = nowUnix() + ttl_;
      Status s = casLease(store_, key, mine, tag);
      if (s.code() == Code::kConflict) return lostWhileStarting(mine);
      if (!s) logError("volume " + volume_ + ": keep the lease while waiting: " + s.toString() + " (will retry)");
    }
    started = std::chrono::steady_clock::now();
    if (Status s = checkOurs(mine); !s) return s;
    // Done waiting: a restart from here on need not wait again. If this write fails,
    // it does (the next renewal writes the lease without the mark anyway).
    mine.waitingOutTtl = 0;
    mine.expiresUnix = nowUnix() + ttl_;
    if (Status s = casLease(store_, key, mine, tag); s.code() == Code::kConflict) {
      return lostWhileStarting(mine);
    } else if (!s) {
      logError("volume " + volume_ + ": mark the takeover wait done: " + s.toString() + " (a restart waits again)");
    }
  }
  epoch_ = mine.epoch;
  confirmed(started);
  return epoch_;
}

Status LeaseKeeper::checkOurs(const LeaseInfo& mine) {
  auto read = readLease(store_, volume_);
  if (!read) return read.status().withContext("read back");
  if (!*read) return Status::notFound("the lease of volume " + volume_ + " is gone");
  const LeaseInfo& l = read->value();
  if (l.owner != gatewayId_ || l.epoch != mine.epoch) {
    return Status::busy("volume " + volume_ + " was taken by gateway " + l.owner + " on " + l.host +
                        " while this gateway was starting");
  }
  return Status::ok();
}

Status LeaseKeeper::lostWhileStarting(const LeaseInfo& mine) {
  Status s = checkOurs(mine);
  if (s.code() == Code::kNotFound) {
    return Status::busy("volume " + volume_ + ": its lease was removed while this gateway was starting");
  }
  if (s) return Status::busy("volume " + volume_ + ": its lease changed while this gateway was starting");
  return s;
}

Status LeaseKeeper::stillOurs(std::string_view lease) const {
  auto l = decodeLease(lease);
  if (!l) return l.status();
  if (l->owner != gatewayId_ || l->epoch != epoch_) {
    return Status::fenced("volume " + volume_ + " was taken over by gateway " + l->owner + " on " + l->host +
                          " (epoch " + std::to_string(l->epoch) + "); this gateway stops writing it");
  }
  return Status::ok();
}

void LeaseKeeper::confirmed(std::chrono::steady_clock::time_point started) {
  validUntil_ = (started + std::chrono::milliseconds(ttl_ * 1000 / 2)).time_since_epoch().count();
}

void LeaseKeeper::retire() {
  std::lock_guard lock(renewMu_);
  retired_ = true;
}

Status LeaseKeeper::renew() {
  std::lock_guard lock(renewMu_);
  if (retired_) return Status::fenced("volume " + volume_ + " is being deleted");
  auto started = std::chrono::steady_clock::now();
  std::string key = leaseKey(volume_);
  auto disappeared = [&] { return Status::fenced("lease of volume " + volume_ + " disappeared from the store"); };
  auto cur = store_.getTagged(key);
  if (!cur) return cur.status().code() == Code::kNotFound ? disappeared() : cur.status();
  if (Status s = stillOurs(cur->data); !s) return s;
  // Written only if nobody wrote it since the read: a takeover in between fences
  // this gateway, and is not overwritten by it.
  std::string tag = cur->tag;
  Status s = casLease(store_, key, LeaseInfo{gatewayId_, hostName(), epoch_, nowUnix() + ttl_, ttl_}, tag);
  if (s.code() == Code::kConflict) {
    auto now = store_.getAll(key);
    if (!now) return now.status().code() == Code::kNotFound ? disappeared() : now.status();
    if (Status f = stillOurs(now.value()); !f) return f;
  }
  if (!s) return s;
  confirmed(started);
  return Status::ok();
}

Status LeaseKeeper::release() {
  return replaceIfOurs(LeaseInfo{gatewayId_, hostName(), epoch_, 0, ttl_});
}

Status LeaseKeeper::giveBack(const std::optional<LeaseInfo>& was) {
  return replaceIfOurs(was);
}

Status LeaseKeeper::replaceIfOurs(const std::optional<LeaseInfo>& with) {
  std::lock_guard lock(renewMu_);
  const std::string key = leaseKey(volume_);
  auto cur = store_.getTagged(key);
  if (!cur) return cur.status().code() == Code::kNotFound ? Status::ok() : cur.status();
  if (!stillOurs(cur->data)) return Status::ok();  // not ours any more
  std::string tag = cur->tag;
  Status s = with ? casLease(store_, key, *with, tag) : store_.remove(key);
  // A conflict: another gateway wrote it since; it is not ours to replace.
  return s.code() == Code::kConflict ? Status::ok() : s;
}

}  // namespace ferry
