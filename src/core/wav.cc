#include "core/wav.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/float_peak.h"

namespace voxtral {

namespace {

constexpr std::size_t kRiffHeaderBytes = 12;  // "RIFF", size, "WAVE"
constexpr std::size_t kChunkHeaderBytes = 8;  // id, size
constexpr std::size_t kMinFmtBytes = 16;
constexpr std::size_t kExtensibleFmtBytes = 40;
constexpr std::size_t kMinDs64Bytes = 28;  // riff size, data size, sample count, table length
// A fmt or ds64 body is buffered whole; a corrupt size must not turn into a huge allocation.
constexpr std::uint32_t kMaxBufferedChunkBytes = 64 * 1024;
// Samples (all channels) decoded per step before mixing to mono.
constexpr std::size_t kDecodeBlockSamples = 1 << 16;
constexpr int kMaxChannels = 1024;
// Below 1 kHz nothing of speech survives, and extreme upsampling ratios would make the
// resampler produce enormous outputs from tiny inputs.
constexpr int kMinSampleRate = 1000;
constexpr int kMaxSampleRate = 1'000'000;

constexpr std::uint32_t kUnknownSize = 0xFFFFFFFF;
// sox writes this data size (and 0x7FFFF024 as the RIFF size) when it cannot seek back to
// patch the header, i.e. when writing to a pipe.
constexpr std::uint32_t kSoxPipeDataSize = 0x7FFFF000;

constexpr std::uint16_t kTagPcm = 1;
constexpr std::uint16_t kTagFloat = 3;
constexpr std::uint16_t kTagExtensible = 0xFFFE;

// Bytes 2..15 of every KSDATAFORMAT_SUBTYPE_* GUID derived from a WAVE format tag; bytes
// 0..1 hold the tag itself.
constexpr unsigned char kSubFormatGuidTail[14] = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
                                                  0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};

const char* const kConvertHint = "; convert to PCM, e.g. with ffmpeg -i in.wav -c:a pcm_s16le out.wav";

std::uint16_t le16(const std::byte* p) {
  return static_cast<std::uint16_t>(std::to_integer<unsigned>(p[0]) |
                                    (std::to_integer<unsigned>(p[1]) << 8));
}

std::uint32_t le32(const std::byte* p) {
  return static_cast<std::uint32_t>(le16(p)) | (static_cast<std::uint32_t>(le16(p + 2)) << 16);
}

std::uint64_t le64(const std::byte* p) {
  return static_cast<std::uint64_t>(le32(p)) | (static_cast<std::uint64_t>(le32(p + 4)) << 32);
}

std::string_view as_chars(const std::byte* p, std::size_t n) {
  return {reinterpret_cast<const char*>(p), n};
}

// A chunk or form id for an error message; ids from corrupt files may be binary garbage.
std::string printable_id(std::string_view id) {
  std::string out;
  for (char c : id) out += (c >= 0x20 && c < 0x7F) ? c : '?';
  return out;
}

// A FOURCC as RIFF writers make them: printable ASCII, not starting with a space.
bool is_plausible_chunk_id(std::string_view id) {
  if (id.size() != 4 || id[0] == ' ') return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return c >= 0x20 && c < 0x7F; });
}

// Chunk ids of the WAV specifications and of common writers (Broadcast WAV, ID3, iXML, ...).
bool is_known_chunk_id(std::string_view id) {
  static constexpr std::string_view kKnown[] = {"fmt ", "data", "LIST", "fact", "JUNK", "junk", "PAD ", "FLLR",
                                                "bext", "cue ", "smpl", "inst", "id3 ", "ID3 ", "iXML", "ds64",
                                                "acid", "cart", "plst", "labl", "note", "ltxt", "DISP", "PEAK",
                                                "minf", "elm1", "regn", "umid", "levl", "afsp", "axml", "chna"};
  return std::find(std::begin(kKnown), std::end(kKnown), id) != std::end(kKnown);
}

