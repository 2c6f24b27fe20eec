#include "server/upload_audio.h"

#include <cstring>
#include <memory>

#include "core/audio.h"
#include "core/error.h"
#include "core/float_peak.h"

#if VOXTRAL_HAVE_LIBAV
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
}
#endif

namespace voxtral {

namespace {

// Appends `block` to `out`, growing `out` only within the budget (when there is one).
void append_within_budget(std::vector<float>& out, const std::vector<float>& block, MemoryBudget::Hold* budget,
                          const std::string& source) {
  const std::size_t needed = out.size() + block.size();
  if (needed > out.capacity()) {
    std::size_t capacity = std::max(needed, out.capacity() * 2);
    if (budget != nullptr) {
      auto covered = [&](std::size_t samples) {
        const std::size_t bytes = samples * sizeof(float);
        return bytes <= budget->bytes() || budget->grow(bytes - budget->bytes());
      };
      if (!covered(capacity)) {
        if (!covered(needed)) {
          throw UploadOverBudget(cat(source, ": the decoded audio does not fit in the server's memory budget now (",
                                     needed * sizeof(float) >> 20, " MiB); try again shortly"));
        }
        capacity = needed;
      }
    }
    out.reserve(capacity);
  }
  out.insert(out.end(), block.begin(), block.end());
}

[[noreturn]] void fail_too_long(const std::string& source, double max_seconds) {
  fail(source, cat("the audio is longer than this server's limit of ", max_seconds, " s (--max-audio-seconds)"));
}

#if VOXTRAL_HAVE_LIBAV
std::string av_message(int code) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, text, sizeof text);
  return text;
}

// libav reads the upload from memory through these callbacks.
struct MemoryInput {
  std::string_view bytes;
  std::size_t at = 0;
};

int read_memory(void* opaque, std::uint8_t* buffer, int size) {
  auto* in = static_cast<MemoryInput*>(opaque);
  const std::size_t n = std::min(static_cast<std::size_t>(size), in->bytes.size() - in->at);
  if (n == 0) return AVERROR_EOF;
  std::memcpy(buffer, in->bytes.data() + in->at, n);
  in->at += n;
  return static_cast<int>(n);
}

std::int64_t seek_memory(void* opaque, std::int64_t offset, int whence) {
  auto* in = static_cast<MemoryInput*>(opaque);
  const auto size = static_cast<std::int64_t>(in->bytes.size());
  if (whence == AVSEEK_SIZE) return size;
  std::int64_t target = offset;
  switch (whence & ~AVSEEK_FORCE) {
    case SEEK_SET: break;
    case SEEK_CUR: target += static_cast<std::int64_t>(in->at); break;
    case SEEK_END: target += size; break;
    default: return -1;
  }
  if (target < 0 || target > size) return -1;
  in->at = static_cast<std::size_t>(target);
  return target;
}

