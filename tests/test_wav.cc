// WavReader on valid input: every encoding, channel mixing, chunk layouts, streaming sizes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/wav.h"
#include "wav_builder.h"

namespace voxtral::testing {
namespace {

// Pushes `file` in pieces of `piece` bytes, then finishes.
std::vector<float> decode(const std::string& file, std::size_t piece = std::numeric_limits<std::size_t>::max(),
                          WavFormat* format = nullptr) {
  WavReader reader("test.wav");
  std::vector<float> mono;
  const auto bytes = as_bytes(file);
  piece = std::max<std::size_t>(1, std::min(piece, bytes.size()));
  for (std::size_t offset = 0; offset < bytes.size(); offset += piece) {
    reader.push(bytes.subspan(offset, std::min(piece, bytes.size() - offset)), mono);
  }
  reader.finish(mono);
  EXPECT_EQ(reader.frames_decoded(), mono.size());
  if (format != nullptr) *format = reader.format();
  return mono;
}

TEST(WavReader, Pcm16MonoScalesBy32768) {
  WavFormat format;
  const auto mono = decode(simple_wav(fmt_body(kPcm, 1, 16000, 16), s16_bytes({0, 1, -1, 16384, -32768, 32767})),
                           SIZE_MAX, &format);
  EXPECT_EQ(mono, (std::vector<float>{0.0f, 1 / 32768.0f, -1 / 32768.0f, 0.5f, -1.0f, 32767 / 32768.0f}));
  EXPECT_EQ(format.channels, 1);
  EXPECT_EQ(format.sample_rate, 16000);
  EXPECT_EQ(format.encoding, SampleEncoding::PcmS16);
  EXPECT_EQ(format.block_align, 2);
  EXPECT_EQ(encoding_name(format.encoding), "16-bit PCM");
}

TEST(WavReader, Pcm8IsUnsignedAroundHalf) {
  WavFormat format;
  const auto mono =
      decode(simple_wav(fmt_body(kPcm, 1, 8000, 8), std::string("\x00\x40\x80\xC0\xFF", 5)), SIZE_MAX, &format);
  EXPECT_EQ(mono, (std::vector<float>{-1.0f, -0.5f, 0.0f, 0.5f, 127 / 128.0f}));
  EXPECT_EQ(format.encoding, SampleEncoding::PcmU8);
}

TEST(WavReader, Pcm24ScalesBy8388608) {
  WavFormat format;
  const auto mono = decode(
      simple_wav(fmt_body(kPcm, 1, 48000, 24), s24_bytes({0, 1, -1, 4194304, -8388608, 8388607})), SIZE_MAX,
      &format);
  EXPECT_EQ(mono, (std::vector<float>{0.0f, 1 / 8388608.0f, -1 / 8388608.0f, 0.5f, -1.0f, 8388607 / 8388608.0f}));
  EXPECT_EQ(format.encoding, SampleEncoding::PcmS24);
  EXPECT_EQ(format.block_align, 3);
}

TEST(WavReader, Pcm32ScalesBy2147483648) {
  const std::int32_t min32 = std::numeric_limits<std::int32_t>::min();
  const auto mono = decode(
      simple_wav(fmt_body(kPcm, 1, 44100, 32), s32_bytes({0, min32, 0x40000000, -0x40000000, 0x7FFFFF00, 256})));
  EXPECT_EQ(mono, (std::vector<float>{0.0f, -1.0f, 0.5f, -0.5f, 1.0f - 1.0f / 8388608.0f, 1.0f / 8388608.0f}));
}

TEST(WavReader, Float32PassesThrough) {
  WavFormat format;
  const std::vector<float> samples{0.0f, 0.25f, -1.0f, 0.1f, -0.33333334f};
  EXPECT_EQ(decode(simple_wav(fmt_body(kFloat, 1, 16000, 32), f32_bytes(samples)), SIZE_MAX, &format), samples);
  EXPECT_EQ(format.encoding, SampleEncoding::Float32);
  EXPECT_EQ(encoding_name(format.encoding), "32-bit float");
}

TEST(WavReader, FloatsALittleOverFullScalePassThrough) {
  // A loud master's overs, up to 6 dB over full scale, are audio (core/float_peak.h).
  const std::vector<float> samples{1.2f, -1.5f, 2.0f, -2.0f};
  EXPECT_EQ(decode(simple_wav(fmt_body(kFloat, 1, 16000, 32), f32_bytes(samples))), samples);
}

TEST(WavReader, Float64RoundsToFloat) {
  WavFormat format;
  const std::vector<double> samples{0.125, -0.75, 0.1, 1e-10};
  const auto mono = decode(simple_wav(fmt_body(kFloat, 1, 16000, 64), f64_bytes(samples)), SIZE_MAX, &format);
  EXPECT_EQ(mono, (std::vector<float>{0.125f, -0.75f, 0.1f, 1e-10f}));
  EXPECT_EQ(format.encoding, SampleEncoding::Float64);
  EXPECT_EQ(format.block_align, 8);
}

TEST(WavReader, StereoIsAveraged) {
  WavFormat format;
  const auto mono = decode(simple_wav(fmt_body(kPcm, 2, 16000, 16), s16_bytes({1000, 3000, -32768, 32767, 8, -8})),
                           SIZE_MAX, &format);
  EXPECT_EQ(mono, (std::vector<float>{2000 / 32768.0f, -0.5f / 32768.0f, 0.0f}));
  EXPECT_EQ(format.channels, 2);
  EXPECT_EQ(format.block_align, 4);
}

TEST(WavReader, SixChannelsAreAveraged) {
  const auto mono =
      decode(simple_wav(fmt_body(kPcm, 6, 48000, 16), s16_bytes({1, 2, 3, 4, 5, 9, -600, 0, 0, 0, 0, 0})));
  EXPECT_EQ(mono, (std::vector<float>{4 / 32768.0f, -100 / 32768.0f}));
}

TEST(WavReader, StereoFloatIsAveraged) {
  const auto mono = decode(simple_wav(fmt_body(kFloat, 2, 16000, 32), f32_bytes({0.5f, 0.25f, -1.0f, 1.0f})));
  EXPECT_EQ(mono, (std::vector<float>{0.375f, 0.0f}));
}

TEST(WavReader, ManyChannels) {
  std::vector<std::int16_t> frame(1024, 0);
  frame[0] = 1024;  // averages to 1/32768
  const auto mono = decode(simple_wav(fmt_body(kPcm, 1024, 16000, 16), s16_bytes(frame)));
  EXPECT_EQ(mono, std::vector<float>{1 / 32768.0f});
}

TEST(WavReader, ExtensiblePcmUsesContainerBits) {
  // 20 valid bits in a 24-bit container: the container decides the scaling.
  WavFormat format;
  const auto mono = decode(
      simple_wav(extensible_fmt_body(kPcm, 2, 48000, 24, 20), s24_bytes({4194304, 4194304, -8388608, 0})),
      SIZE_MAX, &format);
  EXPECT_EQ(mono, (std::vector<float>{0.5f, -0.5f}));
  EXPECT_EQ(format.encoding, SampleEncoding::PcmS24);
  EXPECT_EQ(format.channels, 2);
}

TEST(WavReader, ExtensiblePcm16AndFloat) {
  EXPECT_EQ(decode(simple_wav(extensible_fmt_body(kPcm, 1, 16000, 16, 16), s16_bytes({-16384, 8192}))),
            (std::vector<float>{-0.5f, 0.25f}));
  EXPECT_EQ(decode(simple_wav(extensible_fmt_body(kFloat, 1, 16000, 32, 32), f32_bytes({0.75f, -0.125f}))),
            (std::vector<float>{0.75f, -0.125f}));
  EXPECT_EQ(decode(simple_wav(extensible_fmt_body(kFloat, 1, 16000, 64, 0), f64_bytes({0.5}))),
            (std::vector<float>{0.5f}));
}

TEST(WavReader, FmtChunkWithExtraBytes) {
  // A WAVEFORMATEX (18 bytes, cbSize 0), as many writers emit for plain PCM.
  const std::string fmt = fmt_body(kPcm, 1, 16000, 16) + le16(0);
  EXPECT_EQ(decode(riff(chunk("fmt ", fmt) + chunk("data", s16_bytes({16384})))), std::vector<float>{0.5f});
}

// Unknown chunks everywhere, one of them odd-sized with its pad byte.
std::string file_with_extra_chunks() {
  return riff(chunk("JUNK", std::string(28, '\0')) + chunk("fmt ", fmt_body(kPcm, 1, 16000, 16)) +
              chunk("fact", le32(3)) + chunk("bext", "abc") + chunk("LIST", std::string(1000, 'x')) +
              chunk("data", s16_bytes({16384, -16384, 8192})) + chunk("LIST", "INFOISFT" + le32(5) + "sox\0\0"));
}

TEST(WavReader, SkipsChunksBeforeAndAfterData) {
  EXPECT_EQ(decode(file_with_extra_chunks()), (std::vector<float>{0.5f, -0.5f, 0.25f}));
}

TEST(WavReader, OddSizedDataChunkIsPadded) {
  const std::string file =
      riff(chunk("fmt ", fmt_body(kPcm, 1, 8000, 8)) + chunk("data", "\xC0\x40\x80") + chunk("LIST", "zzzz"));
  EXPECT_EQ(file.size(), 12u + 24 + 8 + 4 + 8 + 4);  // 3 data bytes + 1 pad byte
  EXPECT_EQ(decode(file), (std::vector<float>{0.5f, -0.5f, 0.0f}));
}

TEST(WavReader, TrailingPartialFrameIsDropped) {
  // 1.5 stereo frames, declared as such.
  EXPECT_EQ(decode(simple_wav(fmt_body(kPcm, 2, 16000, 16), s16_bytes({16384, 16384, 100}))),
            std::vector<float>{0.5f});
  // And when the data runs to the end of input.
  const std::string piped = riff(chunk("fmt ", fmt_body(kPcm, 1, 16000, 16)) + chunk("data", "", 0xFFFFFFFF) +
                                 s16_bytes({8192}) + "\x01");
  EXPECT_EQ(decode(piped), std::vector<float>{0.25f});
}

std::string piped_wav(std::uint32_t riff_size, std::uint32_t data_size) {
  return riff(chunk("fmt ", fmt_body(kPcm, 1, 16000, 16)) + chunk("data", "", data_size), riff_size) +
         s16_bytes({16384, -8192, 1});
}

TEST(WavReader, UnknownDataSizeRunsToEndOfInput) {
  const std::vector<float> expected{0.5f, -0.25f, 1 / 32768.0f};
  EXPECT_EQ(decode(piped_wav(0xFFFFFFFF, 0xFFFFFFFF)), expected);  // ffmpeg to a pipe
  EXPECT_EQ(decode(piped_wav(1234, 0xFFFFFFFF)), expected);
  EXPECT_EQ(decode(piped_wav(0, 0)), expected);
  EXPECT_EQ(decode(piped_wav(0xFFFFFFFF, 0)), expected);
  EXPECT_EQ(decode(piped_wav(0x7FFFF024, 0x7FFFF000)), expected);  // sox to a pipe
}

TEST(WavReader, EmptyDataChunkStaysEmpty) {
  // The RIFF size is right, so a zero data size means no samples, not "unknown".
  const std::string file = riff(chunk("fmt ", fmt_body(kPcm, 1, 16000, 16)) + chunk("data", "")) + "garbage!";
  WavReader reader("empty.wav");
  std::vector<float> mono;
  reader.push(as_bytes(file), mono);
  reader.finish(mono);
  EXPECT_TRUE(mono.empty());
  EXPECT_TRUE(reader.has_format());
  EXPECT_EQ(reader.format().sample_rate, 16000);
}

std::string rf64_wav(std::uint64_t ds64_data_size, const std::string& data, const std::string& after) {
  const std::string ds64 = le64(0) + le64(ds64_data_size) + le64(ds64_data_size / 2) + le32(0);
  return riff(chunk("ds64", ds64) + chunk("fmt ", fmt_body(kPcm, 1, 16000, 16)) +
                  chunk("data", data, 0xFFFFFFFF) + after,
              0xFFFFFFFF, "RF64");
}

TEST(WavReader, Rf64TakesTheDataSizeFromDs64) {
  const std::string data = s16_bytes({16384, -16384, 4096});
  // The LIST chunk after the data must not be read as samples.
  EXPECT_EQ(decode(rf64_wav(data.size(), data, chunk("LIST", "INFOxxxx"))),
            (std::vector<float>{0.5f, -0.5f, 0.125f}));
}

TEST(WavReader, Rf64WithZeroDs64SizeRunsToEnd) {
  EXPECT_EQ(decode(rf64_wav(0, s16_bytes({16384, -16384}), "")), (std::vector<float>{0.5f, -0.5f}));
}

TEST(WavReader, AnyPieceSizeGivesTheSameSamples) {
  std::vector<std::string> files{
      file_with_extra_chunks(),
      simple_wav(fmt_body(kPcm, 6, 48000, 24), s24_bytes(std::vector<std::int32_t>(6 * 50, -12345))),
      simple_wav(extensible_fmt_body(kFloat, 3, 22050, 64, 64), f64_bytes(std::vector<double>(3 * 20, 0.3))),
      piped_wav(0, 0),
      rf64_wav(6, s16_bytes({1, 2, 3}), chunk("LIST", "abc")),
  };
  std::string long_file_data;
  for (int i = 0; i < 3000; ++i) long_file_data += s16_bytes({static_cast<std::int16_t>(i * 37 - 50000)});
  files.push_back(simple_wav(fmt_body(kPcm, 2, 44100, 16), long_file_data));
  for (std::size_t f = 0; f < files.size(); ++f) {
    const auto whole = decode(files[f]);
    EXPECT_FALSE(whole.empty()) << "file " << f;
    for (std::size_t piece : {1, 2, 3, 5, 7, 13, 64, 4097}) {
      EXPECT_EQ(decode(files[f], piece), whole) << "file " << f << ", pieces of " << piece;
    }
  }
}

// Stereo s16 frames from two channels of equal length.
std::string stereo_s16(const std::vector<std::int16_t>& left, const std::vector<std::int16_t>& right) {
  std::vector<std::int16_t> frames;
  for (std::size_t i = 0; i < left.size(); ++i) {
    frames.push_back(left[i]);
    frames.push_back(right[i]);
  }
  return s16_bytes(frames);
}

// `seconds` of a 440 Hz tone at 16 kHz, amplitude `amplitude` of full scale.
std::vector<std::int16_t> tone(double seconds, double amplitude) {
  std::vector<std::int16_t> out(static_cast<std::size_t>(seconds * 16000));
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<std::int16_t>(std::lround(amplitude * 32767 * std::sin(2 * M_PI * 440 * static_cast<double>(i) / 16000)));
  }
  return out;
}

std::vector<std::int16_t> scaled(const std::vector<std::int16_t>& x, double factor) {
  std::vector<std::int16_t> out;
  for (auto v : x) out.push_back(static_cast<std::int16_t>(std::lround(v * factor)));
  return out;
}

std::vector<float> as_floats(const std::vector<std::int16_t>& x) {
  std::vector<float> out;
  for (auto v : x) out.push_back(static_cast<float>(v / 32768.0));
  return out;
}

TEST(WavReader, StereoWhoseChannelsCancelUsesOneChannelAndSaysSo) {
  // A phase-flipped channel: the average is silence, the transcript would be empty.
  const auto left = tone(1.5, 0.5);
  const std::string file = simple_wav(fmt_body(kPcm, 2, 16000, 16), stereo_s16(left, scaled(left, -1)));
  std::vector<std::string> warnings;
  WavReader reader("flipped.wav", [&](const std::string& m) { warnings.push_back(m); });
  std::vector<float> mono;
  reader.push(as_bytes(file), mono);
  reader.finish(mono);
  EXPECT_EQ(mono, as_floats(left));
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0], "flipped.wav: the 2 channels cancel when averaged to mono (their average is silent; one "
                         "is likely inverted): using channel 1 alone");
  for (std::size_t piece : {1, 3, 4096, 40000}) EXPECT_EQ(decode(file, piece), as_floats(left)) << piece;
}

