// Checks of numeric command-line options shared by the front ends (voxtral, voxtral-server).
// CLI11's ranges let NaN through (every comparison with NaN is false) and print infinity as
// hundreds of digits; these refuse both in a few words.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include <CLI/CLI.hpp>

#include "core/error.h"

namespace voxtral {

// "" when `value` is a finite number in [lo, hi], else why not.
inline std::string finite_number_error(const std::string& value, double lo, double hi) {
  double d = 0;
  if (!CLI::detail::lexical_cast(value, d)) return "\"" + value + "\" is not a number";
  if (!std::isfinite(d)) return "\"" + value + "\" is not a finite number";
  if (d < lo || d > hi) return cat(value, " is out of range (", lo, " to ", hi, ")");
  return "";
}

// A finite number in [lo, hi], the range written the short way.
inline CLI::Validator finite_range(double lo, double hi) {
  return CLI::Validator([lo, hi](std::string& value) { return finite_number_error(value, lo, hi); },
                        cat("NUMBER in [", lo, " - ", hi, "]"));
}

// "" when `value` is a whole number in [lo, hi], else why not: "1.5" is not whole (CLI11's
// range check would call it out of range), and "abc" is not a number.
inline std::string whole_number_error(const std::string& value, std::int64_t lo, std::int64_t hi) {
  std::int64_t n = 0;
  if (!CLI::detail::lexical_cast(value, n)) {
    double d = 0;
    if (CLI::detail::lexical_cast(value, d) && std::isfinite(d)) return value + " is not a whole number";
    return "\"" + value + "\" is not a whole number";
  }
  if (n < lo || n > hi) return cat(value, " is out of range (", lo, " to ", hi, ")");
  return "";
}

// A whole number in [lo, hi], for the integer options.
inline CLI::Validator whole_range(std::int64_t lo, std::int64_t hi) {
  return CLI::Validator([lo, hi](std::string& value) { return whole_number_error(value, lo, hi); },
                        cat("INT in [", lo, " - ", hi, "]"));
}

// Any finite number (beside another check that gives the range).
inline CLI::Validator finite_number() {
  constexpr double kMax = std::numeric_limits<double>::max();
  return CLI::Validator([](std::string& value) { return finite_number_error(value, -kMax, kMax); }, "FINITE");
}

}  // namespace voxtral
