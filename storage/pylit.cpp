#include "storage/pylit.hpp"

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>

#include "storage/csv.hpp"
#include "storage/error.hpp"

namespace hllm::storage {

void append_utf8(std::string& out, uint32_t cp) {
  if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) cp = 0xFFFD;
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool repair_utf8(std::string& s) {
  if (is_valid_utf8(s)) return false;
  std::string out;
  out.reserve(s.size() + s.size() / 4);
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (len != 0 && i + len <= s.size() && is_valid_utf8(std::string_view(s).substr(i, len))) {
      out.append(s, i, len);
      i += len;
    } else {
      append_utf8(out, c);  // Latin-1: byte value = code point
      ++i;
    }
  }
  s = std::move(out);
  return true;
}

namespace {

class parser {
 public:
  explicit parser(std::string_view s) : s_(s) {}

  nlohmann::json parse_all() {
    skip_ws();
    nlohmann::json v = value(0);
    skip_ws();
    if (p_ != s_.size()) fail("unexpected text after the literal");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw error(errc::invalid_input, "column " + std::to_string(p_ + 1) + ": " + what);
  }
  bool at_end() const { return p_ >= s_.size(); }
  char peek() const { return p_ < s_.size() ? s_[p_] : '\0'; }
  void skip_ws() {
    while (p_ < s_.size() && (s_[p_] == ' ' || s_[p_] == '\t' || s_[p_] == '\n' || s_[p_] == '\r')) ++p_;
  }
  bool word_at(std::string_view w) const {
    if (s_.substr(p_, w.size()) != w) return false;
    std::size_t e = p_ + w.size();
    return e >= s_.size() || !(std::isalnum(static_cast<unsigned char>(s_[e])) || s_[e] == '_');
  }

  nlohmann::json value(int depth) {
    if (depth > 256) fail("nesting deeper than 256 levels");
    if (at_end()) fail("unexpected end of input, expected a value");
    char c = peek();
    if (c == '{') return dict_or_set(depth);
    if (c == '[') return sequence(depth, '[', ']');
    if (c == '(') return sequence(depth, '(', ')');
    if (c == '\'' || c == '"') return string_literal(false, false);
    // String prefixes: u, b, r and the combinations Python accepts (ur, br, rb).
    {
      std::size_t q = p_;
      bool raw = false, bytes = false, unicode = false;
      while (q < s_.size() && q - p_ < 2) {
        char k = static_cast<char>(std::tolower(static_cast<unsigned char>(s_[q])));
        if (k == 'r' && !raw) raw = true;
        else if (k == 'b' && !bytes && !unicode) bytes = true;
        else if (k == 'u' && !unicode && !bytes && q == p_) unicode = true;
        else break;
        ++q;
      }
      if (q > p_ && q < s_.size() && (s_[q] == '\'' || s_[q] == '"')) {
        p_ = q;
        return string_literal(raw, unicode);
      }
    }
    if (word_at("True") || word_at("true")) return p_ += 4, nlohmann::json(true);
    if (word_at("False") || word_at("false")) return p_ += 5, nlohmann::json(false);
    if (word_at("None")) return p_ += 4, nlohmann::json(nullptr);
    if (word_at("null")) return p_ += 4, nlohmann::json(nullptr);
    if (word_at("nan") || word_at("NaN")) return p_ += 3, nlohmann::json(nullptr);
    if (word_at("inf") || word_at("Infinity")) return p_ += peek() == 'i' ? 3 : 8, nlohmann::json(nullptr);
    if (c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9')) return number();
    fail(std::string("unexpected character '") + c + "'");
  }

  nlohmann::json number() {
    std::size_t start = p_;
    if (peek() == '-' || peek() == '+') ++p_;
    if (word_at("inf") || word_at("Infinity")) {
      p_ += peek() == 'i' ? 3 : 8;
      return nullptr;
    }
    bool is_float = false, digits = false;
    while (!at_end() && std::isdigit(static_cast<unsigned char>(peek()))) ++p_, digits = true;
    if (peek() == '.') {
      is_float = true;
      ++p_;
      while (!at_end() && std::isdigit(static_cast<unsigned char>(peek()))) ++p_, digits = true;
    }
    if (!digits) fail("malformed number");
    if (peek() == 'e' || peek() == 'E') {
      is_float = true;
      ++p_;
      if (peek() == '-' || peek() == '+') ++p_;
      if (at_end() || !std::isdigit(static_cast<unsigned char>(peek()))) fail("malformed number exponent");
      while (!at_end() && std::isdigit(static_cast<unsigned char>(peek()))) ++p_;
    }
    std::string text(s_.substr(start, p_ - start));
    if (!is_float && (peek() == 'L' || peek() == 'l')) ++p_;  // Python 2 long
    if (!at_end() && (std::isalnum(static_cast<unsigned char>(peek())) || peek() == '_')) fail("malformed number");
    if (!is_float) {
      int64_t v = 0;
      const char* b = text.data() + (text[0] == '+' ? 1 : 0);
      auto res = std::from_chars(b, text.data() + text.size(), v);
      if (res.ec == std::errc() && res.ptr == text.data() + text.size()) return v;
    }
    errno = 0;
    double d = std::strtod(text.c_str(), nullptr);
    if (!std::isfinite(d)) return nullptr;
    return d;
  }

  nlohmann::json sequence(int depth, char open, char close) {
    (void)open;
    ++p_;
    nlohmann::json arr = nlohmann::json::array();
    skip_ws();
    if (peek() == close) return ++p_, arr;
    while (true) {
      skip_ws();
      arr.push_back(value(depth + 1));
      skip_ws();
      if (peek() == ',') {
        ++p_;
        skip_ws();
        if (peek() == close) return ++p_, arr;  // trailing comma
        continue;
      }
      if (peek() == close) return ++p_, arr;
      if (at_end()) fail(std::string("unexpected end of input, expected ',' or '") + close + "'");
      fail(std::string("expected ',' or '") + close + "'");
    }
  }

  static std::string key_text(const nlohmann::json& k, std::string_view source) {
    if (k.is_string()) return k.get<std::string>();
    return std::string(source);
  }

  nlohmann::json dict_or_set(int depth) {
    ++p_;
    skip_ws();
    nlohmann::json obj = nlohmann::json::object();
    if (peek() == '}') return ++p_, obj;
    bool is_set = false;
    nlohmann::json set = nlohmann::json::array();
    bool first = true;
    while (true) {
      skip_ws();
      std::size_t kstart = p_;
      nlohmann::json k = value(depth + 1);
      std::string_view ksrc = s_.substr(kstart, p_ - kstart);
      skip_ws();
      if (first) {
        is_set = peek() != ':';
        first = false;
      }
      if (is_set) {
        set.push_back(std::move(k));
      } else {
        if (peek() != ':') fail(at_end() ? "unexpected end of input, expected ':'" : "expected ':'");
        ++p_;
        skip_ws();
        obj[key_text(k, ksrc)] = value(depth + 1);
        skip_ws();
      }
      if (peek() == ',') {
        ++p_;
        skip_ws();
        if (peek() == '}') break;
        continue;
      }
      if (peek() == '}') break;
      if (at_end()) fail("unexpected end of input, expected ',' or '}'");
      fail("expected ',' or '}'");
    }
    ++p_;
    return is_set ? set : obj;
  }

  int hex_digits(int n) {
    if (p_ + static_cast<std::size_t>(n) > s_.size()) fail("truncated escape");
    int v = 0;
    for (int k = 0; k < n; ++k) {
      char c = s_[p_];
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) fail("bad hex digit in escape");
      ++p_;
      v = v * 16 + d;
    }
    return v;
  }