struct FormatDeleter {
  void operator()(AVFormatContext* f) const { avformat_close_input(&f); }
};
struct IoDeleter {
  void operator()(AVIOContext* io) const {
    av_freep(&io->buffer);
    avio_context_free(&io);
  }
};
struct CodecDeleter {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct SwrDeleter {
  void operator()(SwrContext* s) const { swr_free(&s); }
};
struct FrameDeleter {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct PacketDeleter {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};

// Any container and codec libav knows, to mono float at the source rate, then our soxr
// resampler (the same one WAV input goes through).
std::vector<float> decode_with_libav(std::string_view bytes, const std::string& source, int target_rate,
                                     double max_seconds, MemoryBudget::Hold* budget) {
  av_log_set_level(AV_LOG_QUIET);
  MemoryInput input{bytes};
  constexpr int kIoBuffer = 1 << 16;
  auto* io_buffer = static_cast<unsigned char*>(av_malloc(kIoBuffer));
  if (io_buffer == nullptr) fail(source, "out of memory");
  std::unique_ptr<AVIOContext, IoDeleter> io(
      avio_alloc_context(io_buffer, kIoBuffer, 0, &input, read_memory, nullptr, seek_memory));
  if (!io) {
    av_free(io_buffer);
    fail(source, "out of memory");
  }
  AVFormatContext* raw_format = avformat_alloc_context();
  raw_format->pb = io.get();
  raw_format->flags |= AVFMT_FLAG_CUSTOM_IO;
  if (const int rc = avformat_open_input(&raw_format, nullptr, nullptr, nullptr); rc < 0) {
    fail(source, cat("not a readable audio file (WAV, MP3, Ogg/Opus/Vorbis, FLAC, M4A/AAC, WebM): ", av_message(rc)));
  }
  std::unique_ptr<AVFormatContext, FormatDeleter> format(raw_format);
  if (const int rc = avformat_find_stream_info(format.get(), nullptr); rc < 0) {
    fail(source, cat("cannot read the stream information: ", av_message(rc)));
  }
  const AVCodec* codec = nullptr;
  const int stream_index = av_find_best_stream(format.get(), AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
  if (stream_index < 0 || codec == nullptr) fail(source, "holds no audio stream that can be decoded");
  const AVStream* stream = format->streams[stream_index];
  std::unique_ptr<AVCodecContext, CodecDeleter> decoder(avcodec_alloc_context3(codec));
  avcodec_parameters_to_context(decoder.get(), stream->codecpar);
  if (const int rc = avcodec_open2(decoder.get(), codec, nullptr); rc < 0) {
    fail(source, cat("cannot open the ", codec->name, " decoder: ", av_message(rc)));
  }
  const int source_rate = decoder->sample_rate;
  const AVCodecID id = decoder->codec_id;
  const bool float_pcm = id == AV_CODEC_ID_PCM_F32LE || id == AV_CODEC_ID_PCM_F32BE || id == AV_CODEC_ID_PCM_F64LE ||
                         id == AV_CODEC_ID_PCM_F64BE || id == AV_CODEC_ID_PCM_F16LE || id == AV_CODEC_ID_PCM_F24LE;
  if (source_rate <= 0) fail(source, "the audio stream has no sample rate");

  AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
  AVChannelLayout in_layout;
  if (decoder->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC || decoder->ch_layout.nb_channels == 0) {
    av_channel_layout_default(&in_layout, std::max(1, decoder->ch_layout.nb_channels));
  } else {
    av_channel_layout_copy(&in_layout, &decoder->ch_layout);
  }
  SwrContext* raw_swr = nullptr;
  const int swr_rc = swr_alloc_set_opts2(&raw_swr, &mono, AV_SAMPLE_FMT_FLT, source_rate, &in_layout,
                                         decoder->sample_fmt, source_rate, 0, nullptr);
  av_channel_layout_uninit(&in_layout);
  std::unique_ptr<SwrContext, SwrDeleter> swr(raw_swr);
  if (swr_rc < 0 || swr_init(swr.get()) < 0) fail(source, "cannot convert this audio to mono");

  Resampler resampler(source_rate, target_rate);
  std::vector<float> out, mono_block, block;
  const auto max_source_samples = static_cast<std::int64_t>(max_seconds * source_rate);
  std::int64_t source_samples = 0;
  std::unique_ptr<AVPacket, PacketDeleter> packet(av_packet_alloc());
  std::unique_ptr<AVFrame, FrameDeleter> frame(av_frame_alloc());
  auto drain = [&]() {
    for (;;) {
      const int rc = avcodec_receive_frame(decoder.get(), frame.get());
      if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return;
      if (rc < 0) fail(source, cat("the audio data is corrupt: ", av_message(rc)));
      mono_block.resize(static_cast<std::size_t>(frame->nb_samples) + 256);
      auto* dst = reinterpret_cast<std::uint8_t*>(mono_block.data());
      const int n = swr_convert(swr.get(), &dst, static_cast<int>(mono_block.size()),
                                const_cast<const std::uint8_t**>(frame->extended_data), frame->nb_samples);
      av_frame_unref(frame.get());
      if (n < 0) fail(source, "cannot convert this audio to mono");
      if (float_pcm) {  // coded audio comes out at full scale; stored floats may be integer values
        if (auto peak = excessive_peak(std::span<const float>(mono_block.data(), static_cast<std::size_t>(n)))) {
          peak->index += static_cast<std::size_t>(source_samples);
          fail(source, cat(codec->name, " audio: ", excessive_peak_problem(*peak, "frame")));
        }
      }
      source_samples += n;
      if (max_seconds > 0 && source_samples > max_source_samples) fail_too_long(source, max_seconds);
      block.clear();
      resampler.push(std::span(mono_block.data(), static_cast<std::size_t>(n)), block);
      append_within_budget(out, block, budget, source);
    }
  };
  while (av_read_frame(format.get(), packet.get()) >= 0) {
    if (packet->stream_index == stream_index) {
      const int rc = avcodec_send_packet(decoder.get(), packet.get());
      av_packet_unref(packet.get());
      if (rc < 0 && rc != AVERROR(EAGAIN)) fail(source, cat("the audio data is corrupt: ", av_message(rc)));
      drain();
    } else {
      av_packet_unref(packet.get());
    }
  }
  avcodec_send_packet(decoder.get(), nullptr);
  drain();
  block.clear();
  resampler.finish(block);
  append_within_budget(out, block, budget, source);
  if (out.empty()) fail(source, "holds no audio samples");
  return out;
}

#else
std::vector<float> decode_with_libav(std::string_view bytes, const std::string& source, int, double,
                                     MemoryBudget::Hold*) {
  const std::string kind = sniff_compressed_format(std::as_bytes(std::span(bytes.data(), std::min<std::size_t>(bytes.size(), 64))));
  fail(source, cat(kind.empty() ? "not a WAV file" : kind + " audio",
                   ": this server was built without libav (VOXTRAL_LIBAV=OFF) and reads WAV only"));
}
#endif

bool is_wav(std::string_view bytes) {
  return bytes.size() >= 12 && (bytes.substr(0, 4) == "RIFF" || bytes.substr(0, 4) == "RF64") &&
         bytes.substr(8, 4) == "WAVE";
}

}  // namespace

std::vector<float> decode_upload(std::string_view bytes, const std::string& source, int target_rate,
                                 double max_seconds, MemoryBudget::Hold* budget) {
  if (bytes.empty()) fail(source, "the file is empty");
  if (!is_wav(bytes)) return decode_with_libav(bytes, source, target_rate, max_seconds, budget);
  AudioDecoder decoder(source, target_rate, AudioFormat::Wav);
  const double max_samples = max_seconds * target_rate;
  std::vector<float> out, block;
  constexpr std::size_t kPiece = 16 << 10;  // bytes decoded at a time: the limits apply as it goes
  for (std::size_t at = 0;; at += kPiece) {
    block.clear();
    const bool last = at >= bytes.size();
    if (!last) {
      const std::string_view piece = bytes.substr(at, kPiece);
      decoder.push(std::as_bytes(std::span(piece.data(), piece.size())), block);
    } else {
      decoder.finish(block);
    }
    if (max_seconds > 0 && static_cast<double>(out.size() + block.size()) > max_samples) {
      fail_too_long(source, max_seconds);
    }
    append_within_budget(out, block, budget, source);
    if (last) break;
  }
  return out;
}

}  // namespace voxtral
