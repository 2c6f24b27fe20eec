// Q8, Q4 and FP8 weights on the CUDA backend (issue 17): every product equals the product
// with the dequantized weights, which the CPU backend computes in F32 on the very floats the
// codes stand for (core/quant.h's dequantize_row; for FP8 an independent E4M3 rounding here).
// Tolerances: 2e-5 of the largest output where the weights are streamed (F32 sums in another
// order, as the BF16 tests); 1e-3 where many rows widen the weights to F16 for cuBLASLt (each
// weight then carries F16's 11 bits, 2.4e-4 relative at worst, about 1e-4 on a sum).
#include <gmock/gmock.h>

#include <cmath>
#include <numeric>

#include "core/audio.h"
#include "core/mel.h"
#include "core/tensor_values.h"
#include "gpu/gpu_test_util.h"
#include "model/decoder.h"
#include "model/encoder.h"
#include "model/model.h"
#include "model/schedule.h"
#include "runtime/transcriber.h"

namespace voxtral {
namespace {

using namespace gpu_test;  // NOLINT: the helpers of every CUDA op test
using testing::fixture;

constexpr double kStreamedTolerance = 2e-5;
constexpr double kWidenedTolerance = 1e-3;

// One matrix as the GPU loads it (`part`) and the floats it stands for, F32, as the CPU loads them.
struct QuantizedMatrix {
  std::vector<std::uint8_t> codes;
  std::vector<std::uint16_t> scales;
  std::vector<float> dequantized;
  TensorView codes_view, scales_view, reference;
  WeightPart part;
};

std::unique_ptr<QuantizedMatrix> quantized(const TensorView& source, WeightFormat format) {
  auto m = std::make_unique<QuantizedMatrix>();
  const std::int64_t rows = source.shape[0], cols = source.shape[1];
  const auto w = read_floats(source);
  m->dequantized.resize(w.size());
  const auto n = static_cast<std::size_t>(cols);
  if (format == WeightFormat::FP8) {
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* row = w.data() + r * cols;
      float amax = 0;
      for (std::size_t c = 0; c < n; ++c) amax = std::max(amax, std::fabs(row[c]));
      const float scale = amax / 448.0f;
      for (std::size_t c = 0; c < n; ++c) {
        m->dequantized[static_cast<std::size_t>(r) * n + c] = scale == 0 ? 0.0f : e4m3_round(row[c] / scale) * scale;
      }
    }
    m->part = WeightPart{&source, nullptr, WeightFormat::FP8};
  } else {
    const std::size_t row_bytes = quantized_row_bytes(format, cols), blocks = n / kQuantBlock;
    m->codes.resize(static_cast<std::size_t>(rows) * row_bytes);
    m->scales.resize(static_cast<std::size_t>(rows) * blocks);
    for (std::int64_t r = 0; r < rows; ++r) {
      const auto at = static_cast<std::size_t>(r);
      const std::span<std::uint8_t> codes(m->codes.data() + at * row_bytes, row_bytes);
      const std::span<std::uint16_t> scales(m->scales.data() + at * blocks, blocks);
      quantize_row(format, std::span(w).subspan(at * n, n), codes, scales);
      dequantize_row(format, codes, scales, std::span(m->dequantized).subspan(at * n, n));
    }
    m->codes_view = {source.name, format == WeightFormat::Q8 ? DType::I8 : DType::U8,
                     {rows, static_cast<std::int64_t>(row_bytes)}, reinterpret_cast<const std::byte*>(m->codes.data()),
                     m->codes.size()};
    m->scales_view = {source.name + "_scale", DType::F16, {rows, static_cast<std::int64_t>(blocks)},
                      reinterpret_cast<const std::byte*>(m->scales.data()), m->scales.size() * 2};
    m->part = WeightPart{&m->codes_view, &m->scales_view};
  }
  m->reference = {source.name + "_f32", DType::F32, {rows, cols}, reinterpret_cast<const std::byte*>(m->dequantized.data()),
                  m->dequantized.size() * 4};
  return m;
}

// Stacked matrices in `format` on the GPU, their dequantized floats on the CPU.
struct QuantizedWeight {
  std::vector<std::unique_ptr<QuantizedMatrix>> parts;
  Weight cpu, gpu;
  QuantizedWeight(Pair& p, const WeightFile& f, std::initializer_list<std::string> names, WeightFormat format) {
    std::vector<WeightPart> gpu_parts;
    std::vector<const TensorView*> cpu_parts;
    for (const auto& n : names) {
      parts.push_back(quantized(f.get(n), format));
      gpu_parts.push_back(parts.back()->part);
      cpu_parts.push_back(&parts.back()->reference);
    }
    cpu = p.cpu.load_weight(cpu_parts, WeightUse::Streamed);
    gpu = p.gpu.load_weight(std::span<const WeightPart>(gpu_parts), WeightUse::Streamed);
  }
};

constexpr WeightFormat kFormats[] = {WeightFormat::Q8, WeightFormat::Q4, WeightFormat::FP8};

// Rows up to which the variant streams quantized weights (the default: 16).
std::int64_t streamed_up_to(const std::string& variant) {
  if (variant.empty()) return 16;
  return std::stoll(variant.substr(variant.find('=') + 1));
}

// Store products (linear with each epilogue, norm_linear) of 1 to 40 rows: streamed in passes of
// 8 rows up to the crossover, widened to F16 for cuBLASLt above it; with the default
// crossover, and with every count streamed or widened.
TEST(CudaQuantized, ProductsOfAnyRowsEqualTheProductWithTheDequantizedWeights) {
  for (const std::string variant : {"", "quantized_streamed_rows=256", "quantized_streamed_rows=0"}) {
    Pair p(variant);
    // 4128 inputs: a last Q4 stripe of one block, Q8/FP8 stripes of 512 that do not divide it.
    for (auto [m, k] : {std::pair<std::int64_t, std::int64_t>{300, 1024}, {96, 4128}}) {
      WeightFile f;
      f.add("w", m, k);
      f.build();
      const auto bias_values = random_values(static_cast<std::size_t>(m));
      const Weight bc = p.cpu.load_vector(bias_values), bg = p.gpu.load_vector(bias_values);
      const auto norm_values = random_values(static_cast<std::size_t>(k));
      const Weight nc = p.cpu.load_vector(norm_values), ng = p.gpu.load_vector(norm_values);
      for (const WeightFormat format : kFormats) {
        const QuantizedWeight w(p, f, {"w"}, format);
        for (std::int64_t n : {1, 2, 3, 5, 6, 7, 8, 9, 16, 17, 40}) {
          const std::string what = std::string(weight_format_name(format)) + " m=" + std::to_string(m) +
                                   " k=" + std::to_string(k) + " n=" + std::to_string(n) + " variant '" + variant + "'";
          const double tolerance = n <= streamed_up_to(variant) ? kStreamedTolerance : kWidenedTolerance;
          const auto xs = random_values(static_cast<std::size_t>(n * k), 2.0f);
          Buffers x(p, ElemType::F32, n, k, xs.data()), scratch(p, ElemType::F32, n, k);
          const auto ys = random_values(static_cast<std::size_t>(n * m));
          Buffers y(p, ElemType::F32, n, m, ys.data());
          for (Epilogue e : {Epilogue::Store, Epilogue::Gelu, Epilogue::Add}) {
            p.cpu.linear(x.cpu, w.cpu, bc, y.cpu, e);
            p.gpu.linear(x.gpu, w.gpu, bg, y.gpu, e);
            expect_close(p, y.cpu, y.gpu, tolerance, "linear, epilogue " + std::to_string(static_cast<int>(e)) + ", " + what);
          }
          p.cpu.norm_linear(x.cpu, nc, 1e-5f, w.cpu, Weight{}, y.cpu, Epilogue::Add, scratch.cpu);
          p.gpu.norm_linear(x.gpu, ng, 1e-5f, w.gpu, Weight{}, y.gpu, Epilogue::Add, scratch.gpu);
          expect_close(p, y.cpu, y.gpu, tolerance, "norm_linear, " + what);
        }
      }
    }
  }
}

class CudaQuantizedDecodeOps : public ::testing::TestWithParam<DecodeLayerShape> {};

// The fused ops of a decode step (RMSNorm + q|k|v + RoPE + K/V append: RopePair; RMSNorm with
// each row's norm + gate|up + SiLU-gate: SiluPair; RMSNorm + LM head: Store) for N rows of N
// sequences, in each format, against the CPU backend's ops on the dequantized weights.
TEST_P(CudaQuantizedDecodeOps, FusedOpsOfNRowsEqualTheOpsOnTheDequantizedWeights) {
  const DecodeLayerShape c = GetParam();
  Pair p;
  const std::int64_t qw = static_cast<std::int64_t>(c.n_heads) * c.head_dim;
  const std::int64_t kvw = static_cast<std::int64_t>(c.n_kv_heads) * c.head_dim;
  WeightFile f;
  f.add("wq", qw, c.dim), f.add("wk", kvw, c.dim), f.add("wv", kvw, c.dim);
  f.add("w1", c.hidden, c.dim), f.add("w3", c.hidden, c.dim), f.add("head", c.vocab, c.dim);
  f.build();
  const auto norm_values = random_values(static_cast<std::size_t>(c.dim));
  const Weight norm_c = p.cpu.load_vector(norm_values), norm_g = p.gpu.load_vector(norm_values);
  constexpr int kNormRows = 4;
  const auto ffn_values = random_values(static_cast<std::size_t>(kNormRows * c.dim));
  Buffers ffn_norms(p, ElemType::F32, kNormRows, c.dim, ffn_values.data());
  const RopeParams qr{c.n_heads, c.head_dim, 1e6}, kr{c.n_kv_heads, c.head_dim, 1e6};
  for (const WeightFormat format : kFormats) {
    const QuantizedWeight qkv_w(p, f, {"wq", "wk", "wv"}, format);
    const QuantizedWeight gate_up_w(p, f, {"w1", "w3"}, format);
    const QuantizedWeight head_w(p, f, {"head"}, format);
    for (int n : {1, 3, 6, 8, 13, 40}) {
      const std::string at = std::string(weight_format_name(format)) + ", dim " + std::to_string(c.dim) + ", " +
                             std::to_string(n) + " rows";
      const double tolerance = n <= streamed_up_to("") ? kStreamedTolerance : kWidenedTolerance;
      const KvCacheLayout layout{c.n_kv_heads, c.head_dim, 64, 40, ElemType::F32, 16};
      const int pages = layout.pages_per_sequence();
      const auto table = scattered_pages(n, pages);
      std::vector<std::int32_t> seq(static_cast<std::size_t>(n)), pos(static_cast<std::size_t>(n));
      std::iota(seq.begin(), seq.end(), 0);
      std::shuffle(seq.begin(), seq.end(), rng);
      for (auto& v : pos) v = static_cast<std::int32_t>(rng() % 5000);
      const BatchRows rows(p, pos, seq, table, pages);
      Buffers kc(p, ElemType::F32, static_cast<std::int64_t>(n) * pages * 16, kvw);
      Buffers vc(p, ElemType::F32, static_cast<std::int64_t>(n) * pages * 16, kvw);
      const auto xs = random_values(static_cast<std::size_t>(n * c.dim), 2.0f);
      Buffers x(p, ElemType::F32, n, c.dim, xs.data());
      Buffers normed(p, ElemType::F32, n, c.dim), qkv(p, ElemType::F32, n, qw + 2 * kvw);
      p.cpu.norm_qkv_rope(x.cpu, norm_c, 1e-5f, qkv_w.cpu, qkv.cpu, normed.cpu, rows.cpu(), qr, kr, layout, kc.cpu, vc.cpu);
      p.gpu.norm_qkv_rope(x.gpu, norm_g, 1e-5f, qkv_w.gpu, qkv.gpu, normed.gpu, rows.gpu(), qr, kr, layout, kc.gpu, vc.gpu);
      expect_close(p, qkv.cpu.view().col_range(0, qw), qkv.gpu.view().col_range(0, qw), tolerance, "rotated q, " + at);
      for (std::size_t i = 0; i < seq.size(); ++i) {
        const std::int64_t r = kv_cache_row(layout, table.data(), seq[i], pos[i]);
        expect_close(p, kc.cpu.view().row_range(r, 1), kc.gpu.view().row_range(r, 1), tolerance, "k cache, " + at);
        expect_close(p, vc.cpu.view().row_range(r, 1), vc.gpu.view().row_range(r, 1), tolerance, "v cache, " + at);
      }

      std::vector<std::int32_t> which(static_cast<std::size_t>(n));
      for (auto& w : which) w = static_cast<std::int32_t>(rng() % kNormRows);
      Buffers norm_rows(p, ElemType::I32, n, 1, which.data());
      Buffers gate_up(p, ElemType::F32, n, 2 * c.hidden), act(p, ElemType::F32, n, c.hidden);
      p.cpu.norm_swiglu(x.cpu, ffn_norms.cpu, norm_rows.cpu, 1e-5f, gate_up_w.cpu, act.cpu, normed.cpu, gate_up.cpu);
      p.gpu.norm_swiglu(x.gpu, ffn_norms.gpu, norm_rows.gpu, 1e-5f, gate_up_w.gpu, act.gpu, normed.gpu, gate_up.gpu);
      expect_close(p, act.cpu, act.gpu, tolerance, "norm_swiglu, " + at);

      Buffers logits(p, ElemType::F32, n, c.vocab);
      p.cpu.norm_linear(x.cpu, norm_c, 1e-5f, head_w.cpu, Weight{}, logits.cpu, Epilogue::Store, normed.cpu);
      p.gpu.norm_linear(x.gpu, norm_g, 1e-5f, head_w.gpu, Weight{}, logits.gpu, Epilogue::Store, normed.gpu);
      expect_close(p, logits.cpu, logits.gpu, tolerance, "norm_linear (LM head), " + at);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaQuantizedDecodeOps,
                         ::testing::Values(DecodeLayerShape{96, 6, 2, 32, 256, 1515},          // tiny-a fixture
                                           DecodeLayerShape{3072, 32, 8, 128, 9216, 4001}));  // the real layer

// Embedding rows of a quantized table are exactly the dequantized rows (code times scale in
// float, as dequantize_row computes them).
// The fast precision's integer products (Q8/Q4) by the formula of docs/MODEL.md "Weight
// formats", worked out here in double: each activation row quantized per block of 32 inputs
// (m = max |x|, a = round(x * (127 / m)) ties to even, 0 where m < 2^-120; s = m / 127, both in
// float), a block contributing f16(d) s sum q a, where f16(d) q is the dequantized weight.
std::vector<float> int8_formula(const std::vector<float>& w, const std::vector<float>& x, std::int64_t n,
                                std::int64_t m, std::int64_t k, const std::vector<float>& bias,
                                const std::vector<float>& add) {
  std::vector<float> y(static_cast<std::size_t>(n * m));
  std::vector<double> a(static_cast<std::size_t>(k)), s(static_cast<std::size_t>(k / 32));
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t b = 0; b < k / 32; ++b) {
      float most = 0;
      for (std::int64_t j = 0; j < 32; ++j) most = std::max(most, std::fabs(x[i * k + 32 * b + j]));
      const bool ok = most >= 0x1p-120f && std::isfinite(most);
      const float up = ok ? 127.0f / most : 0.0f;
      s[b] = ok ? most / 127.0f : 0.0f;
      for (std::int64_t j = 0; j < 32; ++j) {
        const float scaled = x[i * k + 32 * b + j] * up;
        a[32 * b + j] = std::nearbyint(scaled);
      }
    }
    for (std::int64_t r = 0; r < m; ++r) {
      double sum = 0;
      for (std::int64_t b = 0; b < k / 32; ++b) {
        double block = 0;
        for (std::int64_t j = 0; j < 32; ++j) block += static_cast<double>(w[r * k + 32 * b + j]) * a[32 * b + j];
        sum += s[b] * block;
      }
      y[i * m + r] = static_cast<float>(sum + bias[r] + (add.empty() ? 0.0 : add[i * m + r]));
    }
  }
  return y;
}

// --precision fast: Q8/Q4 products of up to the crossover's rows multiply int8 activations
// (the formula above), not the floats; exact precision keeps the floats (the test above).
// Linear: 2e-5 of the largest output, as the streamed float products (the same activation
// bytes, sums in another order). With the fused RMSNorm the GPU's 1 / rms may differ from this
// one in its last bit, which can round an activation the other way: one step of one block,
// about 6e-4 of the output at worst, so 2e-3 there.
TEST(CudaQuantized, FastPrecisionProductsEqualTheInt8Formula) {
  Pair p;
  CudaOptions options = Pair::options();
  options.exact_matmul = false;
  CudaBackend fast(options);
  for (auto [m, k] : {std::pair<std::int64_t, std::int64_t>{300, 1024}, {96, 4096}}) {
    WeightFile f;
    f.add("w", m, k);
    f.build();
    const auto bias = random_values(static_cast<std::size_t>(m));
    const auto norm = random_values(static_cast<std::size_t>(k));
    const Weight bg = fast.load_vector(bias), ng = fast.load_vector(norm);
    for (const WeightFormat format : {WeightFormat::Q8, WeightFormat::Q4}) {
      const auto q = quantized(f.get("w"), format);
      const WeightPart part = q->part;
      const Weight wg = fast.load_weight(std::span<const WeightPart>(&part, 1), WeightUse::Streamed);
      for (std::int64_t n : {1, 2, 5}) {
        const std::string what = std::string(weight_format_name(format)) + " m=" + std::to_string(m) +
                                 " k=" + std::to_string(k) + " n=" + std::to_string(n);
        const auto xs = random_values(static_cast<std::size_t>(n * k), 2.0f);
        DeviceBuffer x(fast, ElemType::F32, n, k), y(fast, ElemType::F32, n, m), scratch(fast, ElemType::F32, n, k);
        fast.copy_to_device(x, xs.data());
        fast.linear(x, wg, bg, y, Epilogue::Store);
        const auto got = download(fast, y);
        EXPECT_LE(relative_error(got, int8_formula(q->dequantized, xs, n, m, k, bias, {})), kStreamedTolerance) << what;
        // The float product is farther off than that: the integer path ran.
        std::vector<float> floats(static_cast<std::size_t>(n * m));
        for (std::int64_t i = 0; i < n; ++i) {
          for (std::int64_t r = 0; r < m; ++r) {
            double sum = bias[r];
            for (std::int64_t c = 0; c < k; ++c) sum += static_cast<double>(q->dequantized[r * k + c]) * xs[i * k + c];
            floats[i * m + r] = static_cast<float>(sum);
          }
        }
        EXPECT_GT(relative_error(got, floats), 10 * kStreamedTolerance) << what;
        if (n != 1) continue;  // the norm is fused for one row
        const auto before = random_values(static_cast<std::size_t>(m));
        fast.copy_to_device(y, before.data());
        fast.norm_linear(x, ng, 1e-5f, wg, bg, y, Epilogue::Add, scratch);
        double ss = 0;
        for (std::int64_t c = 0; c < k; ++c) ss += static_cast<double>(xs[c]) * xs[c];
        const float inv = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(k)) + 1e-5f);
        std::vector<float> normed(static_cast<std::size_t>(k));
        for (std::int64_t c = 0; c < k; ++c) normed[c] = norm[c] * (xs[c] * inv);
        EXPECT_LE(relative_error(download(fast, y), int8_formula(q->dequantized, normed, 1, m, k, bias, before)), 2e-3)
            << "norm_linear, " << what;
      }
    }
  }
}

