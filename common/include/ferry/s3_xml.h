#pragma once
// The text formats of the S3 REST API that the S3 client reads and writes: the XML of
// ListObjectsV2 and of error responses, and the RFC 3986 encoding SigV4 signs. Pure
// functions, so they can be unit-tested and fuzzed without a server. Response bodies
// are untrusted input: every parser returns kCorruption on malformed text and never
// reads out of bounds.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ferry/object_store.h"
#include "ferry/status.h"

namespace ferry::s3 {

// One page of a ListObjectsV2 response (GET /bucket?list-type=2).
struct ListPage {
  std::vector<ObjectInfo> objects;    // full keys, as the server sent them
  bool truncated = false;             // more pages follow
  std::string nextContinuationToken;  // set when truncated
};

// Parses <ListBucketResult>. Every <Contents> must have a <Key> and a <Size>; a
// truncated page must carry a <NextContinuationToken>, or it could not be continued.
Result<ListPage> parseListObjectsV2(std::string_view xml);

// The <Error> body S3 sends with a 4xx/5xx status.
struct ErrorBody {
  std::string code;     // "NoSuchKey", "SlowDown", …
  std::string message;  // human text; radosgw often leaves it empty
};

Result<ErrorBody> parseErrorBody(std::string_view xml);

// Decodes XML character data: &amp; &lt; &gt; &quot; &apos; and &#N; / &#xH; (to UTF-8).
Result<std::string> decodeXmlText(std::string_view text);

// RFC 3986 percent-encoding the way SigV4 canonicalises it: A-Z a-z 0-9 - _ . ~ stay,
// every other byte becomes %XX (upper-case hex). '/' stays when keepSlash, which is
// what an object key in a path wants; query values encode it.
std::string uriEncode(std::string_view s, bool keepSlash);

// "a=1&b=x%2Fy": the parameters encoded and sorted by encoded name, as SigV4 requires
// (libcurl 7.88 signs the query exactly as given). An empty value is written "name=".
std::string canonicalQuery(std::vector<std::pair<std::string, std::string>> params);

}  // namespace ferry::s3