// After an odd-sized chunk the next header follows one pad byte later (RIFF), but some
// writers leave the pad byte out. Given the nine bytes after the chunk, true when the
// header starts at the first of them rather than the second: only when the unpadded
// reading gives a known chunk id and the padded one does not, or else a plausible id
// where the padded one gives none. Anything else keeps to the specification.
bool pad_byte_missing(const std::byte* nine) {
  const std::string_view padded = as_chars(nine + 1, 4);
  const std::string_view unpadded = as_chars(nine, 4);
  if (is_known_chunk_id(padded)) return false;
  if (is_known_chunk_id(unpadded)) return true;
  return !is_plausible_chunk_id(padded) && is_plausible_chunk_id(unpadded);
}

// Moves bytes from `input` into `buffer` until it holds `wanted` bytes; true once it does.
bool fill(std::vector<std::byte>& buffer, std::size_t wanted, std::span<const std::byte>& input) {
  const std::size_t n = std::min(wanted - buffer.size(), input.size());
  buffer.insert(buffer.end(), input.begin(), input.begin() + static_cast<std::ptrdiff_t>(n));
  input = input.subspan(n);
  return buffer.size() == wanted;
}

std::string_view format_tag_name(std::uint16_t tag) {
  switch (tag) {
    case 0x0002: return "Microsoft ADPCM";
    case 0x0006: return "A-law";
    case 0x0007: return "mu-law";
    case 0x0011: return "IMA ADPCM";
    case 0x0031: return "GSM 6.10";
    case 0x0050: return "MPEG audio";
    case 0x0055: return "MP3";
    case 0x00FF: return "AAC";
    case 0x0160:
    case 0x0161:
    case 0x0162:
    case 0x0163: return "Windows Media Audio";
    case 0x2000: return "AC-3";
    case 0xF1AC: return "FLAC";
    default: return "unknown encoding";
  }
}

int bytes_per_sample(SampleEncoding encoding) {
  switch (encoding) {
    case SampleEncoding::PcmU8: return 1;
    case SampleEncoding::PcmS16: return 2;
    case SampleEncoding::PcmS24: return 3;
    case SampleEncoding::PcmS32: return 4;
    case SampleEncoding::Float32: return 4;
    case SampleEncoding::Float64: return 8;
  }
  return 0;
}

// The encoding of a PCM or float tag at the given container size, or a reason why not.
SampleEncoding encoding_for(std::string_view source, std::uint16_t tag, int bits,
                            std::string_view described_tag) {
  if (tag == kTagPcm) {
    switch (bits) {
      case 8: return SampleEncoding::PcmU8;
      case 16: return SampleEncoding::PcmS16;
      case 24: return SampleEncoding::PcmS24;
      case 32: return SampleEncoding::PcmS32;
      default: break;
    }
    fail(source, cat("unsupported WAV encoding: ", bits, "-bit PCM (", described_tag, ")", kConvertHint));
  }
  if (tag == kTagFloat) {
    if (bits == 32) return SampleEncoding::Float32;
    if (bits == 64) return SampleEncoding::Float64;
    fail(source, cat("unsupported WAV encoding: ", bits, "-bit float (", described_tag, ")", kConvertHint));
  }
  fail(source, cat("unsupported WAV encoding: ", format_tag_name(tag), " (", described_tag, ")", kConvertHint));
}

// Each reader turns one sample at `p` into a value in [-1, 1].
struct ReadU8 {
  double operator()(const std::byte* p) const {
    return (std::to_integer<int>(p[0]) - 128) / 128.0;
  }
};
struct ReadS16 {
  double operator()(const std::byte* p) const {
    return static_cast<std::int16_t>(le16(p)) / 32768.0;
  }
};
struct ReadS24 {
  double operator()(const std::byte* p) const {
    // Put the 24 bits at the top of an int32 so that the sign comes along, then scale.
    const std::uint32_t top = (std::to_integer<std::uint32_t>(p[0]) << 8) |
                              (std::to_integer<std::uint32_t>(p[1]) << 16) |
                              (std::to_integer<std::uint32_t>(p[2]) << 24);
    return static_cast<std::int32_t>(top) / 2147483648.0;
  }
};
struct ReadS32 {
  double operator()(const std::byte* p) const {
    return static_cast<std::int32_t>(le32(p)) / 2147483648.0;
  }
};
struct ReadF32 {
  std::string_view source;
  double operator()(const std::byte* p) const {
    float value;
    const std::uint32_t bits = le32(p);
    std::memcpy(&value, &bits, sizeof value);
    if (!std::isfinite(value)) fail(source, "WAV data contains NaN or infinite samples");
    return value;
  }
};
struct ReadF64 {
  std::string_view source;
  double operator()(const std::byte* p) const {
    double value;
    const std::uint64_t bits = le64(p);
    std::memcpy(&value, &bits, sizeof value);
    if (!std::isfinite(value)) fail(source, "WAV data contains NaN or infinite samples");
    return value;
  }
};