TEST(WavReader, CancellingChannelsAfterSilenceAreFoundAndTheLouderOneUsed) {
  // Two seconds of silence decide nothing; then channel 2 is the louder one (1.0 vs -0.9):
  // their average, 0.05, is 10*log10(0.05^2 / ((0.81 + 1) / 2 / 2)) = -23 dB from uncorrelated.
  std::vector<std::int16_t> left(32000, 0), right(32000, 0);
  const auto speech = tone(1.0, 0.5);
  const auto quieter = scaled(speech, -0.9);
  left.insert(left.end(), quieter.begin(), quieter.end());
  right.insert(right.end(), speech.begin(), speech.end());
  const std::string file = simple_wav(fmt_body(kPcm, 2, 16000, 16), stereo_s16(left, right));
  std::vector<float> expected(32000, 0.0f);
  const auto tail = as_floats(speech);
  expected.insert(expected.end(), tail.begin(), tail.end());
  std::vector<std::string> warnings;
  WavReader reader("late.wav", [&](const std::string& m) { warnings.push_back(m); });
  std::vector<float> mono;
  reader.push(as_bytes(file), mono);
  reader.finish(mono);
  EXPECT_EQ(mono, expected);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], ::testing::HasSubstr("their average is 23 dB below what uncorrelated channels give"));
  EXPECT_THAT(warnings[0], ::testing::HasSubstr("using channel 2 alone"));
}

