#include "ferry/file_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <functional>

#include "ferry/digest.h"
#include "ferry/fd.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

// A missing root means the store is unreachable (an unmounted share, a moved
// directory): transient, worth a retry, unlike a missing object.
Status rootStatus(const std::string& root) {
  struct stat st;
  if (::stat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::unavailable("file store " + root + " is not reachable");
  }
  return Status::ok();
}

Status writeAll(int fd, const uint8_t* p, size_t n, const std::string& what) {
  while (n > 0) {
    ssize_t r = ::write(fd, p, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      return errnoStatus("write " + what, errno);
    }
    p += r;
    n -= static_cast<size_t>(r);
  }
  return Status::ok();
}

Status fsyncDir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return errnoStatus("open " + dir, errno);
  if (::fsync(fd.get()) != 0) return errnoStatus("fsync " + dir, errno);
  return Status::ok();
}

class FileStore : public ObjectStore {
 public:
  explicit FileStore(std::string root) : root_(std::move(root)) {}

  Status put(const std::string& key, std::span<const uint8_t> data) override {
    auto made = dirFor(key);
    if (!made) return made.status();
    const std::string& dir = made.value();
    std::string path = root_ + "/" + key;
    std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." +
                      std::to_string(counter_.fetch_add(1));
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd.valid()) return errnoStatus("create " + tmp, errno);
    Status s = writeAll(fd.get(), data.data(), data.size(), tmp);
    if (s && ::fdatasync(fd.get()) != 0) s = errnoStatus("fdatasync " + tmp, errno);
    if (s && ::rename(tmp.c_str(), path.c_str()) != 0) s = errnoStatus("rename " + tmp, errno);
    if (!s) {
      ::unlink(tmp.c_str());
      return s;
    }
    return fsyncDir(dir);
  }

  Result<size_t> get(const std::string& key, uint64_t offset, std::span<uint8_t> out) override {
    if (Status s = checkKey(key); !s) return s;
    std::string path = root_ + "/" + key;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return missingOr(path, errno);
    size_t done = 0;
    while (done < out.size()) {
      ssize_t r = ::pread(fd.get(), out.data() + done, out.size() - done,
                          static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        return errnoStatus("read " + path, errno);
      }
      if (r == 0) break;
      done += static_cast<size_t>(r);
    }
    return done;
  }

  Result<std::string> getAll(const std::string& key) override {
    if (Status s = checkKey(key); !s) return s;
    std::string path = root_ + "/" + key;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return missingOr(path, errno);
    std::string data;
    char buf[65536];
    for (;;) {
      ssize_t r = ::read(fd.get(), buf, sizeof buf);
      if (r < 0) {
        if (errno == EINTR) continue;
        return errnoStatus("read " + path, errno);
      }
      if (r == 0) break;
      data.append(buf, static_cast<size_t>(r));
    }
    return data;
  }

  Result<TaggedObject> getTagged(const std::string& key) override {
    auto data = getAll(key);
    if (!data) return data.status();
    std::string tag = sha256Hex(bytesOf(data.value()));
    return TaggedObject{std::move(data).value(), std::move(tag)};
  }

  // Conditional writes hold an exclusive flock on the store's lock file from the read
  // to the rename, so two of them (threads or processes) cannot both pass the same
  // check. The file is opened for writing: NFS emulates flock with byte-range locks,
  // which need that. list skips it (".tmp."). A plain put does not take the lock.
  Result<std::string> putIfTag(const std::string& key, std::span<const uint8_t> data,
                               const std::string& ifTag) override {
    auto made = dirFor(key);
    if (!made) return made.status();
    std::string path = root_ + "/" + key;
    const std::string lockPath = root_ + "/.tmp.conditional-writes.lock";
    UniqueFd lock(::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (!lock.valid()) return errnoStatus("open " + lockPath, errno);
    while (::flock(lock.get(), LOCK_EX) != 0) {
      if (errno != EINTR) return errnoStatus("lock " + lockPath, errno);
    }
    auto current = getTagged(key);
    if (!current && current.status().code() != Code::kNotFound) return current.status();
    if (current ? current->tag != ifTag : !ifTag.empty()) {
      return Status::conflict("conditional write of " + path + ": " +
                              (ifTag.empty() ? "the object exists" : "the object is no longer " + ifTag) +
                              " (another writer came first)");
    }
    if (Status s = put(key, data); !s) return s;
    return sha256Hex(data);
  }

  Result<std::vector<ObjectInfo>> list(const std::string& prefix) override {
    if (Status s = rootStatus(root_); !s) return s;
    // Walk only the directory the prefix names, not the whole store.
    std::string dirPart = prefix.substr(0, prefix.rfind('/') == std::string::npos ? 0 : prefix.rfind('/'));
    std::string start = dirPart.empty() ? root_ : root_ + "/" + dirPart;
    std::vector<ObjectInfo> out;
    std::error_code ec;
    if (!fs::exists(start, ec)) return out;
    for (auto it = fs::recursive_directory_iterator(start, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (!it->is_regular_file(ec)) continue;
      std::string rel = it->path().string().substr(root_.size() + 1);
      if (rel.compare(0, prefix.size(), prefix) != 0) continue;
      if (rel.find(".tmp.") != std::string::npos) continue;  // a put in progress
      out.push_back({rel, static_cast<uint64_t>(it->file_size(ec))});
    }
    if (ec) return errnoStatus("list " + start, ec.value());
    std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
    return out;
  }

  Status remove(const std::string& key) override {
    if (Status s = checkKey(key); !s) return s;
    if (Status s = rootStatus(root_); !s) return s;
    std::string path = root_ + "/" + key;
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return errnoStatus("unlink " + path, errno);
    return Status::ok();
  }

  // Objects are never changed in place (put renames a new file over the name), so a
  // hard link is a copy; across file systems it falls back to read and write.
  Status copyFrom(ObjectStore& source, const std::string& sourceKey, const std::string& key,
                  bool* serverSide) override {
    auto* from = dynamic_cast<FileStore*>(&source);
    if (from == nullptr) return ObjectStore::copyFrom(source, sourceKey, key, serverSide);
    if (Status s = checkKey(sourceKey); !s) return s;
    auto made = dirFor(key);
    if (!made) return made.status();
    const std::string& dir = made.value();
    std::string src = from->root_ + "/" + sourceKey;
    std::string path = root_ + "/" + key;
    std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter_.fetch_add(1));
    if (::link(src.c_str(), tmp.c_str()) != 0) {
      int err = errno;
      if (err == EXDEV || err == EPERM || err == EMLINK) return ObjectStore::copyFrom(source, sourceKey, key, serverSide);
      return err == ENOENT ? from->missingOr(src, err) : errnoStatus("link " + src, err);
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      Status s = errnoStatus("rename " + tmp, errno);
      ::unlink(tmp.c_str());
      return s;
    }
    // Renaming a link onto another link of the same file does nothing: tmp stays.
    ::unlink(tmp.c_str());
    if (serverSide) *serverSide = true;
    return fsyncDir(dir);
  }

  std::string describe() const override { return "file://" + root_; }

 private:
  // The directory an object of key goes in, made if absent, once the key is checked
  // and the store is reachable.
  Result<std::string> dirFor(const std::string& key) const {
    if (Status s = checkKey(key); !s) return s;
    if (Status s = rootStatus(root_); !s) return s;
    std::string dir = fs::path(root_ + "/" + key).parent_path();
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return errnoStatus("mkdir " + dir, ec.value());
    return dir;
  }

  static Status checkKey(const std::string& key) {
    if (key.empty() || key.front() == '/' || key.find("..") != std::string::npos) {
      return Status::invalid("bad object key '" + key + "'");
    }
    return Status::ok();
  }

  Status missingOr(const std::string& path, int err) const {
    if (err == ENOENT) {
      if (Status s = rootStatus(root_); !s) return s;
      return Status::notFound("object " + path + " does not exist");
    }
    return errnoStatus("open " + path, err);
  }

  const std::string root_;
  std::atomic<uint64_t> counter_{0};
};

}  // namespace

Result<std::unique_ptr<ObjectStore>> makeFileStore(const std::string& root, bool create) {
  if (root.empty() || root.front() != '/') {
    return Status::invalid("file store path must be absolute, got '" + root + "'");
  }
  std::string clean = root;
  while (clean.size() > 1 && clean.back() == '/') clean.pop_back();
  if (create) {
    std::error_code ec;
    fs::create_directories(clean, ec);
    if (ec) return errnoStatus("create store directory " + clean, ec.value());
  }
  if (Status s = rootStatus(clean); !s) {
    return Status::notFound("file store directory " + clean + " does not exist");
  }
  return std::unique_ptr<ObjectStore>(new FileStore(clean));
}

}  // namespace ferry