// Decodes `count` frames of `channels` samples each into interleaved values.
template <typename ReadSample>
void decode_interleaved(const std::byte* frames, std::size_t count, int channels, int sample_bytes,
                        const ReadSample& read, std::vector<double>& out) {
  const std::size_t samples = count * static_cast<std::size_t>(channels);
  out.resize(samples);
  for (std::size_t i = 0; i < samples; ++i) out[i] = read(frames + i * static_cast<std::size_t>(sample_bytes));
}

}  // namespace

std::string_view encoding_name(SampleEncoding encoding) {
  switch (encoding) {
    case SampleEncoding::PcmU8: return "8-bit unsigned PCM";
    case SampleEncoding::PcmS16: return "16-bit PCM";
    case SampleEncoding::PcmS24: return "24-bit PCM";
    case SampleEncoding::PcmS32: return "32-bit PCM";
    case SampleEncoding::Float32: return "32-bit float";
    case SampleEncoding::Float64: return "64-bit float";
  }
  return "unknown";
}

WavReader::WavReader(std::string source, WarningHandler on_warning)
    : source_(std::move(source)), on_warning_(std::move(on_warning)) {}

void WavReader::push(std::span<const std::byte> bytes, std::vector<float>& mono) {
  input_bytes_ += bytes.size();
  consume(bytes, mono);
}

bool WavReader::buffer_up_to(std::size_t wanted, std::span<const std::byte>& input) {
  const std::size_t before = input.size();
  const bool full = fill(buffer_, wanted, input);
  position_ += before - input.size();
  return full;
}

std::string WavReader::where() const {
  return cat("the '", printable_id(chunk_id_), "' chunk at offset ", chunk_offset_);
}

void WavReader::consume(std::span<const std::byte> bytes, std::vector<float>& mono) {
  while (!bytes.empty()) {
    switch (state_) {
      case State::RiffHeader:
        if (!buffer_up_to(kRiffHeaderBytes, bytes)) return;
        parse_riff_header(buffer_);
        buffer_.clear();
        state_ = State::ChunkHeader;
        break;
      case State::ChunkHeader:
        if (!buffer_up_to(kChunkHeaderBytes, bytes)) return;
        {
          const std::string id(as_chars(buffer_.data(), 4));
          const std::uint32_t size = le32(buffer_.data() + 4);
          buffer_.clear();
          start_chunk(id, size, position_ - kChunkHeaderBytes);
        }
        break;
      case State::PadOrChunkHeader:
        if (!buffer_up_to(kChunkHeaderBytes + 1, bytes)) return;
        {
          const bool unpadded = pad_byte_missing(buffer_.data());
          const std::byte* header = buffer_.data() + (unpadded ? 0 : 1);
          const std::string id(as_chars(header, 4));
          const std::uint32_t size = le32(header + 4);
          const std::byte first_body_byte = buffer_.back();
          buffer_.clear();
          if (unpadded) position_ -= 1;  // the ninth byte is the new chunk's first
          start_chunk(id, size, position_ - kChunkHeaderBytes);
          if (unpadded) consume(std::span(&first_body_byte, 1), mono);
        }
        break;
      case State::FmtBody:
      case State::Ds64Body:
        if (!buffer_up_to(chunk_size_, bytes)) return;
        if (state_ == State::FmtBody) {
          parse_fmt(buffer_);
        } else {
          parse_ds64(buffer_);
        }
        buffer_.clear();
        skip_then_next_chunk(0);
        break;
      case State::SkipChunk: {
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_remaining_, bytes.size()));
        bytes = bytes.subspan(n);
        position_ += n;
        chunk_remaining_ -= n;
        if (chunk_remaining_ == 0) skip_then_next_chunk(0);
        break;
      }
      case State::Data: {
        const std::size_t n = data_unbounded_
                                  ? bytes.size()
                                  : static_cast<std::size_t>(std::min<std::uint64_t>(chunk_remaining_, bytes.size()));
        decode_frames(bytes.first(n), mono);
        bytes = bytes.subspan(n);
        position_ += n;
        data_received_ += n;
        if (!data_unbounded_) {
          chunk_remaining_ -= n;
          if (chunk_remaining_ == 0) {
            buffer_.clear();  // a trailing partial frame is dropped
            state_ = State::AfterData;
          }
        }
        break;
      }
      case State::AfterData:
        // Whatever follows the audio (LIST, id3 tags, even garbage) cannot change it.
        return;
    }
  }
}

