// Uploaded audio to 16 kHz mono: WAV through the engine's own reader, every other format
// (MP3, Ogg Opus/Vorbis, FLAC, M4A/AAC, WebM) through libavformat/libavcodec, then the same
// soxr resampler. Errors are voxtral::Error naming `source` (the upload's file name).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace voxtral {

// max_seconds > 0: fails as soon as the decoded audio passes that length.
std::vector<float> decode_upload(std::string_view bytes, const std::string& source, int target_rate,
                                 double max_seconds);

}  // namespace voxtral