// --precision fast with FP8 weights: the streamed products take each input block's F16 x / m and
// sum a lane's 16 code-input products in F16 (cuda_quantized_streamed.cu). Against the product on
// the dequantized weights worked out in double: within 4e-3 of the largest output (F16 sums of 8
// products below 3584 round by at most 2^-11 of themselves, about 1e-3 of a piece, and pieces'
// errors do not line up), and not the bits of exact precision (the F16 path ran).
TEST(CudaQuantized, Fp8FastPrecisionProductsStayWithinTheF16Bound) {
  Pair p;
  CudaOptions options = Pair::options();
  options.exact_matmul = false;
  CudaBackend fast(options);
  for (auto [m, k] : {std::pair<std::int64_t, std::int64_t>{300, 1024}, {96, 4096}}) {
    WeightFile f;
    f.add("w", m, k);
    f.build();
    const auto bias = random_values(static_cast<std::size_t>(m));
    const Weight bias_fast = fast.load_vector(bias), bias_exact = p.gpu.load_vector(bias);
    const auto q = quantized(f.get("w"), WeightFormat::FP8);
    const WeightPart part = q->part;
    const Weight w_fast = fast.load_weight(std::span<const WeightPart>(&part, 1), WeightUse::Streamed);
    const Weight w_exact = p.gpu.load_weight(std::span<const WeightPart>(&part, 1), WeightUse::Streamed);
    for (std::int64_t n : {1, 2, 5}) {
      const std::string what = "m=" + std::to_string(m) + " k=" + std::to_string(k) + " n=" + std::to_string(n);
      const auto xs = random_values(static_cast<std::size_t>(n * k), 2.0f);
      DeviceBuffer x(fast, ElemType::F32, n, k), y(fast, ElemType::F32, n, m);
      DeviceBuffer xe(p.gpu, ElemType::F32, n, k), ye(p.gpu, ElemType::F32, n, m);
      fast.copy_to_device(x, xs.data());
      p.gpu.copy_to_device(xe, xs.data());
      fast.linear(x, w_fast, bias_fast, y, Epilogue::Store);
      p.gpu.linear(xe, w_exact, bias_exact, ye, Epilogue::Store);
      const auto got = download(fast, y), exact = download(p.gpu, ye);
      std::vector<float> want(static_cast<std::size_t>(n * m));
      for (std::int64_t i = 0; i < n; ++i) {
        for (std::int64_t r = 0; r < m; ++r) {
          double sum = bias[r];
          for (std::int64_t c = 0; c < k; ++c) sum += static_cast<double>(q->dequantized[r * k + c]) * xs[i * k + c];
          want[i * m + r] = static_cast<float>(sum);
        }
      }
      EXPECT_LE(relative_error(got, want), 4e-3) << what;
      EXPECT_LE(relative_error(exact, want), kStreamedTolerance) << what;
      EXPECT_GT(relative_error(got, exact), 0.0) << what;
    }
  }
}