void WavReader::finish(std::vector<float>& mono) {
  if (state_ == State::PadOrChunkHeader && buffer_.size() == kChunkHeaderBytes &&
      is_known_chunk_id(as_chars(buffer_.data(), 4))) {
    // The input ends with an unpadded header of an empty chunk (e.g. "data" of 0 bytes).
    const std::string id(as_chars(buffer_.data(), 4));
    const std::uint32_t size = le32(buffer_.data() + 4);
    buffer_.clear();
    start_chunk(id, size, position_ - kChunkHeaderBytes);
  }
  const std::string ends = cat("input ends after ", input_bytes_, " bytes");
  switch (state_) {
    case State::RiffHeader:
      fail(source_, cat("truncated WAV header: ", ends));
    case State::ChunkHeader:
    case State::PadOrChunkHeader:
      if (chunk_id_.empty()) fail(source_, cat("truncated WAV header: ", ends, ", before the first chunk"));
      fail(source_, cat("truncated WAV header: ", ends, ", after ", where(), ", before the data chunk"));
    case State::FmtBody:
    case State::Ds64Body:
    case State::SkipChunk: {
      std::string problem = cat("truncated WAV header: ", ends, ", inside ", where(), " (which declares ",
                                chunk_size_, " bytes), before the data chunk");
      if (!is_plausible_chunk_id(chunk_id_)) {
        problem += "; that chunk id is not text, so the chunk walk lost its place: a chunk before it is "
                   "malformed or its size is wrong";
      }
      fail(source_, problem);
    }
    case State::Data:
      if (!data_unbounded_ && chunk_remaining_ > 0) {
        fail(source_, cat("truncated data: header declares ", data_declared_, " bytes, file has ",
                          data_received_));
      }
      break;
    case State::AfterData: break;
  }
  buffer_.clear();
  if (mixer_) mixer_->finish(mono);
}

void WavReader::parse_riff_header(std::span<const std::byte> header) {
  const std::string_view magic = as_chars(header.data(), 4);
  if (magic == "RIFX") {
    fail(source_, "unsupported WAV variant: big-endian RIFX; convert to little-endian PCM, e.g. with "
                  "ffmpeg -i in.wav -c:a pcm_s16le out.wav");
  }
  // BW64 (EBU Tech 3285) is RF64 under another name.
  rf64_ = magic == "RF64" || magic == "BW64";
  if (magic != "RIFF" && !rf64_) fail(source_, "not a WAV file (no RIFF header)");
  const std::string_view form = as_chars(header.data() + 8, 4);
  if (form != "WAVE") {
    fail(source_, cat("not a WAV file (RIFF form type '", printable_id(form), "', expected 'WAVE')"));
  }
  riff_size_ = le32(header.data() + 4);
}

