#include "ferry/s3_xml.h"

#include <algorithm>
#include <charconv>

namespace ferry::s3 {
namespace {

// Deeper than any S3 response; the limit only bounds the work a hostile body can cause.
constexpr size_t kMaxDepth = 32;
// Longest entity we accept between '&' and ';' ("#x10FFFF" is 8).
constexpr size_t kMaxEntityLength = 10;

Status malformed(const std::string& what) {
  return Status::corruption("malformed S3 XML: " + what);
}

// Untrusted text quoted in an error message, cut short so a hostile body cannot bloat logs.
std::string quote(std::string_view s) {
  constexpr size_t kMax = 40;
  return "'" + std::string(s.substr(0, kMax)) + (s.size() > kMax ? "...'" : "'");
}

bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

bool isNameChar(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  return (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || u == '_' || u == ':' ||
         u == '-' || u == '.' || u >= 0x80;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && isSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && isSpace(s.back())) s.remove_suffix(1);
  return s;
}

// The code points XML 1.0 allows in a document (its "Char" production).
bool isXmlChar(uint32_t cp) {
  return cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) || (cp >= 0xE000 && cp <= 0xFFFD) ||
         (cp >= 0x10000 && cp <= 0x10FFFF);
}

void appendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

Result<uint32_t> parseCharRef(std::string_view ref) {
  // ref is what follows "&#": "65" or "x41".
  int base = 10;
  if (!ref.empty() && ref.front() == 'x') {
    base = 16;
    ref.remove_prefix(1);
  }
  uint32_t cp = 0;
  auto [end, ec] = std::from_chars(ref.data(), ref.data() + ref.size(), cp, base);
  if (ref.empty() || ec != std::errc() || end != ref.data() + ref.size() || !isXmlChar(cp)) {
    return malformed("bad character reference " + quote(ref));
  }
  return cp;
}

// Receives the elements of a document as the walker meets them. path runs from the
// root element down to the current one.
class XmlVisitor {
 public:
  virtual ~XmlVisitor() = default;
  virtual Status open(const std::vector<std::string_view>& path) = 0;
  // text is the decoded character data directly inside the element (after its last
  // child, for an element with children).
  virtual Status close(const std::vector<std::string_view>& path, const std::string& text) = 0;
};

// Walks a document just well enough for S3's responses: elements, attributes (skipped),
// text, entities, CDATA, comments and the XML declaration. DOCTYPE is refused, since
// its internal subset could declare entities this reader does not expand.
Status walkXml(std::string_view xml, XmlVisitor& visitor) {
  std::vector<std::string_view> path;
  std::string text;
  bool rootClosed = false;
  size_t i = 0;
  auto closeElement = [&]() -> Status {
    Status s = visitor.close(path, text);
    text.clear();
    path.pop_back();
    rootClosed = path.empty();
    return s;
  };
  while (i < xml.size()) {
    std::string_view rest = xml.substr(i);
    if (rest.front() != '<') {
      size_t end = std::min(xml.find('<', i), xml.size());
      std::string_view raw = xml.substr(i, end - i);
      if (path.empty()) {
        if (!trim(raw).empty()) return malformed("text outside the root element");
      } else {
        Result<std::string> decoded = decodeXmlText(raw);
        if (!decoded) return decoded.status();
        text += *decoded;
      }
      i = end;
    } else if (rest.starts_with("<?")) {
      size_t end = xml.find("?>", i + 2);
      if (end == std::string_view::npos) return malformed("unterminated <?");
      i = end + 2;
    } else if (rest.starts_with("<!--")) {
      size_t end = xml.find("-->", i + 4);
      if (end == std::string_view::npos) return malformed("unterminated comment");
      i = end + 3;
    } else if (rest.starts_with("<![CDATA[")) {
      size_t end = xml.find("]]>", i + 9);
      if (end == std::string_view::npos) return malformed("unterminated CDATA");
      if (path.empty()) return malformed("CDATA outside the root element");
      text.append(xml.substr(i + 9, end - i - 9));
      i = end + 3;
    } else if (rest.starts_with("<!")) {
      return malformed("DOCTYPE and other declarations are not accepted");
    } else if (rest.starts_with("</")) {
      size_t nameEnd = i + 2;
      while (nameEnd < xml.size() && isNameChar(xml[nameEnd])) ++nameEnd;
      std::string_view name = xml.substr(i + 2, nameEnd - i - 2);
      size_t gt = nameEnd;
      while (gt < xml.size() && isSpace(xml[gt])) ++gt;
      if (gt >= xml.size() || xml[gt] != '>') return malformed("bad end tag");
      if (path.empty() || path.back() != name) {
        return malformed("unexpected end tag " + quote(name));
      }
      if (Status s = closeElement(); !s) return s;
      i = gt + 1;
    } else {
      size_t nameEnd = i + 1;
      while (nameEnd < xml.size() && isNameChar(xml[nameEnd])) ++nameEnd;
      std::string_view name = xml.substr(i + 1, nameEnd - i - 1);
      if (name.empty()) return malformed("bad start tag");
      if (nameEnd < xml.size() && !isSpace(xml[nameEnd]) && xml[nameEnd] != '/' && xml[nameEnd] != '>') {
        return malformed("bad start tag " + quote(name));
      }
      // Skip attributes to the closing '>', minding quoted values that may hold '>'.
      size_t gt = nameEnd;
      while (gt < xml.size() && xml[gt] != '>') {
        char c = xml[gt];
        if (c == '<') return malformed("'<' inside a tag");
        if (c == '"' || c == '\'') {
          gt = xml.find(c, gt + 1);
          if (gt == std::string_view::npos) return malformed("unterminated attribute value");
        }
        ++gt;
      }
      if (gt >= xml.size()) return malformed("unterminated tag " + quote(name));
      if (rootClosed) return malformed("more than one root element");
      if (path.size() >= kMaxDepth) return malformed("elements nested too deeply");
      path.push_back(name);
      text.clear();
      if (Status s = visitor.open(path); !s) return s;
      if (gt > nameEnd && xml[gt - 1] == '/') {
        if (Status s = closeElement(); !s) return s;
      }
      i = gt + 1;
    }
  }
  if (!path.empty()) return malformed("document ends inside " + quote(path.back()));
  if (!rootClosed) return malformed("no root element");
  return Status::ok();
}

bool isAt(const std::vector<std::string_view>& path, std::string_view parent, std::string_view name) {
  return path.size() == 3 && path[1] == parent && path[2] == name;
}

bool isAt(const std::vector<std::string_view>& path, std::string_view name) {
  return path.size() == 2 && path[1] == name;
}

Status checkRoot(const std::vector<std::string_view>& path, std::string_view expected) {
  if (path.size() == 1 && path[0] != expected) {
    return malformed("expected <" + std::string(expected) + ">, got " + quote(path[0]));
  }
  return Status::ok();
}

class ListVisitor : public XmlVisitor {
 public:
  Status open(const std::vector<std::string_view>& path) override {
    if (isAt(path, "Contents")) {
      current_ = ObjectInfo();
      haveKey_ = haveSize_ = false;
    }
    return checkRoot(path, "ListBucketResult");
  }

