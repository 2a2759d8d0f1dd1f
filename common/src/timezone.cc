#include "ferry/timezone.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace ferry {

namespace {

int64_t readBig(const std::string& s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(s[at + i]);
  if (bytes == 4) return static_cast<int32_t>(static_cast<uint32_t>(v));
  return static_cast<int64_t>(v);
}

// A POSIX TZ string, read left to right.
struct TzReader {
  const std::string& s;
  size_t at = 0;

  bool name() {
    if (at < s.size() && s[at] == '<') {
      size_t close = s.find('>', at);
      if (close == std::string::npos) return false;
      at = close + 1;
      return true;
    }
    size_t start = at;
    while (at < s.size() && std::isalpha(static_cast<unsigned char>(s[at]))) ++at;
    return at - start >= 3;
  }
  // [+-]hh[:mm[:ss]] in seconds.
  bool clock(int32_t* out) {
    int sign = 1;
    if (at < s.size() && (s[at] == '+' || s[at] == '-')) sign = s[at++] == '-' ? -1 : 1;
    int32_t parts[3] = {0, 0, 0};
    for (int i = 0; i < 3; ++i) {
      if (i > 0) {
        if (at >= s.size() || s[at] != ':') break;
        ++at;
      }
      size_t start = at;
      while (at < s.size() && std::isdigit(static_cast<unsigned char>(s[at])))
        parts[i] = parts[i] * 10 + (s[at++] - '0');
      if (at == start || at - start > 3) return false;
    }
    *out = sign * (parts[0] * 3600 + parts[1] * 60 + parts[2]);
    return true;
  }
  bool number(int* out) {
    size_t start = at;
    *out = 0;
    while (at < s.size() && std::isdigit(static_cast<unsigned char>(s[at]))) *out = *out * 10 + (s[at++] - '0');
    return at > start && at - start <= 3;
  }
  bool date(TimeZone::RuleDate* d) {
    if (at < s.size() && s[at] == 'M') {
      ++at;
      d->kind = 'M';
      if (!number(&d->month) || at >= s.size() || s[at++] != '.' || !number(&d->week) || at >= s.size() ||
          s[at++] != '.' || !number(&d->day)) {
        return false;
      }
      if (d->month < 1 || d->month > 12 || d->week < 1 || d->week > 5 || d->day > 6) return false;
    } else if (at < s.size() && s[at] == 'J') {
      ++at;
      d->kind = 'J';
      if (!number(&d->day) || d->day < 1 || d->day > 365) return false;
    } else {
      d->kind = 'D';
      if (!number(&d->day) || d->day > 365) return false;
    }
    d->time = 7200;
    if (at < s.size() && s[at] == '/') {
      ++at;
      return clock(&d->time);
    }
    return true;
  }
};

// Days since 1970-01-01 of the rule's date in year y.
int64_t ruleDay(int y, const TimeZone::RuleDate& d) {
  using namespace std::chrono;
  sys_days jan1 = sys_days(year{y} / January / 1);
  if (d.kind == 'D') return (jan1 + days{d.day}).time_since_epoch().count();
  if (d.kind == 'J') {
    int extra = year{y}.is_leap() && d.day >= 60 ? 1 : 0;
    return (jan1 + days{d.day - 1 + extra}).time_since_epoch().count();
  }
  weekday wd{static_cast<unsigned>(d.day)};
  sys_days day = d.week == 5
                     ? sys_days(year{y} / month{static_cast<unsigned>(d.month)} / wd[last])
                     : sys_days(year{y} / month{static_cast<unsigned>(d.month)} / wd[static_cast<unsigned>(d.week)]);
  return day.time_since_epoch().count();
}

int yearOf(int64_t seconds) {
  using namespace std::chrono;
  auto day = sys_days(days{seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400});
  return static_cast<int>(year_month_day(day).year());
}

}  // namespace

bool TimeZone::parseRule(const std::string& tz) {
  TzReader r{tz};
  int32_t west = 0;
  if (!r.name() || !r.clock(&west)) return false;
  stdOffset_ = -west;
  dstOffset_ = stdOffset_;
  ruleDst_ = false;
  if (r.at < tz.size()) {
    if (!r.name()) return false;
    ruleDst_ = true;
    dstOffset_ = stdOffset_ + 3600;
    if (r.at < tz.size() && tz[r.at] != ',') {
      if (!r.clock(&west)) return false;
      dstOffset_ = -west;
    }
    // No rule given: POSIX leaves it to the implementation; the US rule, as glibc.
    start_ = RuleDate{'M', 0, 2, 3, 7200};
    end_ = RuleDate{'M', 0, 1, 11, 7200};
    if (r.at < tz.size()) {
      if (tz[r.at++] != ',' || !r.date(&start_) || r.at >= tz.size() || tz[r.at++] != ',' || !r.date(&end_)) {
        return false;
      }
    }
  }
  hasRule_ = r.at == tz.size();
  return hasRule_;
}

