// Uploaded audio to 16 kHz mono: WAV through the engine's own reader, every other format
// (MP3, Ogg Opus/Vorbis, FLAC, M4A/AAC, WebM) through libavformat/libavcodec, then the same
// soxr resampler. Errors are voxtral::Error naming `source` (the upload's file name).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "server/memory_budget.h"

namespace voxtral {

// The decoded audio would pass the server's memory budget (the server answers 503).
class UploadOverBudget : public Error {
 public:
  using Error::Error;
};

// Decodes block by block; fails as soon as the decoded audio passes `max_seconds` (> 0),
// before decoding the rest. With `budget`, every byte of the returned samples is taken
// from it (the hold then owns them) before it is allocated; UploadOverBudget when refused.
std::vector<float> decode_upload(std::string_view bytes, const std::string& source, int target_rate,
                                 double max_seconds, MemoryBudget::Hold* budget = nullptr);

}  // namespace voxtral
