// The CPU backend's many-row products (cpu_gemm.cc: the encoder, the adapter, a prefill)
// with every weight storage the backend reads in place (BF16, F32, Q8, Q4), in both
// precisions, against a double-precision reference of the values the kernels multiply: the
// weights as stored (Q8/Q4: f16(d) * q), and in fast mode the weights and activations rounded
// to BF16. The shapes leave remainders in every tiling (32/16/8 activation rows, 32/12/6/4
// weight rows, AMX's 16-pair K steps) and odd input counts. A row's outputs are the same bits whatever rows share
// its call. The parity_with_*_kernels tests run these on each kernel set.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/simd.h"
#include "backend/cpu/simd_gemm.h"
#include "core/bf16.h"
#include "core/quant.h"
#include "test_util.h"

namespace voxtral {
namespace {

constexpr std::int64_t kOutputs = 37;
constexpr std::int64_t kRows = 70;

// A weight matrix in one storage, with the floats it stands for.
struct Matrix {
  WeightFormat format = WeightFormat::BF16;
  DType dtype = DType::BF16;
  std::int64_t cols = 0;
  std::vector<std::uint16_t> bf16;
  std::vector<float> f32;
  std::vector<std::uint8_t> codes;
  std::vector<std::uint16_t> scales;
  std::vector<float> values;  // [kOutputs, cols]: the exact floats of the storage
  TensorView view, scales_view;
};

Matrix make_matrix(const std::string& storage, std::int64_t cols) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Matrix m;
  m.cols = cols;
  const auto n = static_cast<std::size_t>(kOutputs * cols);
  m.values.resize(n);
  for (auto& v : m.values) v = normal(rng);
  const auto base = [](const auto& v) { return reinterpret_cast<const std::byte*>(v.data()); };
  if (storage == "bf16") {
    for (auto& v : m.values) m.bf16.push_back(float_to_bf16(v));
    for (std::size_t i = 0; i < n; ++i) m.values[i] = bf16_to_float(m.bf16[i]);
    m.view = {"w", DType::BF16, {kOutputs, cols}, base(m.bf16), n * 2};
  } else if (storage == "f32") {
    m.f32 = m.values;
    m.dtype = DType::F32;
    m.view = {"w", DType::F32, {kOutputs, cols}, base(m.f32), n * 4};
  } else {
    m.format = storage == "q8" ? WeightFormat::Q8 : WeightFormat::Q4;
    const std::size_t row_bytes = quantized_row_bytes(m.format, cols), blocks = static_cast<std::size_t>(cols / kQuantBlock);
    m.codes.resize(static_cast<std::size_t>(kOutputs) * row_bytes);
    m.scales.resize(static_cast<std::size_t>(kOutputs) * blocks);
    for (std::int64_t r = 0; r < kOutputs; ++r) {
      const auto ri = static_cast<std::size_t>(r);
      const std::span<float> row(m.values.data() + r * cols, static_cast<std::size_t>(cols));
      quantize_row(m.format, row, {m.codes.data() + ri * row_bytes, row_bytes}, {m.scales.data() + ri * blocks, blocks});
      dequantize_row(m.format, {m.codes.data() + ri * row_bytes, row_bytes}, {m.scales.data() + ri * blocks, blocks}, row);
    }
    m.dtype = m.format == WeightFormat::Q8 ? DType::I8 : DType::U8;
    m.view = {"w", m.dtype, {kOutputs, static_cast<std::int64_t>(row_bytes)}, base(m.codes), m.codes.size()};
    m.scales_view = {"w_scale", DType::F16, {kOutputs, static_cast<std::int64_t>(blocks)}, base(m.scales),
                     m.scales.size() * 2};
  }
  return m;
}

Weight load(CpuBackend& backend, const Matrix& m) {
  const WeightPart part{&m.view, m.format == WeightFormat::BF16 ? nullptr : &m.scales_view};
  return backend.load_weight(std::span<const WeightPart>(&part, 1), WeightUse::Dense);
}

std::vector<float> random_rows(std::int64_t rows, std::int64_t cols) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(rows * cols));
  for (auto& v : x) v = normal(rng);
  return x;
}

// y = epilogue(x[first .. first + count) W^T + b), y starting from `start` (for Add).
std::vector<float> product(CpuBackend& backend, const Weight& w, const Weight& bias, const std::vector<float>& x,
                           std::int64_t cols, std::int64_t first, std::int64_t count, Epilogue epilogue,
                           const std::vector<float>& start) {
  DeviceBuffer xb(backend, ElemType::F32, count, cols), yb(backend, ElemType::F32, count, kOutputs);
  backend.copy_to_device(xb, x.data() + first * cols);
  backend.copy_to_device(yb, start.data() + first * kOutputs);
  backend.linear(xb, w, bias, yb, epilogue);
  return testing::download(backend, yb);
}

float rounded(float v, bool fast) { return fast ? bf16_to_float(float_to_bf16(v)) : v; }