TEST(CudaQuantized, EmbeddingRowsAreExactlyTheDequantizedRows) {
  Pair p;
  WeightFile f;
  f.add("table", 50, 256);
  f.build();
  const std::int32_t ids[] = {7, 0, 49, 7};
  Buffers id(p, ElemType::I32, 4, 1, ids);
  for (const WeightFormat format : kFormats) {
    const QuantizedWeight table(p, f, {"table"}, format);
    Buffers out(p, ElemType::F32, 4, 256);
    p.gpu.embed(table.gpu, id.gpu, Tensor{}, out.gpu);
    const auto got = download(p.gpu, out.gpu);
    const auto& want = table.parts[0]->dequantized;
    for (std::size_t i = 0; i < 4; ++i) {
      for (std::size_t c = 0; c < 256; ++c) {
        ASSERT_EQ(got[i * 256 + c], want[static_cast<std::size_t>(ids[i]) * 256 + c])
            << weight_format_name(format) << " row " << i << " column " << c;
      }
    }
  }
}

TEST(CudaQuantized, Fp8RefusesANonFiniteWeightNamingTheTensorAndRow) {
  Pair p;
  std::vector<float> values(4 * 32, 0.5f);
  values[2 * 32 + 5] = std::nanf("");
  const TensorView view{"layers.0.attention.wq.weight", DType::F32, {4, 32},
                        reinterpret_cast<const std::byte*>(values.data()), values.size() * 4};
  const WeightPart part{&view, nullptr, WeightFormat::FP8};
  EXPECT_THAT(testing::error_message([&] { p.gpu.load_weight(std::span<const WeightPart>(&part, 1), WeightUse::Streamed); }),
              ::testing::HasSubstr("layers.0.attention.wq.weight: row 2 holds a NaN or infinite weight"));
}

