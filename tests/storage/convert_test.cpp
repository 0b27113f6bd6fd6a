// `hllm convert` on small hand-written files in the published layouts (tests/storage/data/convert/), quirks
// included, and the Python-literal reader that Amazon's metadata needs.
#include "storage/convert.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "storage/csv.hpp"
#include "storage/error.hpp"
#include "storage/pylit.hpp"
#include "test_util.hpp"

using namespace hllm::storage;
using hllm::test::read_bytes;
using hllm::test::temp_dir;
using hllm::test::write_text;

namespace {

const std::string data_dir = HLLM_CONVERT_DATA;

// A CSV file as rows of fields (header included), read back with the project's reader.
std::vector<std::vector<std::string>> read_csv(const std::string& path) {
  csv_reader r(path);
  std::vector<std::vector<std::string>> rows;
  for (auto res = r.next(); res != csv_reader::result::end; res = r.next()) {
    EXPECT_EQ(res, csv_reader::result::record) << path << ":" << r.line() << ": " << r.error();
    rows.emplace_back(r.fields().begin(), r.fields().end());
  }
  return rows;
}

// item_id -> the rest of its row.
std::map<std::string, std::vector<std::string>> by_id(const std::vector<std::vector<std::string>>& rows) {
  std::map<std::string, std::vector<std::string>> out;
  for (std::size_t i = 1; i < rows.size(); ++i) out[rows[i][0]] = {rows[i].begin() + 1, rows[i].end()};
  return out;
}

convert_report convert(convert_format f, std::vector<std::string> in, const std::string& out, bool strict = false) {
  convert_options o;
  o.format = f;
  o.inputs = std::move(in);
  o.out_dir = out;
  o.strict = strict;
  return convert_dataset(o);
}

// One conversion into a fresh TMP/out, and the two CSVs it wrote read back.
struct converted {
  temp_dir tmp;
  convert_report rep;
  converted(convert_format f, std::vector<std::string> in) : rep(convert(f, std::move(in), tmp / "out")) {}
  std::vector<std::vector<std::string>> interactions() const { return read_csv(tmp / "out/interactions.csv"); }
  std::vector<std::vector<std::string>> items() const { return read_csv(tmp / "out/items.csv"); }
};

std::string error_of(convert_format f, std::vector<std::string> in, const std::string& out, bool strict = false) {
  try {
    convert(f, std::move(in), out, strict);
  } catch (const hllm::error& e) {
    return e.what();
  }
  return "";
}

bool has(const std::vector<std::string>& v, const std::string& what) {
  for (const auto& s : v) {
    if (s.find(what) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

// --- The Python-literal reader ------------------------------------------------------------------------------------

TEST(pylit, reads_an_amazon_2014_metadata_line) {
  auto j = parse_python_literal(
      "{'asin': '000100039X', 'title': \"Bob's book\", 'description': 'He said \"hi\"\\n', "
      "'categories': [['Books', 'Children\\'s']], 'salesRank': {'Books': 6334800}, 'price': 12.5}");
  EXPECT_EQ(j["asin"], "000100039X");
  EXPECT_EQ(j["title"], "Bob's book");
  EXPECT_EQ(j["description"], "He said \"hi\"\n");
  EXPECT_EQ(j["categories"][0][1], "Children's");
  EXPECT_EQ(j["salesRank"]["Books"], 6334800);
  EXPECT_DOUBLE_EQ(j["price"].get<double>(), 12.5);
}

TEST(pylit, scalars_containers_and_json) {
  EXPECT_EQ(parse_python_literal("True"), true);
  EXPECT_EQ(parse_python_literal(" False "), false);
  EXPECT_TRUE(parse_python_literal("None").is_null());
  EXPECT_EQ(parse_python_literal("[true, false, null]"), nlohmann::json::parse("[true, false, null]"));
  EXPECT_EQ(parse_python_literal("-42"), -42);
  EXPECT_EQ(parse_python_literal("123L"), 123);  // Python 2 long
  EXPECT_DOUBLE_EQ(parse_python_literal("-1.5e3").get<double>(), -1500.0);
  EXPECT_DOUBLE_EQ(parse_python_literal("99999999999999999999").get<double>(), 1e20);  // beyond int64
  EXPECT_TRUE(parse_python_literal("nan").is_null());
  EXPECT_TRUE(parse_python_literal("-inf").is_null());
  EXPECT_EQ(parse_python_literal("(1, 'a')"), nlohmann::json::parse("[1, \"a\"]"));  // tuple
  EXPECT_EQ(parse_python_literal("(1,)"), nlohmann::json::parse("[1]"));
  EXPECT_EQ(parse_python_literal("()"), nlohmann::json::array());
  EXPECT_EQ(parse_python_literal("{'a', 'b',}"), nlohmann::json::parse("[\"a\", \"b\"]"));  // set
  EXPECT_EQ(parse_python_literal("{}"), nlohmann::json::object());
  EXPECT_EQ(parse_python_literal("{1: 'x', None: [], 'k': {'n': [[], {}]},}"),
            nlohmann::json::parse(R"({"1": "x", "None": [], "k": {"n": [[], {}]}})"));
  auto j = parse_python_literal(R"({"asin": "B1", "description": ["a", "b"], "x": 1.0})");  // 2018: JSON
  EXPECT_EQ(j["description"][1], "b");
}

TEST(pylit, string_quotes_prefixes_and_escapes) {
  EXPECT_EQ(parse_python_literal(R"('it\'s')"), "it's");
  EXPECT_EQ(parse_python_literal(R"("say \"x\" and 'y'")"), "say \"x\" and 'y'");
  EXPECT_EQ(parse_python_literal(R"('a\\b\tc\x41\101')"), "a\\b\tcAA");
  EXPECT_EQ(parse_python_literal(R"('\a\b\f\v\r\n')"), "\a\b\f\v\r\n");
  EXPECT_EQ(parse_python_literal(R"('\d\w')"), "\\d\\w");  // unknown escapes stay as written
  EXPECT_EQ(parse_python_literal(R"(r'\d\'')"), "\\d\\'");
  EXPECT_EQ(parse_python_literal(R"(u'caf\xe9 \u2014 \U0001F600')"), "caf\xC3\xA9 \xE2\x80\x94 \xF0\x9F\x98\x80");
  EXPECT_EQ(parse_python_literal(R"("\ud83d\ude00")"), "\xF0\x9F\x98\x80");  // JSON surrogate pair
  EXPECT_EQ(parse_python_literal(R"("\ud83d!")"), "\xEF\xBF\xBD!");        // lone surrogate
  // Python 2 byte strings: UTF-8 bytes stay UTF-8, a byte that is not UTF-8 is Latin-1.
  EXPECT_EQ(parse_python_literal(R"('Caf\xc3\xa9')"), "Caf\xC3\xA9");
  EXPECT_EQ(parse_python_literal(R"('Na\xefve')"), "Na\xC3\xAFve");
  EXPECT_EQ(parse_python_literal(R"(b'\xe9t\xc3\xa9')"), "\xC3\xA9t\xC3\xA9");
  EXPECT_EQ(parse_python_literal("'raw \xC3\xA9 bytes'"), "raw \xC3\xA9 bytes");
  EXPECT_EQ(parse_python_literal("U'x'"), "x");
  EXPECT_EQ(parse_python_literal("Br'\\x'"), "\\x");
}

TEST(pylit, malformed_input_names_the_column) {
  auto err = [](const std::string& s) {
    try {
      parse_python_literal(s);
    } catch (const hllm::error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(err("{'a': 1 'b': 2}"), "column 9: expected ',' or '}'");
  EXPECT_EQ(err("{'a': 'open}"), "column 13: unterminated string");
  EXPECT_EQ(err("this is not a dict"), "column 1: unexpected character 't'");
  EXPECT_EQ(err("{'a': 1} x"), "column 10: unexpected text after the literal");
  EXPECT_EQ(err("[1, 2"), "column 6: unexpected end of input, expected ',' or ']'");
  EXPECT_EQ(err("{'a' 1}"), "column 6: expected ',' or '}'");  // read as a set: {'a'}
  EXPECT_EQ(err("{'a': 1, 'b' 2}"), "column 14: expected ':'");
  EXPECT_EQ(err("'\\x4'"), "column 5: bad hex digit in escape");
  EXPECT_EQ(err("12abc"), "column 3: malformed number");
  EXPECT_EQ(err(""), "column 1: unexpected end of input, expected a value");
  EXPECT_EQ(err(std::string(300, '[') + std::string(300, ']')), "column 258: nesting deeper than 256 levels");
}

TEST(pylit, repair_utf8_reads_stray_bytes_as_latin1) {
  std::string ok = "caf\xC3\xA9";
  EXPECT_FALSE(repair_utf8(ok));
  EXPECT_EQ(ok, "caf\xC3\xA9");
  std::string latin = "Mis\xE9rables \xC3\xA9 \xFF";
  EXPECT_TRUE(repair_utf8(latin));
  EXPECT_EQ(latin, "Mis\xC3\xA9rables \xC3\xA9 \xC3\xBF");
  EXPECT_TRUE(is_valid_utf8(latin));
}

// --- PixelRec -----------------------------------------------------------------------------------------------------

TEST(convert, pixelrec_keeps_the_text_fields_and_reports_what_it_dropped) {
  temp_dir tmp;
  auto rep = convert(convert_format::pixelrec, {data_dir + "/pixelrec/interactions.csv", data_dir + "/pixelrec/item_info.csv"},
                     tmp / "out");
  auto inter = read_csv(tmp / "out/interactions.csv");
  ASSERT_EQ(inter.size(), 9u);  // header + 8 of 10 rows
  EXPECT_EQ(inter[0], (std::vector<std::string>{"item_id", "user_id", "timestamp"}));
  EXPECT_EQ(inter[2], (std::vector<std::string>{"i2", "u1", "2021-07-12 09:30:00"}));  // kept as written
  EXPECT_EQ(rep.interaction_rows_read, 10);
  EXPECT_EQ(rep.interactions_written, 8);
  EXPECT_EQ(rep.skipped["non-numeric timestamp"], 1);
  EXPECT_EQ(rep.skipped["malformed date"], 1);
  EXPECT_TRUE(has(rep.examples, "interactions.csv:10: malformed date (2021-02-30 10:00:00: day out of range"))
      << rep.summary();

  auto items = read_csv(tmp / "out/items.csv");
  EXPECT_EQ(items[0], (std::vector<std::string>{"item_id", "title", "tag", "description"}));
  auto m = by_id(items);
  ASSERT_EQ(m.size(), 4u) << rep.summary();  // i1-i4; i5 has no row, i9 nobody watched
  EXPECT_EQ(m["i1"], (std::vector<std::string>{"Sunset, sea and sky", "nature", "Clouds over the \"golden\" sea"}));
  EXPECT_EQ(m["i2"], (std::vector<std::string>{"猫咪睡觉", "宠物", "A cat\nfalls asleep"}));
  EXPECT_EQ(m["i3"], (std::vector<std::string>{"", "", ""}));
  EXPECT_EQ(m["i4"], (std::vector<std::string>{"", "food", "Croissants in Paris"}));
  EXPECT_EQ(m.count("i9"), 0u);
  EXPECT_EQ(rep.items_interacted, 5);  // i6 only occurs in a skipped row
  EXPECT_EQ(rep.items_written, 4);
  EXPECT_EQ(rep.items_without_text, 1);
  EXPECT_EQ(rep.items_without_title, 2);
  EXPECT_EQ(rep.items_without_row, 1);
  EXPECT_EQ(rep.item_rows_unused, 1);
  for (const char* c : {"view_number", "comment_number", "thumbup_number", "share_number", "coin_number",
                        "favorite_number", "barrage_number"}) {
    EXPECT_TRUE(has(rep.dropped_columns, std::string("item_info.csv: ") + c)) << c;
  }
  EXPECT_EQ(rep.dropped_columns.size(), 7u);
  EXPECT_NE(rep.summary().find("without a title"), std::string::npos);
  // The report is stored beside the CSVs, and no temporary file is left.
  auto j = nlohmann::json::parse(read_bytes(tmp / "out/convert_report.json"));
  EXPECT_EQ(j["items_without_row"], 1);
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(tmp / "out")) files += e.is_regular_file();
  EXPECT_EQ(files, 3);
}

TEST(convert, pixelrec_missing_text_column_is_written_empty_and_missing_id_is_an_error) {
  temp_dir tmp;
  write_text(tmp / "inter.csv", "user_id,item_id,timestamp,extra\nu,a,1,x\nu,b,2,y\n");
  write_text(tmp / "info.csv", "item_id,title,description\na,A title,A text\nb,B,\n");
  auto rep = convert(convert_format::pixelrec, {tmp / "inter.csv", tmp / "info.csv"}, tmp / "out");
  auto m = by_id(read_csv(tmp / "out/items.csv"));
  EXPECT_EQ(m["a"], (std::vector<std::string>{"A title", "", "A text"}));
  EXPECT_TRUE(has(rep.notes, "no column 'tag'")) << rep.summary();
  EXPECT_TRUE(has(rep.dropped_columns, "inter.csv: extra"));
  auto inter = read_csv(tmp / "out/interactions.csv");
  EXPECT_EQ(inter[1], (std::vector<std::string>{"a", "u", "1"}));  // columns found by name, written in order
  write_text(tmp / "info.csv", "id,title\na,x\n");
  std::string e = error_of(convert_format::pixelrec, {tmp / "inter.csv", tmp / "info.csv"}, tmp / "out2");
  EXPECT_NE(e.find("info.csv': missing column 'item_id' (header: id,title)"), std::string::npos) << e;
  EXPECT_FALSE(std::filesystem::exists(tmp / "out2/items.csv"));
  e = error_of(convert_format::pixelrec, {tmp / "out"}, tmp / "out2");
  EXPECT_NE(e.find("pixelrec: PixelRec's file names vary"), std::string::npos) << e;
}

// --- Amazon Books -------------------------------------------------------------------------------------------------

TEST(convert, amazon_books_reads_headerless_ratings_and_python_dict_metadata) {
  temp_dir tmp;
  auto rep = convert(convert_format::amazon_books, {data_dir + "/amazon"}, tmp / "out");  // a directory
  EXPECT_EQ(rep.interaction_rows_read, 39);
  EXPECT_EQ(rep.interactions_written, 38);
  EXPECT_EQ(rep.skipped["short row"], 1);
  EXPECT_TRUE(has(rep.examples, "ratings_Books.csv:31: short row")) << rep.summary();
  auto inter = read_csv(tmp / "out/interactions.csv");
  ASSERT_EQ(inter.size(), 39u);
  // user,item,rating,timestamp -> item_id,user_id,timestamp
  EXPECT_EQ(inter[1], (std::vector<std::string>{"000100039X", "A1USER7X", "1360627200"}));

  auto m = by_id(read_csv(tmp / "out/items.csv"));
  EXPECT_EQ(m["000100039X"], (std::vector<std::string>{"Bob's \"big\" book", "A \"classic\", with commas"}));
  EXPECT_EQ(m["0001055178"], (std::vector<std::string>{"Caf\xC3\xA9 stories", ""}));
  EXPECT_EQ(m["0001473123"], (std::vector<std::string>{"", "No title here \xE2\x80\x94 only text"}));
  EXPECT_EQ(m["0001473727"], (std::vector<std::string>{"JSON line", "first para second"}));
  EXPECT_EQ(m["0001712772"], (std::vector<std::string>{"Na\xC3\xAFve art", ""}));
  EXPECT_EQ(m.size(), 5u);
  EXPECT_EQ(rep.item_rows_read, 10);  // the blank line is not a record
  EXPECT_EQ(rep.skipped["malformed metadata line"], 2);
  EXPECT_EQ(rep.skipped["metadata line without asin"], 1);
  EXPECT_EQ(rep.skipped["duplicate item row"], 1);
  EXPECT_TRUE(has(rep.examples, "meta_Books.json:6: malformed metadata line (column 1: unexpected character 't')"))
      << rep.summary();
  EXPECT_TRUE(has(rep.examples, "meta_Books.json:7: malformed metadata line (column 23: expected ',' or '}')"))
      << rep.summary();
  EXPECT_TRUE(has(rep.examples, "meta_Books.json:11: duplicate item row"));
  EXPECT_EQ(rep.item_rows_unused, 1);     // 0002005018: nobody rated it
  EXPECT_EQ(rep.items_interacted, 7);
  EXPECT_EQ(rep.items_without_row, 2);    // 000171287X (its line is malformed) and 0001714422
  EXPECT_EQ(rep.items_without_title, 1);  // 0001473123
  EXPECT_EQ(rep.items_without_text, 0);
  for (const char* k : {"categories", "salesRank", "price", "related", "imUrl", "rank"}) {
    EXPECT_TRUE(has(rep.dropped_columns, std::string("meta_Books.json: ") + k)) << k;
  }
  EXPECT_TRUE(has(rep.dropped_columns, "ratings_Books.csv: rating"));
  EXPECT_EQ(rep.prepare_hint, "--kcore 5");
}

TEST(convert, amazon_books_strict_stops_at_the_first_bad_line_and_replaces_nothing) {
  temp_dir tmp;
  // A previous good conversion stays as it was when a later one fails halfway (ratings already streamed out).
  convert(convert_format::amazon_books, {data_dir + "/amazon"}, tmp / "out");
  std::string before = read_bytes(tmp / "out/items.csv");
  write_text(tmp / "ratings.csv", "u1,b1,5.0,100\nu1,b2,4.0,200\n");
  write_text(tmp / "meta.json", "{'asin': 'b1', 'title': 'ok'}\n{'asin': 'b2', 'title': 'unterminated}\n");
  std::string e = error_of(convert_format::amazon_books, {tmp / "ratings.csv", tmp / "meta.json"}, tmp / "out", true);
  EXPECT_NE(e.find("meta.json:2: malformed metadata line (column 39: unterminated string) [--strict]"),
            std::string::npos)
      << e;
  EXPECT_EQ(read_bytes(tmp / "out/items.csv"), before);
  int files = 0;
  for (const auto& f : std::filesystem::directory_iterator(tmp / "out")) files += f.is_regular_file();
  EXPECT_EQ(files, 3);  // no temporary left behind
  // Lenient: the same input converts, the bad line counted.
  auto rep = convert(convert_format::amazon_books, {tmp / "ratings.csv", tmp / "meta.json"}, tmp / "out");
  EXPECT_EQ(rep.skipped["malformed metadata line"], 1);
  EXPECT_EQ(rep.items_without_row, 1);
}

TEST(convert, amazon_books_header_row_someone_added_is_noted_not_counted) {
  temp_dir tmp;
  write_text(tmp / "ratings.csv", "user,item,rating,timestamp\nu1,b1,5.0,100\n");
  write_text(tmp / "meta.json", "{'asin': 'b1', 'title': 'ok'}\n");
  auto rep = convert(convert_format::amazon_books, {tmp / "ratings.csv", tmp / "meta.json"}, tmp / "out");
  EXPECT_EQ(rep.interactions_written, 1);
  EXPECT_EQ(rep.interaction_rows_read, 1);
  EXPECT_TRUE(has(rep.notes, "line 1 taken as a header")) << rep.summary();
  EXPECT_TRUE(rep.skipped.empty());
}

// --- MovieLens ----------------------------------------------------------------------------------------------------

TEST(convert, movielens_csv_quoted_titles_genres_as_tag_and_missing_titles) {
  const converted c(convert_format::movielens, {data_dir + "/ml-latest-small"});
  const auto& rep = c.rep;
  EXPECT_EQ(rep.interactions_written, 10);
  auto inter = c.interactions();
  EXPECT_EQ(inter[1], (std::vector<std::string>{"1", "1", "964982703"}));
  EXPECT_EQ(inter[5], (std::vector<std::string>{"1", "2", "1445714835"}));
  auto items = c.items();
  EXPECT_EQ(items[0], (std::vector<std::string>{"item_id", "title", "tag"}));
  auto m = by_id(items);
  EXPECT_EQ(m["1"], (std::vector<std::string>{"Toy Story (1995)", "Adventure, Animation, Children, Comedy, Fantasy"}));
  EXPECT_EQ(m["6"], (std::vector<std::string>{"American President, The (1995)", "Comedy, Drama, Romance"}));
  EXPECT_EQ(m["11"], (std::vector<std::string>{"\"Great Performances\" Cats (1998)", ""}));
  EXPECT_EQ(m["13"], (std::vector<std::string>{"", "Drama"}));
  EXPECT_EQ(m.count("12"), 0u);  // nobody rated it
  EXPECT_EQ(rep.items_written, 5);
  EXPECT_EQ(rep.items_without_title, 1);
  EXPECT_EQ(rep.items_without_text, 0);
  EXPECT_EQ(rep.item_rows_unused, 1);
  EXPECT_TRUE(has(rep.dropped_columns, "ratings.csv: rating"));
  EXPECT_EQ(rep.prepare_hint, "");
}

TEST(convert, movielens_1m_dat_layout_with_latin1_titles) {
  const converted c(convert_format::movielens, {data_dir + "/ml-1m"});
  EXPECT_EQ(c.rep.interactions_written, 6);
  auto inter = c.interactions();
  EXPECT_EQ(inter[1], (std::vector<std::string>{"1193", "1", "978300760"}));
  auto m = by_id(c.items());
  EXPECT_EQ(m["3"], (std::vector<std::string>{"Mis\xC3\xA9rables, Les (1995)", "Drama, Musical"}));
  EXPECT_EQ(m["661"], (std::vector<std::string>{"James and the Giant Peach (1996)", "Animation, Children's, Musical"}));
  EXPECT_EQ(c.rep.text_repaired, 1);
  EXPECT_EQ(c.rep.items_without_row, 0);
}

// --- Bad input common to all formats ------------------------------------------------------------------------------

TEST(convert, missing_input_is_one_line_naming_the_file_and_writes_nothing) {
  temp_dir tmp;
  std::string e = error_of(convert_format::movielens, {tmp / "nope/ratings.csv", data_dir + "/ml-latest-small/movies.csv"},
                           tmp / "out");
  EXPECT_EQ(e, "cannot open '" + tmp / "nope/ratings.csv" + "': No such file or directory");
  EXPECT_FALSE(std::filesystem::exists(tmp / "out"));
  e = error_of(convert_format::amazon_books, {tmp.path()}, tmp / "out");  // a directory without the files
  EXPECT_EQ(e, "cannot open '" + tmp.path() + "/ratings_Books.csv': No such file or directory");
  e = error_of(convert_format::movielens, {data_dir + "/ml-1m/ratings.dat", data_dir + "/ml-1m"}, tmp / "out");
  EXPECT_NE(e.find("is a directory, expected a file"), std::string::npos) << e;
  e = error_of(convert_format::movielens, {data_dir + "/ml-1m/ratings.dat"}, tmp / "out");
  EXPECT_NE(e.find("is one file; give --in DIR or --in ratings.csv --in movies.csv"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos);
}

TEST(convert, nothing_usable_is_an_error) {
  temp_dir tmp;
  write_text(tmp / "r.csv", "userId,movieId,rating,timestamp\n1,2,3.0,yesterday\n");
  write_text(tmp / "m.csv", "movieId,title,genres\n2,x,y\n");
  std::string e = error_of(convert_format::movielens, {tmp / "r.csv", tmp / "m.csv"}, tmp / "out");
  EXPECT_NE(e.find("r.csv' has no usable rows"), std::string::npos) << e;
  EXPECT_FALSE(std::filesystem::exists(tmp / "out/interactions.csv"));
  write_text(tmp / "r.csv", "user,movie,rating,timestamp\n1,2,3.0,4\n");
  e = error_of(convert_format::movielens, {tmp / "r.csv", tmp / "m.csv"}, tmp / "out");
  EXPECT_NE(e.find("missing column 'movieId' (header: user,movie,rating,timestamp)"), std::string::npos) << e;
}