TEST(WavReader, PartlyOpposedChannelsAreStillAveraged) {
  // The right channel at -0.5 of the left: the mix is 7 dB below uncorrelated channels,
  // far from cancelling. So are a short clip (under 0.1 s) of fully opposed channels.
  const auto left = tone(1.0, 0.5);
  const auto right = scaled(left, -0.5);
  std::vector<float> average;
  for (std::size_t i = 0; i < left.size(); ++i) average.push_back(static_cast<float>((left[i] + right[i]) / 2.0 / 32768.0));
  EXPECT_EQ(decode(simple_wav(fmt_body(kPcm, 2, 16000, 16), stereo_s16(left, right))), average);
  const auto blip = tone(0.05, 0.5);
  EXPECT_EQ(decode(simple_wav(fmt_body(kPcm, 2, 16000, 16), stereo_s16(blip, scaled(blip, -1)))),
            std::vector<float>(blip.size(), 0.0f));
}

TEST(WavReader, MissingPadByteIsToleratedWhenTheNextChunkShowsIt) {
  // An odd-sized LIST chunk whose writer left out the pad byte, before fmt and before data:
  // both following chunk ids ("fmt ", "data") are found at the unpadded offset.
  const std::string unpadded_list = std::string("LIST") + le32(5) + "INFOx";
  const std::string data = s16_bytes({16384, -16384, 8192});
  const std::string file =
      riff(unpadded_list + chunk("fmt ", fmt_body(kPcm, 1, 16000, 16)) + std::string("junk") + le32(3) + "abc" +
           chunk("data", data));
  const std::vector<float> expected{0.5f, -0.5f, 0.25f};
  for (std::size_t piece : {1, 2, 7, 8, 9, 10, 4096}) EXPECT_EQ(decode(file, piece), expected) << piece;
  // With the pad byte (the specification's layout) the same file reads the same.
  const std::string padded = riff(chunk("LIST", "INFOx") + chunk("fmt ", fmt_body(kPcm, 1, 16000, 16)) +
                                  chunk("junk", "abc") + chunk("data", data));
  EXPECT_EQ(decode(padded), expected);
}

TEST(WavReader, FormatIsKnownOnceDataStarts) {
  const std::string file = simple_wav(fmt_body(kPcm, 2, 22050, 16), s16_bytes({1, 2, 3, 4}));
  WavReader reader("x.wav");
  std::vector<float> mono;
  reader.push(as_bytes(file).first(40), mono);
  EXPECT_FALSE(reader.has_format());
  reader.push(as_bytes(file).subspan(40, 6), mono);
  EXPECT_TRUE(reader.has_format());
  EXPECT_EQ(reader.format().sample_rate, 22050);
  EXPECT_EQ(reader.format().channels, 2);
  EXPECT_EQ(reader.frames_decoded(), 0u);
  reader.push(as_bytes(file).subspan(46), mono);
  reader.finish(mono);
  EXPECT_EQ(reader.frames_decoded(), 2u);
}

}  // namespace
}  // namespace voxtral::testing
