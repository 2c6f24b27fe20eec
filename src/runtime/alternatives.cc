#include "runtime/alternatives.h"

#include <algorithm>
#include <cmath>

#include "core/utf8.h"

namespace voxtral {

std::vector<Alternative> top_alternatives(std::span<const float> logits, int chosen, const Tokenizer& tokenizer,
                                          int count, double cutoff) {
  const float top = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float v : logits) sum += std::exp(static_cast<double>(v - top));
  std::vector<int> order;
  order.reserve(logits.size());
  for (int id = 0; id < static_cast<int>(logits.size()); ++id) {
    if (id == chosen || !tokenizer.is_special(id)) order.push_back(id);
  }
  const auto logit = [&](int id) { return logits[static_cast<std::size_t>(id)]; };
  const auto k = std::min<std::size_t>(static_cast<std::size_t>(count) + 1, order.size());
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                    [&](int a, int b) { return logit(a) > logit(b); });
  std::vector<Alternative> out;
  for (std::size_t i = 0; i < k; ++i) {
    const int id = order[i];
    const auto p = static_cast<float>(std::exp(static_cast<double>(logit(id) - top)) / sum);
    if (p < cutoff && id != chosen) continue;
    const std::string bytes = tokenizer.is_special(id) ? std::string() : repair_utf8(tokenizer.token_bytes(id));
    out.push_back({id, bytes, p});
  }
  return out;
}

}  // namespace voxtral
