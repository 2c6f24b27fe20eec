// The bound on float audio (core/float_peak.h) and the message that names the likely cause.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "core/float_peak.h"

namespace voxtral::testing {
namespace {

TEST(FloatPeak, UpToTwoIsLoudAudio) {
  EXPECT_FALSE(excessive_peak(std::vector<float>{0.5f, -1.0f, 1.4f, 2.0f, -2.0f}));
  EXPECT_FALSE(excessive_peak(std::vector<double>{2.0, -2.0}));
  EXPECT_FALSE(excessive_peak(std::vector<float>{}));
}

TEST(FloatPeak, BeyondTwoTheFirstLargestIsNamed) {
  const auto peak = excessive_peak(std::vector<float>{0.1f, 2.5f, -300.0f, 7.0f, 300.0f});
  ASSERT_TRUE(peak);
  EXPECT_EQ(peak->magnitude, 300.0);
  EXPECT_EQ(peak->index, 2u);
  const auto just_over = excessive_peak(std::vector<double>{0.0, -2.000001});
  ASSERT_TRUE(just_over);
  EXPECT_EQ(just_over->index, 1u);
}

TEST(FloatPeak, TheMessageSaysWhichIntegerScaleTheValuesFit) {
  EXPECT_EQ(excessive_peak_problem({32767.0, 12}, "sample", "pass them as an int16 array"),
            "samples must be in [-1, 1] (float full scale), got a peak of 32767 at sample 12; if they are 16-bit "
            "PCM values, pass them as an int16 array or divide them by 32768");
  EXPECT_EQ(excessive_peak_problem({2.5, 0}, "frame"),
            "samples must be in [-1, 1] (float full scale), got a peak of 2.5 at frame 0; if they are 16-bit PCM "
            "values, divide them by 32768");
  EXPECT_THAT(excessive_peak_problem({8388607.0, 3}, "frame"),
              ::testing::EndsWith("got a peak of 8.38861e+06 at frame 3; if they are 24-bit PCM values, divide them "
                                  "by 8388608"));
  EXPECT_THAT(excessive_peak_problem({2147483647.0, 3}, "frame"),
              ::testing::EndsWith("if they are 32-bit PCM values, divide them by 2147483648"));
  EXPECT_THAT(excessive_peak_problem({1e12, 3}, "frame"), ::testing::EndsWith("; scale them into [-1, 1]"));
}

}  // namespace
}  // namespace voxtral::testing
