// The epilogues of a CPU product (backend.h's Epilogue), applied to one output value.
#pragma once

#include <cmath>
#include <cstdint>

#include "backend/backend.h"

namespace voxtral::cpu {

inline float gelu(float v) { return 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f)); }

inline void finish_value(float value, const float* bias, std::int64_t j, Epilogue epilogue, float* out) {
  if (bias != nullptr) value += bias[j];
  switch (epilogue) {
    case Epilogue::Store: *out = value; break;
    case Epilogue::Gelu: *out = gelu(value); break;
    case Epilogue::Add: *out += value; break;
  }
}

}  // namespace voxtral::cpu