void WavReader::start_chunk(std::string_view id, std::uint32_t size, std::uint64_t offset) {
  chunk_id_ = id;
  chunk_offset_ = offset;
  chunk_size_ = size;
  chunk_padded_ = (size & 1) != 0;
  if (id == "fmt " || (id == "ds64" && rf64_)) {
    const std::size_t minimum = id == "fmt " ? kMinFmtBytes : kMinDs64Bytes;
    const std::string_view name = id == "fmt " ? "fmt" : "ds64";
    if (size < minimum) {
      fail(source_, cat("malformed WAV: ", name, " chunk of ", size, " bytes at offset ", offset, " is too short"));
    }
    if (size > kMaxBufferedChunkBytes) {
      fail(source_, cat("malformed WAV: ", name, " chunk of ", size, " bytes at offset ", offset,
                        " is implausibly large"));
    }
    state_ = id == "fmt " ? State::FmtBody : State::Ds64Body;
    return;
  }
  if (id == "data") {
    start_data_chunk(size);
    return;
  }
  skip_then_next_chunk(size);
}

void WavReader::start_data_chunk(std::uint32_t size) {
  if (!have_fmt_) fail(source_, "malformed WAV: data chunk before fmt chunk");
  if (rf64_ && size == kUnknownSize) {
    // The real size is in ds64; a zero there is what a writer that cannot seek leaves.
    data_unbounded_ = ds64_data_size_ == 0;
    data_declared_ = ds64_data_size_;
  } else {
    // Writers that stream to a pipe cannot patch the sizes afterwards and leave a marker.
    const bool riff_size_unknown = riff_size_ == 0 || riff_size_ == kUnknownSize;
    data_unbounded_ = size == kUnknownSize || size == kSoxPipeDataSize ||
                      (size == 0 && riff_size_unknown && !rf64_);
    data_declared_ = size;
  }
  chunk_remaining_ = data_declared_;
  buffer_.clear();
  state_ = (data_unbounded_ || chunk_remaining_ > 0) ? State::Data : State::AfterData;
}

void WavReader::skip_then_next_chunk(std::uint64_t bytes) {
  chunk_remaining_ = bytes;
  if (bytes > 0) {
    state_ = State::SkipChunk;
  } else {
    state_ = chunk_padded_ ? State::PadOrChunkHeader : State::ChunkHeader;
  }
}

void WavReader::parse_fmt(std::span<const std::byte> body) {
  const std::byte* p = body.data();
  const std::uint16_t tag = le16(p);
  const int channels = le16(p + 2);
  const std::uint32_t sample_rate = le32(p + 4);
  const int block_align = le16(p + 12);
  const int bits = le16(p + 14);

  if (channels == 0) fail(source_, "malformed WAV: fmt chunk declares 0 channels");
  if (channels > kMaxChannels) {
    fail(source_, cat("unsupported WAV: ", channels, " channels (at most ", kMaxChannels, ")"));
  }
  if (sample_rate == 0) fail(source_, "malformed WAV: fmt chunk declares a sample rate of 0 Hz");
  if (sample_rate < static_cast<std::uint32_t>(kMinSampleRate) ||
      sample_rate > static_cast<std::uint32_t>(kMaxSampleRate)) {
    fail(source_, cat("unsupported WAV: implausible sample rate ", sample_rate, " Hz (expected ",
                      kMinSampleRate, " to ", kMaxSampleRate, ")"));
  }

  SampleEncoding encoding;
  if (tag == kTagExtensible) {
    if (body.size() < kExtensibleFmtBytes) {
      fail(source_, cat("malformed WAV: WAVE_FORMAT_EXTENSIBLE fmt chunk of ", body.size(),
                        " bytes is too short (needs ", kExtensibleFmtBytes, ")"));
    }
    const int valid_bits = le16(p + 18);
    const std::byte* guid = p + 24;
    if (std::memcmp(guid + 2, kSubFormatGuidTail, sizeof kSubFormatGuidTail) != 0) {
      fail(source_, cat("unsupported WAV encoding: WAVE_FORMAT_EXTENSIBLE with an unknown SubFormat GUID",
                        kConvertHint));
    }
    const std::uint16_t sub_tag = le16(guid);
    encoding = encoding_for(source_, sub_tag, bits, cat("extensible SubFormat ", sub_tag));
    if (valid_bits > bits) {
      fail(source_, cat("malformed WAV: ", valid_bits, " valid bits per sample in a ", bits, "-bit container"));
    }
  } else {
    encoding = encoding_for(source_, tag, bits, cat("format tag ", tag));
  }

  const int expected_align = channels * bytes_per_sample(encoding);
  if (block_align != expected_align) {
    fail(source_, cat("malformed WAV: block_align is ", block_align, " but ", channels, " channels of ",
                      encoding_name(encoding), " need ", expected_align));
  }
  format_.channels = channels;
  format_.sample_rate = static_cast<int>(sample_rate);
  format_.encoding = encoding;
  format_.block_align = block_align;
  have_fmt_ = true;
}