ModelOptions options_for(const std::string& backend, const std::string& weights) {
  ModelOptions o;
  o.backend = backend;
  o.precision = "exact";
  o.kv_cache = "f32";
  o.weights = weights;
  return o;
}

// The tiny fixture end to end: the CUDA backend transcribes as the CPU backend does with the
// same quantized weights (the same tokens), from short and long audio.
TEST(CudaQuantizedModel, TinyFixtureGivesTheCpuBackendsTokensInQ8AndQ4) {
  for (const char* format : {"q8", "q4"}) {
    auto cpu = Model::load(fixture("tiny-a"), options_for("cpu", format));
    auto gpu = Model::load(fixture("tiny-a"), options_for("cuda", format));
    EXPECT_EQ(gpu->weight_format(), parse_weight_format(format));
    for (const char* clip : {"audio/speech_short.wav", "audio/speech_long.wav"}) {
      const auto samples = load_audio_file(fixture(clip), 16000);
      const auto want = transcribe(*cpu, samples);
      const auto got = transcribe(*gpu, samples);
      EXPECT_FALSE(want.ids.empty()) << format << " " << clip;
      EXPECT_EQ(got.ids, want.ids) << format << " " << clip;
      EXPECT_EQ(got.text, want.text) << format << " " << clip;
    }
  }
}

