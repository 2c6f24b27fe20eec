// tekken.json: the token byte strings, the special tokens and the audio settings that
// the transcription schedule needs. Ids below num_special() are control tokens and never
// produce text; id i >= num_special() is vocab[i - num_special()].
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/utf8.h"

namespace voxtral {

struct TokenizerAudioConfig {
  int sampling_rate = 16000;
  double frame_rate = 12.5;
  int num_mel_bins = 128;
  int hop_length = 160;
  int window_size = 400;
  int transcription_delay_ms = 480;
  int n_left_pad_tokens = 32;
  double look_ahead_ms = 0;
  double look_back_ms = 0;
};

class Tokenizer {
 public:
  static Tokenizer load(const std::filesystem::path& tekken_json);
  static Tokenizer from_json_text(std::string_view text, const std::string& source);

  int vocab_size() const { return vocab_size_; }
  int num_special() const { return num_special_; }
  bool is_special(int id) const { return id < num_special_; }
  bool is_valid(int id) const { return id >= 0 && id < vocab_size_; }
  // The bytes of a text token; empty for special or out-of-range ids.
  std::string_view token_bytes(int id) const;
  // "[STREAMING_PAD]" for special ids, "" otherwise.
  std::string_view special_name(int id) const;
  std::optional<int> find_special(std::string_view name) const;

  int bos_id() const { return bos_; }
  int eos_id() const { return eos_; }
  int streaming_pad_id() const { return streaming_pad_; }
  int streaming_word_id() const { return streaming_word_; }

  const TokenizerAudioConfig& audio() const { return audio_; }
  const std::string& source() const { return source_; }

  // Bytes of all text tokens, repaired to valid UTF-8 (specials skipped).
  std::string decode(std::span<const int> ids) const;

 private:
  std::string source_;
  int num_special_ = 0;
  int vocab_size_ = 0;
  std::vector<std::string> token_bytes_;   // index id - num_special
  std::vector<std::string> special_names_; // index id
  std::unordered_map<std::string, int> special_ids_;
  int bos_ = -1, eos_ = -1, streaming_pad_ = -1, streaming_word_ = -1;
  TokenizerAudioConfig audio_;
};

// Turns ids into text as they are produced: never emits a broken UTF-8 sequence, holds a
// partial character until the token that completes it arrives.
class TextStream {
 public:
  explicit TextStream(const Tokenizer& tokenizer) : tokenizer_(&tokenizer) {}
  std::string push(int id);
  std::string finish() { return repair_.finish(); }

 private:
  const Tokenizer* tokenizer_;
  Utf8Repair repair_;
};

}  // namespace voxtral
