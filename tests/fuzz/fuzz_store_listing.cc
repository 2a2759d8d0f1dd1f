// libFuzzer target: the S3 listing and error-body parsers read what a (possibly
// hostile or broken) store sends back.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "ferry/s3_xml.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  (void)ferry::s3::parseListObjectsV2(in);
  (void)ferry::s3::parseErrorBody(in);
  (void)ferry::s3::decodeXmlText(in);
  return 0;
}
