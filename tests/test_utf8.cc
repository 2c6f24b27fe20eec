#include <gtest/gtest.h>

#include "core/utf8.h"

namespace voxtral {
namespace {

const std::string kFFFD = "\xEF\xBF\xBD";

// Expected values are what Python's bytes.decode("utf-8", "replace") returns.
TEST(Utf8Repair, ValidTextPassesThrough) {
  EXPECT_EQ(repair_utf8("hello"), "hello");
  EXPECT_EQ(repair_utf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x99\x82"), "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x99\x82");
  EXPECT_EQ(repair_utf8(""), "");
}

TEST(Utf8Repair, MaximalSubpartsBecomeOneReplacementEach) {
  EXPECT_EQ(repair_utf8("\xE2\x82" "A"), kFFFD + "A");
  EXPECT_EQ(repair_utf8("\xED\xA0\x80"), kFFFD + kFFFD + kFFFD);  // surrogate
  EXPECT_EQ(repair_utf8("\xC0\xAF"), kFFFD + kFFFD);              // overlong
  EXPECT_EQ(repair_utf8("\xF4\x90\x80\x80"), kFFFD + kFFFD + kFFFD + kFFFD);  // > U+10FFFF
  EXPECT_EQ(repair_utf8("\xE0\x80\x80"), kFFFD + kFFFD + kFFFD);
  EXPECT_EQ(repair_utf8("\xF0\x90\x80" "A"), kFFFD + "A");
  EXPECT_EQ(repair_utf8("\xF0\x9F\x99"), kFFFD);
  EXPECT_EQ(repair_utf8("a\x80" "b"), "a" + kFFFD + "b");
  EXPECT_EQ(repair_utf8("\xF5\x80"), kFFFD + kFFFD);
  EXPECT_EQ(repair_utf8("\xE2\x82\xAC\xE2"), "\xE2\x82\xAC" + kFFFD);
}

TEST(Utf8Repair, HoldsASplitCharacterUntilItCompletes) {
  Utf8Repair r;
  EXPECT_EQ(r.push("x\xF0"), "x");
  EXPECT_TRUE(r.holding());
  EXPECT_EQ(r.push("\x9F"), "");
  EXPECT_EQ(r.push("\x99"), "");
  EXPECT_EQ(r.push("\x82!"), "\xF0\x9F\x99\x82!");
  EXPECT_FALSE(r.holding());
  EXPECT_EQ(r.finish(), "");
}

TEST(Utf8Repair, BrokenSplitIsReplacedWhenTheNextByteCannotContinueIt) {
  Utf8Repair r;
  EXPECT_EQ(r.push("\xE2\x82"), "");
  EXPECT_EQ(r.push("A"), kFFFD + "A");
  EXPECT_EQ(r.push("\xE2"), "");
  EXPECT_EQ(r.finish(), kFFFD);
  EXPECT_EQ(r.push("ok"), "ok");  // reusable after finish
}

TEST(Utf8Repair, ByteAtATimeEqualsOneShot) {
  const std::string input = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x99\x82\xE2\x82" "b\xFF\xED\xA0\x80\xF0\x9F";
  Utf8Repair r;
  std::string pieces;
  for (char c : input) pieces += r.push(std::string_view(&c, 1));
  pieces += r.finish();
  EXPECT_EQ(pieces, repair_utf8(input));
}

}  // namespace
}  // namespace voxtral
