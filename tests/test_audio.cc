// AudioDecoder, container sniffing and the file/stream entry points.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/audio.h"
#include "core/error.h"
#include "test_util.h"
#include "wav_builder.h"

namespace voxtral::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string sniff(const std::string& head) { return sniff_compressed_format(as_bytes(head)); }

// A string literal with its embedded NUL bytes.
template <std::size_t N>
std::string lit(const char (&chars)[N]) {
  return std::string(chars, N - 1);
}

std::string bytes_of(std::initializer_list<int> values) {
  std::string out;
  for (int v : values) out += static_cast<char>(v);
  return out;
}

TEST(SniffCompressedFormat, KnownContainers) {
  EXPECT_EQ(sniff(lit("ID3\x04\x00\x00\x00\x00\x00\x00\x00\x00")), "MP3");
  EXPECT_EQ(sniff(bytes_of({0xFF, 0xFB, 0x90, 0x64, 0, 0})), "MP3");  // MPEG-1 layer III, 128 kb/s
  EXPECT_EQ(sniff(bytes_of({0xFF, 0xF3, 0x84, 0xC4})), "MP3");        // MPEG-2 layer III
  EXPECT_EQ(sniff(bytes_of({0xFF, 0xFD, 0x94, 0x00})), "MP2");
  EXPECT_EQ(sniff(bytes_of({0xFF, 0xF1, 0x50, 0x80})), "AAC (ADTS)");
  EXPECT_EQ(sniff(lit("OggS\x00\x02")), "Ogg");
  EXPECT_EQ(sniff(lit("fLaC\x00\x00\x00\x22")), "FLAC");
  EXPECT_EQ(sniff(std::string("\x00\x00\x00\x20" "ftypM4A ", 12)), "MP4/M4A");
  EXPECT_EQ(sniff(lit("\x1A\x45\xDF\xA3\x9F")), "WebM/Matroska");
  EXPECT_EQ(sniff(lit("FORM\x00\x01\x00\x00" "AIFF")), "AIFF");
  EXPECT_EQ(sniff(lit("FORM\x00\x01\x00\x00" "AIFC")), "AIFF");
  EXPECT_EQ(sniff(lit("#!AMR\n")), "AMR");
  EXPECT_EQ(sniff(lit("caff\x00\x01")), "CAF");
}

TEST(SniffCompressedFormat, OtherBytesAreNotRecognised) {
  EXPECT_EQ(sniff(lit("")), "");
  EXPECT_EQ(sniff(lit("RIFF\x24\x00\x00\x00WAVE")), "");
  EXPECT_EQ(sniff(lit("FORM\x00\x01\x00\x00" "ILBM")), "");
  // Raw s16le that starts with the samples -1, 0 or -1, -1 or -2, 5 is not MPEG audio.
  EXPECT_EQ(sniff(bytes_of({0xFF, 0xFF, 0x00, 0x00})), "");
  EXPECT_EQ(sniff(bytes_of({0xFF, 0xFF, 0xFF, 0xFF})), "");
  EXPECT_EQ(sniff(bytes_of({0xFE, 0xFF, 0x05, 0x00})), "");
  EXPECT_EQ(sniff(bytes_of({0xFF, 0xFB, 0xF0, 0x00})), "");  // bitrate index 15 is invalid
}

// Decodes `bytes` pushed in pieces of `piece` bytes; fills in what was detected.
struct Decoded {
  std::vector<float> samples;
  AudioFormat format = AudioFormat::Auto;
  int rate = 0;
  int channels = 0;
};

Decoded decode(const std::string& bytes, AudioFormat format = AudioFormat::Auto, int target_rate = 16000,
               std::size_t piece = 1 << 30) {
  AudioDecoder decoder("input", target_rate, format);
  Decoded result;
  const auto all = as_bytes(bytes);
  for (std::size_t offset = 0; offset < all.size(); offset += piece) {
    decoder.push(all.subspan(offset, std::min(piece, all.size() - offset)), result.samples);
  }
  decoder.finish(result.samples);
  result.format = decoder.detected_format();
  result.rate = decoder.input_rate();
  result.channels = decoder.input_channels();
  return result;
}

