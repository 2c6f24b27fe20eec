#include "model/word_times.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace voxtral {

void WordTimer::add_frame(double center_seconds, double mean_square) {
  const double db = 10.0 * std::log10(std::max(mean_square, 1e-30));
  frames_.push_back({center_seconds, static_cast<float>(std::max(db, kDigitalSilenceDb))});
  while (!frames_.empty() && frames_.front().time < center_seconds - history_) frames_.pop_front();
}

WordSpan WordTimer::next_word(double end) {
  const double lo = std::min(std::max(previous_end_, end - kMaxWordSeconds), end);
  previous_end_ = std::max(previous_end_, end);
  double start = std::max(lo, end - kMinWordSeconds);  // without evidence: the shortest word

  auto at_or_after = [&](double t) {
    return static_cast<std::size_t>(std::partition_point(frames_.begin(), frames_.end(),
                                                         [t](const Frame& f) { return f.time < t - 1e-9; }) -
                                    frames_.begin());
  };
  const std::size_t first = at_or_after(lo), stop = at_or_after(end);
  if (first < stop) {
    // The q-quantile of the energies in [from, end + lookahead) that are above `above` dB
    // (digital silence, and frames far below the speech, tell nothing of the noise under it).
    auto quantile = [&](double from, double q, double above) {
      std::vector<float> db;
      for (std::size_t i = at_or_after(from); i < at_or_after(end + lookahead_); ++i) {
        if (frames_[i].db > above) db.push_back(frames_[i].db);
      }
      if (db.empty()) return above;
      auto nth = db.begin() + static_cast<std::ptrdiff_t>(q * static_cast<double>(db.size() - 1));
      std::nth_element(db.begin(), nth, db.end());
      return static_cast<double>(*nth);
    };
    // Every level is relative to the speech's own (no absolute level a gain could cross).
    const double peak = quantile(end - kPeakSeconds, kPeakQuantile, kDigitalSilenceDb);
    const double floor = quantile(lo - kFloorSeconds, kFloorQuantile, peak - kQuietDb);
    const double threshold = floor + std::max(kMarginDb, kRangeFraction * (peak - floor));
    auto loud = [&](std::size_t i) { return frames_[i].db > threshold; };

    std::size_t i = first;
    bool abut = false;
    if (loud(i)) {  // still the previous word's sound, or words that run together
      std::size_t j = i;
      while (j < stop && frames_[j].time < lo + kTailSeconds && loud(j)) ++j;
      if (j < stop && frames_[j].time < lo + kTailSeconds) {
        i = j;
      } else {
        abut = true;
        start = lo;
      }
    }
    if (!abut) {
      for (; i < stop; ++i) {
        if (loud(i) && (i + 1 >= stop || loud(i + 1))) {
          start = std::max(lo, frames_[i].time - hop_);
          break;
        }
      }
    }
  }
  return {end - kMinWordSeconds > lo ? std::min(start, end - kMinWordSeconds) : lo, end};
}

}  // namespace voxtral
