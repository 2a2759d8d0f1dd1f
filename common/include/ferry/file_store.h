#pragma once
// file:// object store: one file per object under a root directory. put writes a
// temporary file, fsyncs it, renames it into place and fsyncs the directory, so an
// object is either absent or whole after a crash.

#include <memory>
#include <string>

#include "ferry/object_store.h"

namespace ferry {

// Fails with a clear error when root does not exist or is not a directory
// (create = true makes it).
Result<std::unique_ptr<ObjectStore>> makeFileStore(const std::string& root, bool create);

}  // namespace ferry