// FP8 end to end: the prefill logits of the tiny fixture (on its prompt) stay close to
// BF16's. E4M3 keeps 3 mantissa bits (each weight within 6.25%), so the logits move by a
// few percent: cosine per position >= 0.99 (measured on the H200, 2026-11-30: min 0.9958,
// mean 0.9980); Q8, beside it, >= 0.999 (measured: min 0.99980, mean 0.99989). In fast
// precision the many-row products also quantize the activations to E4M3 (FP8 products), the
// same error once more: >= 0.98 (measured on the H200, 2026-12-01: min 0.9905, mean 0.9959).
TEST(CudaQuantizedModel, Fp8PrefillLogitsStayCloseToBf16) {
  auto logits = [](const std::string& weights, const std::string& precision = "exact") {
    ModelOptions options = options_for("cuda", weights);
    options.precision = precision;
    auto model = Model::load(fixture("tiny-a"), options);
    const auto& config = model->config();
    Backend& backend = model->backend();
    const auto samples = load_audio_file(fixture("audio/speech_short.wav"), 16000);
    const int n_delay = delay_positions(480, config);
    const auto padded = pad_offline(samples, config, 32, n_delay);
    const auto mel = MelSpectrogram(config.audio).compute(padded);
    const auto prompt = prompt_ids(model->tokenizer(), n_delay);
    const auto n = static_cast<std::int64_t>(prompt.size()) - 1;
    EncoderPool& encoder = model->encoder();
    const int sequence = encoder.options().max_sequences - 1;
    encoder.reset(sequence);
    DeviceBuffer audio(backend, ElemType::F32, n, config.decoder.dim);
    const std::size_t per_position = static_cast<std::size_t>(config.mel_frames_per_position()) * config.audio.num_mel_bins;
    const EncodeRequest request{sequence, std::span(mel).first(static_cast<std::size_t>(n) * per_position),
                                static_cast<int>(n), audio.view(), nullptr};
    encoder.encode(std::span(&request, 1));
    encoder.release(sequence);
    DecoderPool& decoder = model->decoder();
    const int s = decoder.acquire();
    decoder.start(s, model->ffn_norms(n_delay));
    DeviceBuffer out(backend, ElemType::F32, n, config.decoder.vocab_size);
    decoder.prefill(s, std::span(prompt).first(static_cast<std::size_t>(n)), audio.view(), 0, &out.view());
    decoder.release(s);
    return std::pair{download(backend, out.view()), config.decoder.vocab_size};
  };
  const auto [bf16, vocab] = logits("bf16");
  struct Case {
    const char* weights;
    const char* precision;
    double min_cosine;
  };
  for (const Case c : {Case{"q8", "exact", 0.999}, Case{"fp8", "exact", 0.99}, Case{"fp8", "fast", 0.98}}) {
    const auto quantized = logits(c.weights, c.precision).first;
    ASSERT_EQ(quantized.size(), bf16.size());
    double worst = 1, sum = 0;
    const std::size_t positions = bf16.size() / static_cast<std::size_t>(vocab);
    for (std::size_t p = 0; p < positions; ++p) {
      double dot = 0, a2 = 0, b2 = 0;
      for (std::size_t j = p * static_cast<std::size_t>(vocab); j < (p + 1) * static_cast<std::size_t>(vocab); ++j) {
        dot += static_cast<double>(bf16[j]) * quantized[j];
        a2 += static_cast<double>(bf16[j]) * bf16[j];
        b2 += static_cast<double>(quantized[j]) * quantized[j];
      }
      const double cosine = dot / std::sqrt(a2 * b2);
      worst = std::min(worst, cosine);
      sum += cosine;
    }
    std::printf("[ %s %s ] prefill logits against bf16 over %zu positions: cosine min %.6f, mean %.6f\n", c.weights,
                c.precision, positions, worst, sum / static_cast<double>(positions));
    EXPECT_GE(worst, c.min_cosine) << c.weights << " " << c.precision;
  }
}

}  // namespace
}  // namespace voxtral