  Status close(const std::vector<std::string_view>& path, const std::string& text) override {
    if (isAt(path, "Contents", "Key")) {
      current_.key = text;
      haveKey_ = true;
    } else if (isAt(path, "Contents", "Size")) {
      std::string_view digits = trim(text);
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), current_.size);
      if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size()) {
        return malformed("bad <Size> " + quote(text));
      }
      haveSize_ = true;
    } else if (isAt(path, "Contents")) {
      if (!haveKey_ || !haveSize_) return malformed("<Contents> without <Key> or <Size>");
      page_.objects.push_back(std::move(current_));
    } else if (isAt(path, "IsTruncated")) {
      std::string_view value = trim(text);
      if (value != "true" && value != "false") return malformed("bad <IsTruncated> " + quote(text));
      page_.truncated = value == "true";
    } else if (isAt(path, "NextContinuationToken")) {
      page_.nextContinuationToken = text;
    }
    return Status::ok();
  }

  ListPage& page() { return page_; }

 private:
  ListPage page_;
  ObjectInfo current_;
  bool haveKey_ = false;
  bool haveSize_ = false;
};

class ErrorVisitor : public XmlVisitor {
 public:
  Status open(const std::vector<std::string_view>& path) override { return checkRoot(path, "Error"); }

  Status close(const std::vector<std::string_view>& path, const std::string& text) override {
    if (isAt(path, "Code")) error_.code = trim(text);
    if (isAt(path, "Message")) error_.message = trim(text);
    return Status::ok();
  }

  ErrorBody& error() { return error_; }

 private:
  ErrorBody error_;
};

}  // namespace

Result<std::string> decodeXmlText(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    size_t amp = text.find('&', i);
    if (amp == std::string_view::npos) {
      out.append(text.substr(i));
      break;
    }
    out.append(text.substr(i, amp - i));
    size_t semi = text.find(';', amp + 1);
    if (semi == std::string_view::npos || semi - amp - 1 > kMaxEntityLength) {
      return malformed("unterminated entity");
    }
    std::string_view entity = text.substr(amp + 1, semi - amp - 1);
    if (entity == "amp") {
      out += '&';
    } else if (entity == "lt") {
      out += '<';
    } else if (entity == "gt") {
      out += '>';
    } else if (entity == "quot") {
      out += '"';
    } else if (entity == "apos") {
      out += '\'';
    } else if (entity.starts_with('#')) {
      Result<uint32_t> cp = parseCharRef(entity.substr(1));
      if (!cp) return cp.status();
      appendUtf8(out, *cp);
    } else {
      return malformed("unknown entity " + quote(entity));
    }
    i = semi + 1;
  }
  return out;
}

Result<ListPage> parseListObjectsV2(std::string_view xml) {
  ListVisitor visitor;
  if (Status s = walkXml(xml, visitor); !s) return s;
  ListPage& page = visitor.page();
  if (page.truncated && page.nextContinuationToken.empty()) {
    return malformed("truncated listing without <NextContinuationToken>");
  }
  return std::move(page);
}

Result<ErrorBody> parseErrorBody(std::string_view xml) {
  ErrorVisitor visitor;
  if (Status s = walkXml(xml, visitor); !s) return s;
  if (visitor.error().code.empty()) return malformed("<Error> without <Code>");
  return std::move(visitor.error());
}

std::string uriEncode(std::string_view s, bool keepSlash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    bool unreserved = (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || u == '-' ||
                      u == '_' || u == '.' || u == '~';
    if (unreserved || (keepSlash && u == '/')) {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 0xF];
    }
  }
  return out;
}

std::string canonicalQuery(std::vector<std::pair<std::string, std::string>> params) {
  for (auto& [name, value] : params) {
    name = uriEncode(name, false);
    value = uriEncode(value, false);
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [name, value] : params) {
    if (!out.empty()) out += '&';
    out.append(name).append(1, '=').append(value);
  }
  return out;
}

}  // namespace ferry::s3
