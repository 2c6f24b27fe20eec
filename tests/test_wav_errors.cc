// WavReader on malformed and unsupported input: every error is an Error that names the
// source and says what is wrong.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/wav.h"
#include "wav_builder.h"

namespace voxtral::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// The message of the Error that decoding `file` (in one push) throws, or "" if none.
std::string decode_error(const std::string& file) {
  WavReader reader("bad.wav");
  std::vector<float> mono;
  try {
    reader.push(as_bytes(file), mono);
    reader.finish(mono);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const std::string kValid = simple_wav(fmt_body(kPcm, 1, 16000, 16), s16_bytes({1, 2, 3, 4}));

TEST(WavReaderErrors, TruncatedHeaderAtEveryCut) {
  // 44-byte header: every cut before the data chunk's size is complete.
  for (std::size_t cut : {0, 1, 3, 4, 8, 11, 12, 16, 20, 30, 35, 36, 40, 43}) {
    EXPECT_THAT(decode_error(kValid.substr(0, cut)),
                AllOf(StartsWith("bad.wav: "), HasSubstr("truncated WAV header")))
        << "cut at " << cut;
  }
}

TEST(WavReaderErrors, TruncatedHeaderInsideSkippedChunk) {
  const std::string file = riff(chunk("fmt ", fmt_body(kPcm, 1, 16000, 16)) + chunk("LIST", std::string(100, 'a')));
  EXPECT_THAT(decode_error(file.substr(0, file.size() - 10)), HasSubstr("truncated WAV header"));
  EXPECT_THAT(decode_error(file), HasSubstr("truncated WAV header"));  // no data chunk at all
}

TEST(WavReaderErrors, ChunkWalkErrorsNameTheChunkAndOffset) {
  // RIFF header (12) + fmt chunk (8 + 16): the LIST chunk starts at offset 36.
  const std::string file = riff(chunk("fmt ", fmt_body(kPcm, 1, 16000, 16)) + chunk("LIST", std::string(100, 'a')));
  EXPECT_EQ(decode_error(file.substr(0, file.size() - 10)),
            "bad.wav: truncated WAV header: input ends after 134 bytes, inside the 'LIST' chunk at offset 36 "
            "(which declares 100 bytes), before the data chunk");
  EXPECT_EQ(decode_error(file), "bad.wav: truncated WAV header: input ends after 144 bytes, after the 'LIST' chunk "
                                "at offset 36, before the data chunk");
  EXPECT_EQ(decode_error(riff("")), "bad.wav: truncated WAV header: input ends after 12 bytes, before the first chunk");
  EXPECT_THAT(decode_error(riff(chunk("fmt ", std::string(8, '\0')))),
              HasSubstr("fmt chunk of 8 bytes at offset 12 is too short"));
}

TEST(WavReaderErrors, AChunkWalkThatLostItsPlaceSaysSo) {
  // An odd chunk without its pad byte, followed by a chunk whose id is not known either way:
  // the specification's reading is kept, and the garbage id that results is pointed out.
  const std::string file = riff(chunk("fmt ", fmt_body(kPcm, 1, 16000, 16)) + std::string("LIST") + le32(3) +
                                "abc" + std::string("\x01zzz", 4) + le32(1000) + std::string(20, 'q'));
  const std::string error = decode_error(file);
  EXPECT_THAT(error, HasSubstr("inside the 'zzz?' chunk at offset 48"));
  EXPECT_THAT(error, HasSubstr("that chunk id is not text, so the chunk walk lost its place"));
}

TEST(WavReaderErrors, TruncatedData) {
  const std::string file = riff(chunk("fmt ", fmt_body(kPcm, 1, 16000, 16)) + chunk("data", "", 100)) +
                           std::string(40, '\0');
  EXPECT_EQ(decode_error(file), "bad.wav: truncated data: header declares 100 bytes, file has 40");
}

TEST(WavReaderErrors, TruncatedRf64Data) {
  const std::string ds64 = le64(0) + le64(1000) + le64(500) + le32(0);
  const std::string file = riff(chunk("ds64", ds64) + chunk("fmt ", fmt_body(kPcm, 1, 16000, 16)) +
                                    chunk("data", std::string(10, '\0'), 0xFFFFFFFF),
                                0xFFFFFFFF, "RF64");
  EXPECT_THAT(decode_error(file), HasSubstr("truncated data: header declares 1000 bytes, file has 10"));
}

TEST(WavReaderErrors, ZeroChannels) {
  EXPECT_THAT(decode_error(simple_wav(fmt_body(kPcm, 0, 16000, 16, 2), "")), HasSubstr("0 channels"));
}

TEST(WavReaderErrors, TooManyChannels) {
  EXPECT_THAT(decode_error(simple_wav(fmt_body(kPcm, 1025, 16000, 16), "")), HasSubstr("1025 channels"));
}

TEST(WavReaderErrors, ZeroAndAbsurdSampleRates) {
  EXPECT_THAT(decode_error(simple_wav(fmt_body(kPcm, 1, 0, 16), "")), HasSubstr("sample rate of 0 Hz"));
  EXPECT_THAT(decode_error(simple_wav(fmt_body(kPcm, 1, 2'000'000, 16), "")),
              HasSubstr("implausible sample rate 2000000 Hz"));
  EXPECT_THAT(decode_error(simple_wav(fmt_body(kPcm, 1, 10, 16), "")), HasSubstr("implausible sample rate 10 Hz"));
}

TEST(WavReaderErrors, UnsupportedEncodingsAreNamed) {
  EXPECT_EQ(decode_error(simple_wav(fmt_body(6, 1, 8000, 8), "")),
            "bad.wav: unsupported WAV encoding: A-law (format tag 6); convert to PCM, e.g. with "
            "ffmpeg -i in.wav -c:a pcm_s16le out.wav");
  EXPECT_THAT(decode_error(simple_wav(fmt_body(7, 1, 8000, 8), "")),
              AllOf(HasSubstr("mu-law (format tag 7)"), HasSubstr("ffmpeg")));
  EXPECT_THAT(decode_error(simple_wav(fmt_body(2, 1, 8000, 4, 256), "")), HasSubstr("ADPCM (format tag 2)"));
  EXPECT_THAT(decode_error(simple_wav(fmt_body(0x55, 2, 44100, 0, 1), "")), HasSubstr("MP3 (format tag 85)"));
  EXPECT_THAT(decode_error(simple_wav(fmt_body(0x1234, 1, 8000, 16), "")),
              HasSubstr("unknown encoding (format tag 4660)"));
}

TEST(WavReaderErrors, UnsupportedBitDepths) {
  EXPECT_THAT(decode_error(simple_wav(fmt_body(kPcm, 1, 16000, 12, 2), "")),
              HasSubstr("unsupported WAV encoding: 12-bit PCM (format tag 1)"));
  EXPECT_THAT(decode_error(simple_wav(fmt_body(kFloat, 1, 16000, 16), "")),
              HasSubstr("unsupported WAV encoding: 16-bit float (format tag 3)"));
}

TEST(WavReaderErrors, ExtensibleProblems) {
  EXPECT_THAT(decode_error(simple_wav(extensible_fmt_body(6, 1, 8000, 8, 8), "")),
              HasSubstr("A-law (extensible SubFormat 6)"));
  // PCM's tag with the wrong rest of the GUID is some other vendor's format.
  std::string other_guid("\x00\x00\x00\x00\x10\x00\x80\x00\x00\xAA\x00\x38\x9B\x72", 14);
  EXPECT_THAT(decode_error(simple_wav(extensible_fmt_body(kPcm, 1, 8000, 16, 16, other_guid), "")),
              HasSubstr("unknown SubFormat GUID"));
  EXPECT_THAT(decode_error(simple_wav(extensible_fmt_body(kPcm, 1, 8000, 16, 20), "")),
              HasSubstr("20 valid bits per sample in a 16-bit container"));
  EXPECT_THAT(decode_error(simple_wav(fmt_body(0xFFFE, 1, 8000, 16) + le16(0), "")),
              HasSubstr("WAVE_FORMAT_EXTENSIBLE fmt chunk of 18 bytes is too short"));
}

TEST(WavReaderErrors, BlockAlignMismatch) {
  EXPECT_EQ(decode_error(simple_wav(fmt_body(kPcm, 2, 16000, 16, 2), "")),
            "bad.wav: malformed WAV: block_align is 2 but 2 channels of 16-bit PCM need 4");
}

TEST(WavReaderErrors, DataBeforeFmt) {
  const std::string file = riff(chunk("data", s16_bytes({1})) + chunk("fmt ", fmt_body(kPcm, 1, 16000, 16)));
  EXPECT_EQ(decode_error(file), "bad.wav: malformed WAV: data chunk before fmt chunk");
}

TEST(WavReaderErrors, FmtChunkSizes) {
  EXPECT_THAT(decode_error(riff(chunk("fmt ", fmt_body(kPcm, 1, 16000, 16).substr(0, 14)))),
              HasSubstr("fmt chunk of 14 bytes at offset 12 is too short"));
  // A corrupt huge size fails at once, before any body is buffered.
  EXPECT_THAT(decode_error(riff("fmt " + le32(0x7FFFFFFF))), HasSubstr("implausibly large"));
}

TEST(WavReaderErrors, Rifx) {
  EXPECT_THAT(decode_error(riff(chunk("fmt ", fmt_body(kPcm, 1, 16000, 16)), std::nullopt, "RIFX")),
              AllOf(StartsWith("bad.wav: "), HasSubstr("big-endian RIFX"), HasSubstr("unsupported")));
}

TEST(WavReaderErrors, NotWav) {
  EXPECT_EQ(decode_error(std::string("OggS\0\0\0\0\0\0\0\0\0\0\0\0", 16)), "bad.wav: not a WAV file (no RIFF header)");
  EXPECT_EQ(decode_error(std::string("RIFF\x10\0\0\0AVI LIST", 16)),
            "bad.wav: not a WAV file (RIFF form type 'AVI ', expected 'WAVE')");
}

TEST(WavReaderErrors, NonFiniteFloatSamples) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_THAT(decode_error(simple_wav(fmt_body(kFloat, 1, 16000, 32), f32_bytes({0.5f, nan}))),
              AllOf(StartsWith("bad.wav: "), HasSubstr("contains NaN or infinite samples")));
  EXPECT_THAT(decode_error(simple_wav(fmt_body(kFloat, 2, 16000, 32), f32_bytes({0.5f, -inf}))),
              HasSubstr("contains NaN or infinite samples"));
  EXPECT_THAT(decode_error(simple_wav(fmt_body(kFloat, 1, 16000, 64), f64_bytes({std::nan("")}))),
              HasSubstr("contains NaN or infinite samples"));
}

TEST(WavReaderErrors, IntegerValuesStoredAsFloatsAreRefusedNamingTheFrame) {
  // int16 values written as 32-bit floats (a tool that forgot to divide): noise if read as is.
  std::vector<float> samples(3000, 0.0f);
  samples[2500] = 1200.0f;
  samples[2700] = -32767.0f;
  EXPECT_EQ(decode_error(simple_wav(fmt_body(kFloat, 1, 16000, 32), f32_bytes(samples))),
            "bad.wav: 32-bit float WAV data: samples must be in [-1, 1] (float full scale), got a peak of 32767 at "
            "frame 2700; if they are 16-bit PCM values, divide them by 32768");
  // Stereo: the frame, not the interleaved index.
  EXPECT_THAT(decode_error(simple_wav(fmt_body(kFloat, 2, 16000, 64), f64_bytes({0.5, 0.5, 0.1, 8000000.0}))),
              HasSubstr("64-bit float WAV data: samples must be in [-1, 1] (float full scale), got a peak of 8e+06 at "
                        "frame 1; if they are 24-bit PCM values, divide them by 8388608"));
}

TEST(WavReaderErrors, ErrorsAreThrownWhilePushingOneByteAtATime) {
  const std::string file = simple_wav(fmt_body(6, 1, 8000, 8), "abc");
  WavReader reader("pipe");
  std::vector<float> mono;
  std::string message;
  try {
    for (char c : file) reader.push(as_bytes(std::string(1, c)), mono);
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_THAT(message, StartsWith("pipe: unsupported WAV encoding: A-law"));
}

}  // namespace
}  // namespace voxtral::testing
