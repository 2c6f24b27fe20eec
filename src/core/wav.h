// WAV (RIFF/WAVE and RF64) parsing, incremental: bytes can arrive in pieces of any size,
// as from a pipe. Supports PCM 8/16/24/32-bit, IEEE float 32/64 and
// WAVE_FORMAT_EXTENSIBLE of those; any number of channels, averaged to mono (or one channel
// when they cancel: core/channel_mix.h); extra chunks before and after the data; odd chunk
// sizes (padded to even; a missing pad byte is tolerated when the next chunk id shows it);
// and the unknown
// data sizes (0 or 0xFFFFFFFF, and sox's 0x7FFFF000) that ffmpeg, sox and others write to
// a pipe, meaning "to the end". Float samples are passed on as they are (not clipped).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/channel_mix.h"

namespace voxtral {

enum class SampleEncoding { PcmU8, PcmS16, PcmS24, PcmS32, Float32, Float64 };
std::string_view encoding_name(SampleEncoding encoding);  // "16-bit PCM", "32-bit float", ...

struct WavFormat {
  int channels = 0;
  int sample_rate = 0;
  SampleEncoding encoding = SampleEncoding::PcmS16;
  int block_align = 0;  // bytes per frame (all channels)
};

class WavReader {
 public:
  explicit WavReader(std::string source, WarningHandler on_warning = {});

  // Decodes what it can of the new bytes and appends mono samples in [-1, 1] to `mono`.
  // Throws Error naming the source on a malformed or unsupported header; errors in the
  // chunk walk name the chunk and its byte offset.
  void push(std::span<const std::byte> bytes, std::vector<float>& mono);
  // End of input: appends what the channel mixer held back, then throws if the header is
  // incomplete or the data chunk is shorter than its stated size. A trailing partial
  // frame is dropped.
  void finish(std::vector<float>& mono);

  bool has_format() const { return state_ >= State::Data; }
  const WavFormat& format() const { return format_; }
  std::uint64_t frames_decoded() const { return frames_decoded_; }

 private:
  // PadOrChunkHeader: after an odd-sized chunk, the pad byte and the next chunk header.
  enum class State { RiffHeader, ChunkHeader, PadOrChunkHeader, FmtBody, Ds64Body, SkipChunk, Data, AfterData };
  void consume(std::span<const std::byte> bytes, std::vector<float>& mono);
  bool buffer_up_to(std::size_t wanted, std::span<const std::byte>& input);  // advances position_
  std::string where() const;  // "the 'LIST' chunk at offset 36"
  void parse_riff_header(std::span<const std::byte> header);
  void parse_fmt(std::span<const std::byte> body);
  void parse_ds64(std::span<const std::byte> body);
  void start_chunk(std::string_view id, std::uint32_t size, std::uint64_t offset);
  void start_data_chunk(std::uint32_t size);
  void skip_then_next_chunk(std::uint64_t bytes);
  void decode_frames(std::span<const std::byte> bytes, std::vector<float>& mono);
  void decode_whole_frames(const std::byte* frames, std::size_t count, std::vector<float>& mono);
  void decode_frame_block(const std::byte* frames, std::size_t count, std::vector<float>& mono);

  std::string source_;
  WarningHandler on_warning_;
  std::optional<ChannelMixer> mixer_;  // for more than one channel
  std::vector<double> interleaved_;    // scratch: decoded frames before mixing
  State state_ = State::RiffHeader;
  std::vector<std::byte> buffer_;  // partial header, chunk body or frame
  WavFormat format_;
  bool have_fmt_ = false;
  bool rf64_ = false;
  std::uint32_t riff_size_ = 0;
  std::uint64_t ds64_data_size_ = 0;
  std::uint64_t chunk_remaining_ = 0;  // bytes left in the current chunk body
  std::uint32_t chunk_size_ = 0;
  std::string chunk_id_;               // the chunk being read, or last read
  std::uint64_t chunk_offset_ = 0;     // its header's offset in the input
  std::uint64_t position_ = 0;         // offset of the next byte the parser takes
  bool chunk_padded_ = false;          // odd chunk: one pad byte follows
  bool data_unbounded_ = false;        // data runs to the end of input
  std::uint64_t frames_decoded_ = 0;
  std::uint64_t input_bytes_ = 0;     // everything pushed so far, for error messages
  std::uint64_t data_declared_ = 0;   // data chunk size from the header (when bounded)
  std::uint64_t data_received_ = 0;   // data chunk bytes seen so far
};

}  // namespace voxtral