  nlohmann::json string_literal(bool raw, bool unicode) {
    char quote = s_[p_++];
    std::string out;
    std::string pending;  // consecutive \xhh bytes of a byte string, resolved as UTF-8 or Latin-1
    auto flush = [&] {
      if (pending.empty()) return;
      if (is_valid_utf8(pending)) {
        out += pending;
      } else {
        for (char b : pending) append_utf8(out, static_cast<unsigned char>(b));
      }
      pending.clear();
    };
    uint32_t high_surrogate = 0;
    auto put_cp = [&](uint32_t cp) {
      if (high_surrogate != 0) {
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
          append_utf8(out, 0x10000 + ((high_surrogate - 0xD800) << 10) + (cp - 0xDC00));
          high_surrogate = 0;
          return;
        }
        append_utf8(out, 0xFFFD);
        high_surrogate = 0;
      }
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        high_surrogate = cp;
        return;
      }
      append_utf8(out, cp);
    };
    auto end_surrogate = [&] {
      if (high_surrogate != 0) append_utf8(out, 0xFFFD);
      high_surrogate = 0;
    };
    while (true) {
      if (at_end()) fail("unterminated string");
      char c = s_[p_];
      if (c == quote) {
        ++p_;
        break;
      }
      if (c == '\n') fail("unterminated string (newline inside)");
      if (c != '\\') {
        flush();
        end_surrogate();
        out.push_back(c);
        ++p_;
        continue;
      }
      // A backslash.
      if (p_ + 1 >= s_.size()) fail("unterminated string");
      char e = s_[p_ + 1];
      if (raw) {  // r'..': the backslash stays; it only keeps the next character from ending the string
        flush();
        end_surrogate();
        out.push_back('\\');
        out.push_back(e);
        p_ += 2;
        continue;
      }
      p_ += 2;
      if (e == 'x' || (e >= '0' && e <= '7')) {
        int v = 0;
        if (e == 'x') {
          v = hex_digits(2);
        } else {  // \o, \oo or \ooo
          v = e - '0';
          for (int k = 0; k < 2 && !at_end() && peek() >= '0' && peek() <= '7'; ++k) v = v * 8 + (s_[p_++] - '0');
          if (v > 0xFF && !unicode) v &= 0xFF;
        }
        end_surrogate();
        if (unicode) {
          flush();
          append_utf8(out, static_cast<uint32_t>(v));
        } else {
          pending.push_back(static_cast<char>(v));
        }
        continue;
      }
      flush();
      switch (e) {
        case 'u': put_cp(static_cast<uint32_t>(hex_digits(4))); continue;
        case 'U': {
          uint32_t hi = static_cast<uint32_t>(hex_digits(4));
          uint32_t lo = static_cast<uint32_t>(hex_digits(4));
          put_cp((hi << 16) | lo);
          continue;
        }
        default: break;
      }
      end_surrogate();
      switch (e) {
        case '\\': out.push_back('\\'); break;
        case '\'': out.push_back('\''); break;
        case '"': out.push_back('"'); break;
        case '/': out.push_back('/'); break;  // JSON
        case 'a': out.push_back('\a'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'v': out.push_back('\v'); break;
        case '\n': break;  // line continuation
        default:
          out.push_back('\\');  // Python keeps unknown escapes as they are
          out.push_back(e);
      }
    }
    flush();
    end_surrogate();
    return out;
  }

  std::string_view s_;
  std::size_t p_ = 0;
};

}  // namespace

nlohmann::json parse_python_literal(std::string_view text) { return parser(text).parse_all(); }

}  // namespace hllm::storage