std::string decode_error(const std::string& bytes, AudioFormat format = AudioFormat::Auto) {
  try {
    decode(bytes, format);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(AudioDecoder, WavAtTargetRatePassesThroughExactly) {
  const std::string wav = simple_wav(fmt_body(kPcm, 2, 16000, 16), s16_bytes({16384, 16384, -100, -300}));
  for (AudioFormat format : {AudioFormat::Auto, AudioFormat::Wav}) {
    for (std::size_t piece : {1, 5, 1000}) {
      const Decoded d = decode(wav, format, 16000, piece);
      EXPECT_EQ(d.samples, (std::vector<float>{0.5f, -200 / 32768.0f}));
      EXPECT_EQ(d.format, AudioFormat::Wav);
      EXPECT_EQ(d.rate, 16000);
      EXPECT_EQ(d.channels, 2);
    }
  }
}

TEST(AudioDecoder, WavIsResampledToTheTarget) {
  const std::string wav = simple_wav(fmt_body(kPcm, 1, 8000, 16), s16_bytes(std::vector<std::int16_t>(8000, 1000)));
  const Decoded d = decode(wav);
  EXPECT_EQ(d.rate, 8000);
  EXPECT_NEAR(static_cast<double>(d.samples.size()), 16000.0, 1.0);
  EXPECT_NEAR(d.samples[8000], 1000 / 32768.0, 1e-4);  // a constant stays constant
}

TEST(AudioDecoder, StreamStartingWithRiffIsWav) {
  const std::string wav = simple_wav(fmt_body(kPcm, 1, 16000, 16), s16_bytes({8192, 8192}));
  AudioDecoder decoder("stdin", 16000);
  std::vector<float> out;
  decoder.push(as_bytes(wav).first(11), out);
  EXPECT_EQ(decoder.detected_format(), AudioFormat::Auto);  // too early to tell
  decoder.push(as_bytes(wav).subspan(11), out);
  EXPECT_EQ(decoder.detected_format(), AudioFormat::Wav);
  decoder.finish(out);
  EXPECT_EQ(out, (std::vector<float>{0.25f, 0.25f}));
}

TEST(AudioDecoder, HeaderlessStreamIsRawS16le) {
  const std::string raw = s16_bytes({100, -32768, 16384, 0, 1, 2, 3, -1, 32767});
  const std::vector<float> expected{100 / 32768.0f, -1.0f, 0.5f, 0.0f, 1 / 32768.0f, 2 / 32768.0f,
                                    3 / 32768.0f,   -1 / 32768.0f, 32767 / 32768.0f};
  for (std::size_t piece : {1, 3, 12, 100}) {
    const Decoded d = decode(raw, AudioFormat::Auto, 16000, piece);
    EXPECT_EQ(d.samples, expected) << "pieces of " << piece;
    EXPECT_EQ(d.format, AudioFormat::RawS16le);
    EXPECT_EQ(d.rate, 16000);
    EXPECT_EQ(d.channels, 1);
  }
}

TEST(AudioDecoder, ShortRawStreamIsDecidedAtFinish) {
  const Decoded d = decode(s16_bytes({16384, -16384}) + "\x01");  // odd trailing byte dropped
  EXPECT_EQ(d.samples, (std::vector<float>{0.5f, -0.5f}));
  EXPECT_EQ(d.format, AudioFormat::RawS16le);
}

TEST(AudioDecoder, RawFormatTakesEvenRiffBytesAsSamples) {
  const Decoded d = decode("RIFF", AudioFormat::RawS16le);
  EXPECT_EQ(d.samples.size(), 2u);
  EXPECT_EQ(d.format, AudioFormat::RawS16le);
}

TEST(AudioDecoder, CompressedContainersAreNamed) {
  const std::string mp3 = "ID3\x04" + std::string(20, '\0');
  EXPECT_THAT(decode_error(mp3), AllOf(StartsWith("input: "), HasSubstr("MP3"), HasSubstr("ffmpeg")));
  EXPECT_THAT(decode_error(mp3, AudioFormat::Wav), AllOf(HasSubstr("not a WAV file"), HasSubstr("MP3")));
  EXPECT_THAT(decode_error("OggS" + std::string(20, '\0'), AudioFormat::Wav),
              AllOf(HasSubstr("not a WAV file"), HasSubstr("Ogg")));
  EXPECT_THAT(decode_error("fLaC" + std::string(20, '\0'), AudioFormat::Wav),
              AllOf(HasSubstr("not a WAV file"), HasSubstr("FLAC")));
  EXPECT_THAT(decode_error("fLaC" + std::string(20, '\0')), HasSubstr("FLAC"));
  EXPECT_THAT(decode_error("OggS"), HasSubstr("Ogg"));  // short input: decided at finish
}

TEST(AudioDecoder, WavRequiredButAbsent) {
  EXPECT_EQ(decode_error("hello, this is text\n", AudioFormat::Wav), "input: not a WAV file (no RIFF header)");
}

TEST(AudioDecoder, RifxIsUnsupported) {
  const std::string rifx = riff(chunk("fmt ", fmt_body(kPcm, 1, 16000, 16)), std::nullopt, "RIFX");
  EXPECT_THAT(decode_error(rifx), HasSubstr("RIFX"));
  EXPECT_THAT(decode_error(rifx, AudioFormat::Wav), HasSubstr("RIFX"));
}

TEST(AudioDecoder, NoSamples) {
  EXPECT_THAT(decode_error(""), StartsWith("input: no audio samples"));
  EXPECT_THAT(decode_error("", AudioFormat::Wav), StartsWith("input: no audio samples"));
  EXPECT_THAT(decode_error("\x01"), StartsWith("input: no audio samples"));
  const std::string empty_wav = simple_wav(fmt_body(kPcm, 1, 16000, 16), "");
  EXPECT_EQ(decode_error(empty_wav), "input: no audio samples");
}

TEST(AudioDecoder, TruncationIsReportedAtFinish) {
  const std::string wav = simple_wav(fmt_body(kPcm, 1, 16000, 16), s16_bytes({1, 2, 3, 4}));
  EXPECT_THAT(decode_error(wav.substr(0, 30)), HasSubstr("truncated WAV header"));
  EXPECT_THAT(decode_error(wav.substr(0, 2)), HasSubstr("truncated WAV header"));  // "RI"
  EXPECT_THAT(decode_error(wav.substr(0, 48)), HasSubstr("truncated data: header declares 8 bytes, file has 4"));
}

TEST(AudioDecoder, InvalidTargetRate) {
  EXPECT_THROW(AudioDecoder("x", 0), Error);
}

// --- files and streams ------------------------------------------------------------------

// The int16 samples of a canonical 44-byte-header mono WAV, read without the code under test.
std::vector<std::int16_t> read_canonical_s16(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  EXPECT_EQ(bytes.substr(36, 4), "data");
  std::vector<std::int16_t> samples((bytes.size() - 44) / 2);
  std::memcpy(samples.data(), bytes.data() + 44, samples.size() * 2);  // the host is little-endian
  return samples;
}

TEST(LoadAudioFile, SpeechFixtureIsExact) {
  const auto path = fixture("audio/speech_short.wav");
  const auto expected = read_canonical_s16(path);
  ASSERT_EQ(expected.size(), 61138u);
  const std::vector<float> samples = load_audio_file(path, 16000);
  ASSERT_EQ(samples.size(), 61138u);
  for (std::size_t i = 0; i < samples.size(); ++i) {
    ASSERT_EQ(samples[i], expected[i] / 32768.0f) << "sample " << i;
  }
}

TEST(LoadAudioFile, Errors) {
  TempDir dir;
  const auto empty = dir.write("empty.wav", "");
  EXPECT_EQ([&] {
    try {
      load_audio_file(empty, 16000);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  }(), empty.string() + ": empty file");
  const auto mp3 = dir.write("song.wav", "ID3\x03" + std::string(100, '\0'));
  EXPECT_THROW(
      {
        try {
          load_audio_file(mp3, 16000);
        } catch (const Error& e) {
          EXPECT_THAT(e.what(), AllOf(StartsWith(mp3.string() + ": not a WAV file"), HasSubstr("MP3")));
          throw;
        }
      },
      Error);
  EXPECT_THROW(load_audio_file(dir.path() / "missing.wav", 16000), Error);
}

TEST(LoadAudioFile, RawFormat) {
  TempDir dir;
  const auto path = dir.write("a.raw", s16_bytes({-16384, 8192}));
  EXPECT_EQ(load_audio_file(path, 16000, AudioFormat::RawS16le), (std::vector<float>{-0.5f, 0.25f}));
}

TEST(ReadAudioStream, MatchesTheWholeFileDecode) {
  // Longer than one 64 KiB read, at a rate that needs resampling.
  std::vector<std::int16_t> samples(50000);
  for (std::size_t i = 0; i < samples.size(); ++i) samples[i] = static_cast<std::int16_t>((i * 7919) % 20000 - 10000);
  TempDir dir;
  const auto path = dir.write("long.wav", simple_wav(fmt_body(kPcm, 1, 22050, 16), s16_bytes(samples)));
  const std::vector<float> from_file = load_audio_file(path, 16000);
  std::FILE* stream = std::fopen(path.c_str(), "rb");
  ASSERT_NE(stream, nullptr);
  const std::vector<float> from_stream = read_audio_stream(stream, "stdin", 16000);
  std::fclose(stream);
  ASSERT_EQ(from_stream.size(), from_file.size());
  for (std::size_t i = 0; i < from_file.size(); ++i) ASSERT_NEAR(from_stream[i], from_file[i], 1e-6) << i;
}

TEST(ReadAudioStream, RawAndErrorsNameTheSource) {
  TempDir dir;
  const auto path = dir.write("raw", s16_bytes({16384}));
  std::FILE* stream = std::fopen(path.c_str(), "rb");
  ASSERT_NE(stream, nullptr);
  EXPECT_EQ(read_audio_stream(stream, "stdin", 16000), std::vector<float>{0.5f});
  std::fclose(stream);

  const auto ogg = dir.write("ogg", "OggS" + std::string(50, '\0'));
  stream = std::fopen(ogg.c_str(), "rb");
  ASSERT_NE(stream, nullptr);
  try {
    read_audio_stream(stream, "stdin", 16000);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(StartsWith("stdin: "), HasSubstr("Ogg")));
  }
  std::fclose(stream);
}

}  // namespace
}  // namespace voxtral::testing
