#include "test_util.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <stdexcept>

#include "core/tensor_values.h"

namespace voxtral::testing {

std::filesystem::path fixture(const std::string& relative) {
  // A copy of the tests run elsewhere (e.g. on the GPU machine) points here at its fixtures.
  const char* moved = std::getenv("VOXTRAL_FIXTURES_DIR");
  return std::filesystem::path(moved != nullptr ? moved : VOXTRAL_FIXTURES_DIR) / relative;
}

std::filesystem::path source_path(const std::string& relative) {
  return (fixture("") / ".." / "..").lexically_normal() / relative;
}

TempDir::TempDir() {
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto candidate = std::filesystem::temp_directory_path() /
                     ("voxtral-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    if (std::filesystem::create_directory(candidate)) {
      path_ = candidate;
      return;
    }
  }
  throw std::runtime_error("cannot create a temporary directory");
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::filesystem::path TempDir::write(const std::string& name, const std::string& bytes) const {
  auto p = path_ / name;
  std::filesystem::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + p.string());
  return p;
}

std::vector<float> to_floats(const TensorView& t) { return read_floats(t); }

std::vector<FixtureClip> fixture_clips() {
  std::vector<FixtureClip> clips;
  for (const char* model : {"tiny-a", "tiny-b"}) {
    std::ifstream in(fixture(std::string(model) + ".json"));
    const auto summary = nlohmann::json::parse(in);  // (a temporary would die before the loop)
    for (const auto& c : summary["clips"]) clips.push_back({model, c});
  }
  return clips;
}

ModelOptions test_model_options() {
  ModelOptions o;
  const char* backend = std::getenv("VOXTRAL_TEST_BACKEND");
  o.backend = backend != nullptr ? backend : "cpu";
  o.precision = "exact";
  o.kv_cache = "f32";
  return o;
}

std::vector<std::int64_t> to_ints(const TensorView& t) {
  std::vector<std::int64_t> out(static_cast<std::size_t>(t.numel()));
  if (t.dtype == DType::I32) {
    auto v = t.as<std::int32_t>(DType::I32);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = v[i];
  } else if (t.dtype == DType::I64) {
    auto v = t.as<std::int64_t>(DType::I64);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = v[i];
  } else {
    throw std::runtime_error("to_ints: unsupported dtype for " + t.name);
  }
  return out;
}

std::string safetensors_bytes(const std::string& header_json, const std::string& data) {
  std::string out(8, '\0');
  std::uint64_t n = header_json.size();
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header_json + data;
}

double relative_error(const std::vector<float>& got, const std::vector<float>& want) {
  EXPECT_EQ(got.size(), want.size());
  double worst = 0, largest = 0;
  for (float x : want) largest = std::max(largest, static_cast<double>(std::fabs(x)));
  for (std::size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    worst = std::max(worst, static_cast<double>(std::fabs(got[i] - want[i])));
  }
  return worst / std::max(largest, 1e-30);
}

std::vector<float> download(Backend& backend, const Tensor& t) {
  std::vector<float> host(static_cast<std::size_t>(t.numel()));
  backend.copy_to_host(t, host.data());
  return host;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace voxtral::testing
