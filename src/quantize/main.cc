// voxtral-quantize: writes the Q8 or Q4 version of a BF16 model directory
// (core/quantized_model.h), which every front end then loads as it is.
//   voxtral-quantize -d models/voxtral --out models/voxtral-q4 --format q4
// Exit codes: 0 written, 1 failed (nothing is left in the output but what was there), 2 bad
// command line.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <exception>

#include "core/error.h"
#include "core/quantized_model.h"

int main(int argc, char** argv) {
  CLI::App app{"Writes a Q8 or Q4 copy of a Voxtral Realtime model directory (params.json, tekken.json, "
               "consolidated.safetensors)"};
  std::string in, out, format = "q4";
  app.add_option("-d,--model", in, "The BF16 model directory")->required();
  app.add_option("-o,--out", out, "The directory to write (created; must not hold a model yet)")->required();
  app.add_option("--format", format, "q8 (1.06 bytes a weight) or q4 (0.56; the LM head stays q8), default q4")
      ->check(CLI::IsMember({"q8", "q4"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help is 0; a bad command line is 2, as in voxtral
  }
  try {
    const auto start = std::chrono::steady_clock::now();
    const auto s = voxtral::write_quantized_model(in, out, voxtral::parse_weight_format(format));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("wrote %s: %s, %.1f MB (from %.1f MB), %d tensors quantized, %d copied, in %.1f s\n", out.c_str(),
                format.c_str(), static_cast<double>(s.bytes_out) / 1e6, static_cast<double>(s.bytes_in) / 1e6,
                s.quantized, s.copied, seconds);
    if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
      std::fprintf(stderr, "voxtral-quantize: wrote %s, but the summary could not be written to standard output\n",
                   out.c_str());
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "voxtral-quantize: %s\n", e.what());
    return 1;
  }
}
