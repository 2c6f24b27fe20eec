#include "runtime/transcriber.h"

namespace voxtral {

Transcript transcribe(Model& model, std::span<const float> samples, StreamOptions options,
                      const std::function<void(const TextPiece&)>& on_piece) {
  options.expected_samples = static_cast<std::int64_t>(samples.size());
  options.encoder_chunk = kOfflineEncoderChunk;
  Stream stream(model, options);
  Transcript result;
  auto collect = [&] {
    for (auto& piece : stream.take_pieces()) {
      result.text += piece.text;
      if (on_piece) on_piece(piece);
      result.pieces.push_back(std::move(piece));
    }
  };
  // Feeding a chunk at a time lets text come out while the rest is still encoding; pieces
  // that end where a whole chunk is ready keep the encoder on full chunks (fuller products).
  for (std::size_t at = 0; at < samples.size();) {
    const auto piece = std::min(static_cast<std::size_t>(stream.input_until_next_chunk()), samples.size() - at);
    stream.feed(samples.subspan(at, piece));
    at += piece;
    collect();
  }
  stream.finish();
  collect();
  result.ids = stream.ids();
  result.stats = stream.stats();
  return result;
}

}  // namespace voxtral