int32_t TimeZone::ruleOffset(int64_t utc) const {
  if (!ruleDst_) return stdOffset_;
  int y = yearOf(utc + stdOffset_);
  // The change to summer time is given in standard time, the change back in summer time.
  int64_t start = ruleDay(y, start_) * 86400 + start_.time - stdOffset_;
  int64_t end = ruleDay(y, end_) * 86400 + end_.time - dstOffset_;
  bool dst = start < end ? (utc >= start && utc < end) : !(utc >= end && utc < start);
  return dst ? dstOffset_ : stdOffset_;
}

int32_t TimeZone::offsetAt(int64_t utc) const {
  if (transitions_.empty() || utc >= transitions_.back()) {
    if (hasRule_) return ruleOffset(utc);
    return transitions_.empty() ? initial_ : offsets_.back();
  }
  auto it = std::upper_bound(transitions_.begin(), transitions_.end(), utc);
  if (it == transitions_.begin()) return initial_;
  return offsets_[static_cast<size_t>(it - transitions_.begin()) - 1];
}

Result<TimeZone> TimeZone::parse(const std::string& name, const std::string& f) {
  auto bad = [&](const std::string& why) { return Status::invalid("time zone " + name + ": " + why); };
  if (f.size() < 44 || f.compare(0, 4, "TZif") != 0) return bad("not a TZif file");
  char version = f[4];
  // Header: six counts; a version 2+ file repeats the data with 64-bit times after the
  // 32-bit block, then a newline-enclosed POSIX TZ rule.
  auto counts = [&](size_t at, int64_t c[6]) {
    for (int i = 0; i < 6; ++i) c[i] = readBig(f, at + 20 + 4 * static_cast<size_t>(i), 4);
  };
  int64_t c[6];  // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
  auto plausible = [&c] {
    for (int i = 0; i < 6; ++i) {
      if (c[i] < 0 || c[i] > 100000) return false;
    }
    return true;
  };
  counts(0, c);
  if (!plausible()) return bad("implausible TZif counts");
  size_t at = 44;
  int timeBytes = 4;
  if (version >= '2') {
    at += static_cast<size_t>(c[3] * 5 + c[4] * 6 + c[5] + c[2] * 8 + c[1] + c[0]);
    if (at > f.size() || f.size() - at < 44 || f.compare(at, 4, "TZif") != 0) return bad("truncated TZif file");
    counts(at, c);
    at += 44;
    timeBytes = 8;
  }
  if (!plausible()) return bad("implausible TZif counts");
  size_t need = static_cast<size_t>(c[3] * (timeBytes + 1) + c[4] * 6 + c[5] + c[2] * (timeBytes + 4) + c[1] + c[0]);
  if (at > f.size() || f.size() - at < need || c[4] == 0) return bad("truncated TZif file");
  TimeZone tz;
  tz.name_ = name;
  std::vector<int32_t> typeOffsets;
  size_t types = at + static_cast<size_t>(c[3] * (timeBytes + 1));
  for (int64_t i = 0; i < c[4]; ++i) typeOffsets.push_back(static_cast<int32_t>(readBig(f, types + 6 * i, 4)));
  tz.initial_ = typeOffsets[0];
  for (int64_t i = 0; i < c[3]; ++i) {
    int64_t when = readBig(f, at + static_cast<size_t>(i * timeBytes), timeBytes);
    auto type = static_cast<uint8_t>(f[at + static_cast<size_t>(c[3] * timeBytes + i)]);
    if (type >= typeOffsets.size()) return bad("transition to an unknown type");
    if (!tz.transitions_.empty() && when <= tz.transitions_.back()) return bad("transitions out of order");
    tz.transitions_.push_back(when);
    tz.offsets_.push_back(typeOffsets[type]);
  }
  if (version >= '2') {
    size_t footer = at + need;
    if (footer < f.size() && f[footer] == '\n') {
      size_t close = f.find('\n', footer + 1);
      std::string rule = close == std::string::npos ? "" : f.substr(footer + 1, close - footer - 1);
      if (!rule.empty() && !tz.parseRule(rule)) return bad("cannot read its rule '" + rule + "'");
    }
  }
  return tz;
}

Result<TimeZone> TimeZone::load(const std::string& name) {
  if (name == "UTC" || name == "Etc/UTC") {
    TimeZone tz;
    tz.name_ = name;
    return tz;
  }
  bool ok = !name.empty() && name.size() <= 64 && name.front() != '/' && name.find("..") == std::string::npos;
  for (char ch : name) {
    ok = ok && (std::isalnum(static_cast<unsigned char>(ch)) || ch == '/' || ch == '_' || ch == '-' || ch == '+');
  }
  if (!ok)
    return Status::invalid("'" + name + "' is not a time zone name (want UTC or an IANA name like Europe/Berlin)");
  const char* dir = std::getenv("TZDIR");
  std::ifstream in(std::string(dir && *dir ? dir : "/usr/share/zoneinfo") + "/" + name, std::ios::binary);
  if (!in) return Status::invalid("unknown time zone '" + name + "' (want UTC or an IANA name like Europe/Berlin)");
  std::ostringstream data;
  data << in.rdbuf();
  return parse(name, data.str());
}

}  // namespace ferry