void WavReader::parse_ds64(std::span<const std::byte> body) {
  // Only the data size matters; the RIFF size and the table of other large chunks do not
  // change how the audio is read (a non-data chunk over 4 GiB is not supported).
  ds64_data_size_ = le64(body.data() + 8);
}

void WavReader::decode_frames(std::span<const std::byte> bytes, std::vector<float>& mono) {
  const auto frame_bytes = static_cast<std::size_t>(format_.block_align);
  if (!buffer_.empty()) {  // complete the frame split across pushes first
    if (!fill(buffer_, frame_bytes, bytes)) return;
    decode_whole_frames(buffer_.data(), 1, mono);
    buffer_.clear();
  }
  const std::size_t whole = bytes.size() / frame_bytes;
  decode_whole_frames(bytes.data(), whole, mono);
  const auto rest = bytes.subspan(whole * frame_bytes);
  buffer_.assign(rest.begin(), rest.end());
}

void WavReader::decode_whole_frames(const std::byte* frames, std::size_t count, std::vector<float>& mono) {
  // In blocks, so that the decoded values of a whole file are never held at once.
  const std::size_t block = std::max<std::size_t>(1, kDecodeBlockSamples / static_cast<std::size_t>(format_.channels));
  const auto frame_bytes = static_cast<std::size_t>(format_.block_align);
  for (std::size_t done = 0; done < count; done += block) {
    decode_frame_block(frames + done * frame_bytes, std::min(block, count - done), mono);
  }
}

void WavReader::decode_frame_block(const std::byte* frames, std::size_t count, std::vector<float>& mono) {
  const int channels = format_.channels;
  const int width = bytes_per_sample(format_.encoding);
  switch (format_.encoding) {
    case SampleEncoding::PcmU8: decode_interleaved(frames, count, channels, width, ReadU8{}, interleaved_); break;
    case SampleEncoding::PcmS16: decode_interleaved(frames, count, channels, width, ReadS16{}, interleaved_); break;
    case SampleEncoding::PcmS24: decode_interleaved(frames, count, channels, width, ReadS24{}, interleaved_); break;
    case SampleEncoding::PcmS32: decode_interleaved(frames, count, channels, width, ReadS32{}, interleaved_); break;
    case SampleEncoding::Float32:
      decode_interleaved(frames, count, channels, width, ReadF32{source_}, interleaved_);
      break;
    case SampleEncoding::Float64:
      decode_interleaved(frames, count, channels, width, ReadF64{source_}, interleaved_);
      break;
  }
  if (format_.encoding == SampleEncoding::Float32 || format_.encoding == SampleEncoding::Float64) {
    if (auto peak = excessive_peak(std::span<const double>(interleaved_))) {
      peak->index = static_cast<std::size_t>(frames_decoded_) + peak->index / static_cast<std::size_t>(channels);
      fail(source_, cat(encoding_name(format_.encoding), " WAV data: ", excessive_peak_problem(*peak, "frame")));
    }
  }
  if (channels == 1) {
    mono.reserve(mono.size() + count);
    for (double v : interleaved_) mono.push_back(static_cast<float>(v));
  } else {
    if (!mixer_) mixer_.emplace(source_, channels, format_.sample_rate, on_warning_);
    mixer_->push(interleaved_.data(), count, mono);
  }
  frames_decoded_ += count;
}

}  // namespace voxtral
