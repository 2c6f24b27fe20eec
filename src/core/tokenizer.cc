#include "core/tokenizer.h"

#include <array>

#include "core/error.h"
#include "core/json_util.h"
#include "core/mapped_file.h"

namespace voxtral {

namespace {

// Decodes standard base64 (with '=' padding); returns false on any invalid input.
bool decode_base64(std::string_view text, std::string& out) {
  static const std::array<int, 256> table = [] {
    std::array<int, 256> t{};
    t.fill(-1);
    const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(alphabet[i])] = i;
    return t;
  }();
  out.clear();
  if (text.size() % 4 != 0) return false;
  std::uint32_t bits = 0;
  int nbits = 0;
  std::size_t padding = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '=') {
      if (i + 2 < text.size()) return false;  // padding only in the last two places
      ++padding;
      continue;
    }
    if (padding > 0) return false;
    const int v = table[static_cast<unsigned char>(c)];
    if (v < 0) return false;
    bits = (bits << 6) | static_cast<std::uint32_t>(v);
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      out.push_back(static_cast<char>((bits >> nbits) & 0xFF));
    }
  }
  return padding <= 2;
}

TokenizerAudioConfig read_audio(const JsonObject& audio) {
  TokenizerAudioConfig a;
  a.sampling_rate = static_cast<int>(audio.integer_in("sampling_rate", 1000, 192000));
  a.frame_rate = audio.number("frame_rate");
  const JsonObject enc = audio.object("audio_encoding_config");
  a.num_mel_bins = static_cast<int>(enc.integer_in("num_mel_bins", 1, 1024));
  a.hop_length = static_cast<int>(enc.integer_in("hop_length", 1, 1 << 16));
  a.window_size = static_cast<int>(enc.integer_in("window_size", 2, 1 << 16));
  a.transcription_delay_ms = static_cast<int>(audio.integer_in("transcription_delay_ms", 0, 60000));
  a.n_left_pad_tokens = static_cast<int>(audio.integer_in("streaming_n_left_pad_tokens", 0, 1 << 16));
  a.look_ahead_ms = audio.number_or("streaming_look_ahead_ms", 0);
  a.look_back_ms = audio.number_or("streaming_look_back_ms", 0);
  return a;
}

}  // namespace

Tokenizer Tokenizer::load(const std::filesystem::path& tekken_json) {
  return from_json_text(read_text_file(tekken_json), tekken_json.string());
}

Tokenizer Tokenizer::from_json_text(std::string_view text, const std::string& source) {
  const Json doc = parse_json(text, source);
  const JsonObject top(doc, source);
  Tokenizer t;
  t.source_ = source;

  const JsonObject config = top.object("config");
  t.num_special_ = static_cast<int>(config.integer_in("default_num_special_tokens", 1, 1 << 20));
  t.vocab_size_ = static_cast<int>(config.integer_in("default_vocab_size", t.num_special_, 1 << 24));

  const Json& vocab = top.value("vocab");
  if (!vocab.is_array()) top.fail_at("vocab", cat("expected an array, found ", json_type_name(vocab)));
  const std::size_t needed = static_cast<std::size_t>(t.vocab_size_ - t.num_special_);
  if (vocab.size() < needed) {
    top.fail_at("vocab", cat("has ", vocab.size(), " entries but default_vocab_size ", t.vocab_size_,
                             " minus ", t.num_special_, " special tokens needs ", needed));
  }
  // Entries past default_vocab_size are unused by the model: not even decoded.
  t.token_bytes_.resize(needed);
  for (std::size_t rank = 0; rank < needed; ++rank) {
    // Fast path without building key paths; the slow path only runs to word an error.
    const Json& entry = vocab[rank];
    const Json* bytes = nullptr;
    if (entry.is_object()) {
      auto it = entry.find("token_bytes");
      if (it != entry.end() && it->is_string()) bytes = &*it;
      auto r = entry.find("rank");
      if (r != entry.end() && !(r->is_number_integer() && r->get<std::int64_t>() == static_cast<std::int64_t>(rank))) {
        bytes = nullptr;
      }
    }
    if (bytes == nullptr || !decode_base64(bytes->get_ref<const std::string&>(), t.token_bytes_[rank])) {
      const JsonObject checked(entry, source, cat("vocab[", rank, "]"));
      if (checked.has("rank") && checked.integer("rank") != static_cast<std::int64_t>(rank)) {
        checked.fail_at("rank", cat("is ", checked.integer("rank"), ", expected ", rank,
                                    " (entries must be in rank order)"));
      }
      checked.string("token_bytes");  // throws when missing or not a string
      checked.fail_at("token_bytes", "is not valid base64");
    }
  }

  const Json& specials = top.value("special_tokens");
  if (!specials.is_array()) top.fail_at("special_tokens", cat("expected an array, found ", json_type_name(specials)));
  t.special_names_.assign(static_cast<std::size_t>(t.num_special_), "");
  for (std::size_t i = 0; i < specials.size(); ++i) {
    const JsonObject entry(specials[i], source, cat("special_tokens[", i, "]"));
    const auto rank = entry.integer_in("rank", 0, t.num_special_ - 1);
    std::string name = entry.string("token_str");
    auto& slot = t.special_names_[static_cast<std::size_t>(rank)];
    if (!slot.empty()) entry.fail_at("rank", cat(rank, " appears twice"));
    if (!t.special_ids_.emplace(name, static_cast<int>(rank)).second) {
      entry.fail_at("token_str", cat("\"", name, "\" appears twice"));
    }
    slot = std::move(name);
  }
  auto required = [&](const char* name) {
    auto id = t.find_special(name);
    if (!id) top.fail_at("special_tokens", cat("has no \"", name, "\" token"));
    return *id;
  };
  t.bos_ = required("<s>");
  t.eos_ = required("</s>");
  t.streaming_pad_ = required("[STREAMING_PAD]");
  t.streaming_word_ = t.find_special("[STREAMING_WORD]").value_or(-1);

  if (!top.has("audio")) {
    top.fail_at("audio", "missing: this tokenizer has no audio settings (not a Voxtral Realtime tekken.json?)");
  }
  t.audio_ = read_audio(top.object("audio"));
  return t;
}

std::string_view Tokenizer::token_bytes(int id) const {
  if (id < num_special_ || id >= vocab_size_) return {};
  return token_bytes_[static_cast<std::size_t>(id - num_special_)];
}

std::string_view Tokenizer::special_name(int id) const {
  if (id < 0 || id >= num_special_) return {};
  return special_names_[static_cast<std::size_t>(id)];
}

std::optional<int> Tokenizer::find_special(std::string_view name) const {
  auto it = special_ids_.find(std::string(name));
  if (it == special_ids_.end()) return std::nullopt;
  return it->second;
}

std::string Tokenizer::decode(std::span<const int> ids) const {
  std::string bytes;
  for (int id : ids) bytes.append(token_bytes(id));
  return repair_utf8(bytes);
}

std::string TextStream::push(int id) { return repair_.push(tokenizer_->token_bytes(id)); }

}  // namespace voxtral
