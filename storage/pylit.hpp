#pragma once
// A small reader of Python literals as Python's repr()/str() prints them, e.g. one line of Amazon's
// meta_Books.json (McAuley 2014), which is a Python dict per line, not JSON:
//   {'asin': '000100039X', 'title': "Bob's book", 'categories': [['Books']], 'salesRank': {'Books': 6334800}}
// It reads JSON too, so one reader serves both the 2014 (Python) and 2018 (JSON) metadata files.
//
// Accepted: dicts, lists, tuples and sets (both become JSON arrays), strings in single or double quotes with the
// prefixes u/b/r (any case, combined as Python allows) and Python's escapes (\\ \' \" \a \b \f \n \r \t \v, \ooo
// octal, \xhh, \uXXXX with JSON surrogate pairs, \UXXXXXXXX, backslash-newline), integers (Python 2's 123L too;
// beyond int64 they become doubles), floats, True/False/None and true/false/null, nan/inf (-> null: JSON has no
// NaN). Dict keys that are not strings are kept as their source text.
//
// \xhh in a u'' string is the code point U+00hh (Python 3 and Python 2 unicode semantics). In an unprefixed or b''
// string (Python 2 byte strings) it is a byte: a run of \x escapes that forms valid UTF-8 is kept as those bytes
// ('\xc3\xa9' = "é"), otherwise each byte is read as Latin-1 ('\xe9' = "é"). Raw bytes in the input are copied
// unchanged; the caller checks UTF-8.
#include <nlohmann/json.hpp>
#include <string_view>

namespace hllm::storage {

// Parses exactly one literal (surrounding white space allowed). Throws hllm::error(invalid_input) with a message
// "column N: ..." (1-based byte column) for anything else. Nesting deeper than 256 levels is an error.
nlohmann::json parse_python_literal(std::string_view text);

// Appends the UTF-8 encoding of code point `cp` (U+FFFD for a surrogate or anything above U+10FFFF).
void append_utf8(std::string& out, uint32_t cp);

// `s` as valid UTF-8: well-formed sequences are kept, every other byte is read as Latin-1 (so a Latin-1 file, such
// as MovieLens 1M's movies.dat, comes out right). Returns true when something had to be changed.
bool repair_utf8(std::string& s);

}  // namespace hllm::storage