void check(const std::string& storage, std::int64_t cols, CpuPrecision precision) {
  const bool fast = precision == CpuPrecision::Fast;
  SCOPED_TRACE(storage + " weights, " + std::to_string(cols) + " inputs, " + (fast ? "fast" : "exact") + ", " +
               simd::kernels().name + " kernels");
  const Matrix m = make_matrix(storage, cols);
  CpuBackend backend(2, precision);
  const Weight w = load(backend, m);
  std::vector<float> bias_values(static_cast<std::size_t>(kOutputs));
  for (std::size_t j = 0; j < bias_values.size(); ++j) bias_values[j] = 0.25f * static_cast<float>(j % 5) - 0.5f;
  const Weight bias = backend.load_vector(bias_values);
  const auto x = random_rows(kRows, cols);
  const std::vector<float> start = random_rows(kRows, kOutputs);

  for (const Epilogue epilogue : {Epilogue::Store, Epilogue::Gelu, Epilogue::Add}) {
    const auto got = product(backend, w, bias, x, cols, 0, kRows, epilogue, start);
    for (std::int64_t r = 0; r < kRows; ++r) {
      for (std::int64_t j = 0; j < kOutputs; ++j) {
        double sum = 0, magnitude = 0;
        for (std::int64_t k = 0; k < cols; ++k) {
          const double term = static_cast<double>(rounded(m.values[static_cast<std::size_t>(j * cols + k)], fast)) *
                              rounded(x[static_cast<std::size_t>(r * cols + k)], fast);
          sum += term;
          magnitude += std::fabs(term);
        }
        sum += bias_values[static_cast<std::size_t>(j)];
        const auto at = static_cast<std::size_t>(r * kOutputs + j);
        double want = sum;
        if (epilogue == Epilogue::Gelu) want = 0.5 * sum * (1.0 + std::erf(sum / std::sqrt(2.0)));
        if (epilogue == Epilogue::Add) want += start[at];
        // F32 sums of `cols` terms: well inside 1e-5 of the terms' magnitudes.
        ASSERT_NEAR(got[at], want, 1e-5 * (magnitude + 1.0)) << "row " << r << " output " << j;
      }
    }
  }
  // Rows 9..17 alone (9 rows: still the many-row path, each row in another lane than above).
  const auto all = product(backend, w, Weight{}, x, cols, 0, kRows, Epilogue::Store, start);
  const auto some = product(backend, w, Weight{}, x, cols, 9, 9, Epilogue::Store, start);
  for (std::size_t i = 0; i < some.size(); ++i) ASSERT_EQ(some[i], all[9 * kOutputs + i]) << "value " << i;
}

TEST(CpuGemm, Bf16WeightsMatchTheReferenceInBothPrecisions) {
  for (const std::int64_t cols : {203, 64, 100}) {  // 100: rows read in place with a K tail (AMX)
    check("bf16", cols, CpuPrecision::Exact);
    check("bf16", cols, CpuPrecision::Fast);
  }
}

TEST(CpuGemm, F32WeightsMatchTheReferenceInBothPrecisions) {
  check("f32", 203, CpuPrecision::Exact);
  check("f32", 203, CpuPrecision::Fast);
}

TEST(CpuGemm, Q8AndQ4WeightsMatchTheProductWithTheirDequantizedValues) {
  for (const std::string storage : {"q8", "q4"}) {
    check(storage, 96, CpuPrecision::Exact);
    check(storage, 96, CpuPrecision::Fast);
  }
}

// The many-row products read the weights where they are: no widened copy of any matrix.
TEST(CpuGemm, DenseWeightsStayInTheirStoredForm) {
  for (const std::string storage : {"bf16", "q4"}) {
    const Matrix m = make_matrix(storage, 64);
    CpuBackend backend(1);
    const CpuWeight& w = cpu_weight(load(backend, m));
    EXPECT_EQ(w.format, m.format) << storage;
    EXPECT_TRUE(w.f32_storage.empty()) << storage;
    ASSERT_EQ(w.segments.size(), 1u);
    EXPECT_EQ(w.segments[0].data, m.view.data) << storage;
    EXPECT_EQ(backend.weight_bytes(), m.view.nbytes + (m.scales.empty() ? 0 : m.scales_view.nbytes)) << storage;
  }
}

// The fast tiles' weight rows come from one fused pass over the codes: every F16 scale's
// range (subnormal to 65504, both signs) and every code give the bits of dequantizing
// (core/quant.h's reference) and then rounding to BF16 (core/bf16.h).
TEST(CpuGemm, FusedDequantizeToBf16GivesTheBitsOfDequantizeThenRound) {
  std::mt19937 rng(17);
  constexpr std::int64_t kCols = 4096;
  const std::int64_t blocks = kCols / kQuantBlock;
  std::vector<std::uint16_t> scales(static_cast<std::size_t>(blocks));
  std::uniform_int_distribution<int> any_f16(0, 0xffff);
  for (auto& d : scales) {
    do {
      d = static_cast<std::uint16_t>(any_f16(rng));
    } while ((d & 0x7c00) == 0x7c00);  // no infinity or NaN: a stored scale is finite
  }
  scales[0] = 0x0001;  // smallest subnormal
  scales[1] = 0x7bff;  // 65504
  scales[2] = 0xfbff;  // -65504
  const auto& g = simd::gemm_kernels();
  for (const WeightFormat format : {WeightFormat::Q8, WeightFormat::Q4}) {
    SCOPED_TRACE(format == WeightFormat::Q8 ? "q8" : "q4");
    std::vector<std::uint8_t> codes(quantized_row_bytes(format, kCols));
    std::uniform_int_distribution<int> any_byte(0, 255);
    for (auto& c : codes) c = static_cast<std::uint8_t>(any_byte(rng));
    std::vector<float> values(static_cast<std::size_t>(kCols));
    dequantize_row(format, codes, scales, values);
    std::vector<std::uint16_t> got(static_cast<std::size_t>(kCols));
    (format == WeightFormat::Q8 ? g.dequantize_q8_bf16 : g.dequantize_q4_bf16)(codes.data(), scales.data(), kCols,
                                                                              got.data());
    int differ = 0;
    for (std::size_t i = 0; i < values.size(); ++i) differ += got[i] != float_to_bf16(values[i]);
    EXPECT_EQ(differ, 0) << "on the " << g.name << " tiles";
  }
}

}  // namespace
}  // namespace voxtral
