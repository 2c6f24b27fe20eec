// FP8 weights in fast precision (issue 17): the many-row products (encoder, adapter, prefill)
// quantize each activation row to E4M3 with its own F32 scale and multiply the codes on FP8
// tensor cores (cuBLASLt); exact precision keeps the widened F16 path (test_cuda_quantized.cc).
//
// The reference is the documented formula, worked out here in double: each weight row
// quantized by its scale s_w = max|row| / 448 (as the load does), each activation row likewise
// (s_x = max|row| / 448, q = E4M3(x / s_x), both in float), y = s_x s_w sum q_x q_w + bias.
// E4M3 times E4M3 is exact in float, so the GPU's sums differ from it only by F32 summation
// (Hopper's FP8 accumulator, promoted to F32 by cuBLASLt): 1e-3 of the largest output. Where
// the GPU computes the activations itself (RMSNorm, SiLU-gate), its 1 / rms or exp may differ
// from this one in the last bit and round one activation to its neighbouring code (one E4M3
// step, 1/8 of it at most, about 0.25 / sqrt(k) of the largest output at worst): 1e-2.
//
// Against the CPU backend's F32 product on the dequantized weights (float activations), FP8
// activations cost 3 mantissa bits: each within 2^-4 of itself, so an output's error is about
// 2.6% of the outputs' rms (the formula against the F32 product in double, these shapes:
// worst 2.5 to 2.8% of the largest output): 4e-2. That error is also what shows the FP8 path
// ran: the widened path (BF16 activations) stays within 1e-3 of the F32 product.
#include <gmock/gmock.h>

#include <cmath>

#include "gpu/gpu_test_util.h"

namespace voxtral {
namespace {

using namespace gpu_test;  // NOLINT: the helpers of every CUDA op test

constexpr double kFormulaTolerance = 1e-3;
constexpr double kRecomputedTolerance = 1e-2;
constexpr double kFloatTolerance = 4e-2;
constexpr double kWidenedTolerance = 1e-3;  // the widened path against the F32 product (test_cuda_quantized.cc)

// Rows quantized per row to E4M3: codes (as floats) and one scale per row, in float as the GPU does.
struct Fp8Rows {
  std::vector<float> codes, scales;
};

Fp8Rows fp8_rows(const std::vector<float>& values, std::int64_t rows, std::int64_t cols) {
  Fp8Rows q{std::vector<float>(values.size()), std::vector<float>(static_cast<std::size_t>(rows))};
  for (std::int64_t r = 0; r < rows; ++r) {
    float amax = 0;
    for (std::int64_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(values[r * cols + c]));
    const float scale = amax / 448.0f;
    q.scales[r] = scale;
    for (std::int64_t c = 0; c < cols; ++c) q.codes[r * cols + c] = scale == 0 ? 0.0f : e4m3_round(values[r * cols + c] / scale);
  }
  return q;
}

// A random [m, k] weight: its F32 values (the GPU quantizes them at load), its quantization
// here, and the dequantized floats on the CPU backend.
struct Fp8Weight {
  std::vector<float> values, dequantized;
  Fp8Rows q;
  TensorView values_view, dequantized_view;
  Weight cpu, exact, fast;
};

std::unique_ptr<Fp8Weight> fp8_weight(CpuBackend& cpu, CudaBackend& exact, CudaBackend& fast, std::int64_t m, std::int64_t k) {
  auto w = std::make_unique<Fp8Weight>();
  w->values = random_values(static_cast<std::size_t>(m * k), 1.0f / std::sqrt(static_cast<float>(k)));
  w->q = fp8_rows(w->values, m, k);
  w->dequantized.resize(w->values.size());
  for (std::size_t i = 0; i < w->values.size(); ++i) w->dequantized[i] = w->q.codes[i] * w->q.scales[i / static_cast<std::size_t>(k)];
  w->values_view = {"w", DType::F32, {m, k}, reinterpret_cast<const std::byte*>(w->values.data()), w->values.size() * 4};
  w->dequantized_view = {"w_f32", DType::F32, {m, k}, reinterpret_cast<const std::byte*>(w->dequantized.data()),
                         w->dequantized.size() * 4};
  const TensorView* reference = &w->dequantized_view;
  w->cpu = cpu.load_weight(std::span(&reference, 1), WeightUse::Dense);
  const WeightPart part{&w->values_view, nullptr, WeightFormat::FP8};
  w->exact = exact.load_weight(std::span(&part, 1), WeightUse::Dense);
  w->fast = fast.load_weight(std::span(&part, 1), WeightUse::Dense);
  return w;
}

float gelu(double v) { return static_cast<float>(0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)))); }

// The formula's products for activations x [n, k]: s_x s_w sum q_x q_w, [n, m].
std::vector<double> fp8_products(const Fp8Weight& w, std::int64_t m, std::int64_t k, const std::vector<float>& x,
                                 std::int64_t n) {
  const Fp8Rows qx = fp8_rows(x, n, k);
  std::vector<double> sums(static_cast<std::size_t>(n * m));
  for (std::int64_t i = 0; i < n; ++i) {
    const float* a = qx.codes.data() + i * k;
    for (std::int64_t r = 0; r < m; ++r) {
      const float* b = w.q.codes.data() + r * k;
      double part[4] = {0, 0, 0, 0};  // exact products, summed four ways for speed
      for (std::int64_t c = 0; c < k; c += 4) {
        for (int j = 0; j < 4; ++j) part[j] += static_cast<double>(a[c + j] * b[c + j]);
      }
      sums[i * m + r] = (part[0] + part[1] + part[2] + part[3]) * qx.scales[i] * w.q.scales[r];
    }
  }
  return sums;
}

// y = epilogue(products + bias) (Add: onto `before`).
std::vector<float> with_epilogue(const std::vector<double>& products, std::int64_t m, const std::vector<float>& bias,
                                 Epilogue epilogue, const std::vector<float>& before) {
  std::vector<float> y(products.size());
  for (std::size_t i = 0; i < y.size(); ++i) {
    double v = products[i] + (bias.empty() ? 0.0 : bias[i % static_cast<std::size_t>(m)]);
    if (epilogue == Epilogue::Gelu) v = gelu(v);
    if (epilogue == Epilogue::Add) v += before[i];
    y[i] = static_cast<float>(v);
  }
  return y;
}

struct Backends {
  Pair p;  // the CPU backend and the GPU in exact precision (the widened path)
  CudaBackend fast;
  Backends() : fast(fast_options()) {}
  static CudaOptions fast_options() {
    CudaOptions o = Pair::options();
    o.exact_matmul = false;
    return o;
  }
};

// One product's result on the three backends, from the same x and the same y before it.
struct Results {
  std::vector<float> cpu, exact, fast;
};

template <typename Op>
Results run_on_all(Backends& b, std::int64_t n, std::int64_t m, const std::vector<float>& before, Op&& op) {
  DeviceBuffer yc(b.p.cpu, ElemType::F32, n, m), ye(b.p.gpu, ElemType::F32, n, m), yf(b.fast, ElemType::F32, n, m);
  b.p.cpu.copy_to_device(yc, before.data());
  b.p.gpu.copy_to_device(ye, before.data());
  b.fast.copy_to_device(yf, before.data());
  op(b.p.cpu, yc.view(), 0);
  op(b.p.gpu, ye.view(), 1);
  op(b.fast, yf.view(), 2);
  return {download(b.p.cpu, yc), download(b.p.gpu, ye), download(b.fast, yf)};
}

void expect_fp8_path(const Results& r, const std::vector<float>& formula, double formula_tolerance, const std::string& what) {
  for (float v : r.fast) ASSERT_TRUE(std::isfinite(v)) << what;
  EXPECT_LE(relative_error(r.fast, formula), formula_tolerance) << "against the formula, " << what;
  EXPECT_LE(relative_error(r.fast, r.cpu), kFloatTolerance) << "against the F32 product, " << what;
  EXPECT_LE(relative_error(r.exact, r.cpu), kWidenedTolerance) << "exact precision (widened) against the F32 product, " << what;
  EXPECT_GT(relative_error(r.fast, r.exact), 10 * kWidenedTolerance) << "the FP8 product ran, " << what;
}

// linear with a bias and each epilogue, encoder-like shapes: 300 to 1500 rows (37: rows padded
// to 16 for the product), k = 1280 and 5120.
TEST(CudaFp8Products, LinearEqualsTheFp8FormulaWithEachEpilogue) {
  Backends b;
  struct Shape {
    std::int64_t n, m, k;
  };
  for (const Shape s : {Shape{300, 1280, 1280}, Shape{1500, 256, 1280}, Shape{300, 512, 5120}, Shape{37, 768, 1280}}) {
    const auto w = fp8_weight(b.p.cpu, b.p.gpu, b.fast, s.m, s.k);
    const auto bias = random_values(static_cast<std::size_t>(s.m));
    const Weight bc = b.p.cpu.load_vector(bias), be = b.p.gpu.load_vector(bias), bf = b.fast.load_vector(bias);
    const auto xs = random_values(static_cast<std::size_t>(s.n * s.k), 2.0f);
    const auto before = random_values(static_cast<std::size_t>(s.n * s.m));
    Buffers x(b.p, ElemType::F32, s.n, s.k, xs.data());
    DeviceBuffer xf(b.fast, ElemType::F32, s.n, s.k);
    b.fast.copy_to_device(xf, xs.data());
    const auto products = fp8_products(*w, s.m, s.k, xs, s.n);
    for (const Epilogue e : {Epilogue::Store, Epilogue::Gelu, Epilogue::Add}) {
      const std::string what = "linear n=" + std::to_string(s.n) + " m=" + std::to_string(s.m) + " k=" + std::to_string(s.k) +
                               " epilogue " + std::to_string(static_cast<int>(e));
      const Results r = run_on_all(b, s.n, s.m, before, [&](Backend& backend, const Tensor& y, int which) {
        const Weight* ws[] = {&w->cpu, &w->exact, &w->fast};
        const Weight* bs[] = {&bc, &be, &bf};
        const Tensor* xs_on[] = {&x.cpu.view(), &x.gpu.view(), &xf.view()};
        backend.linear(*xs_on[which], *ws[which], *bs[which], y, e);
      });
      expect_fp8_path(r, with_epilogue(products, s.m, bias, e, before), kFormulaTolerance, what);
    }
  }
}

// The products that compute their activations on the way: RMSNorm + q|k|v with a bias (the
// encoder's attention input), SiLU-gate + w2 with the residual add (its FFN output), and
// RMSNorm with each row's norm + gate|up (the prefill's FFN input, then SiLU-gate).
TEST(CudaFp8Products, FusedInputsEqualTheFp8FormulaOnTheirActivations) {
  Backends b;
  const std::int64_t n = 300, dim = 1280, hidden = 2560;
  const float eps = 1e-5f;
  const auto xs = random_values(static_cast<std::size_t>(n * dim), 2.0f);
  Buffers x(b.p, ElemType::F32, n, dim, xs.data()), scratch(b.p, ElemType::F32, n, dim);
  DeviceBuffer xf(b.fast, ElemType::F32, n, dim), scratch_f(b.fast, ElemType::F32, n, dim);
  b.fast.copy_to_device(xf, xs.data());
  const auto norm = random_values(static_cast<std::size_t>(dim));
  const Weight nc = b.p.cpu.load_vector(norm), ne = b.p.gpu.load_vector(norm), nf = b.fast.load_vector(norm);
  std::vector<float> normed(xs.size()), inv(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    double ss = 0;
    for (std::int64_t c = 0; c < dim; ++c) ss += static_cast<double>(xs[i * dim + c]) * xs[i * dim + c];
    inv[i] = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(dim)) + eps);
    for (std::int64_t c = 0; c < dim; ++c) normed[i * dim + c] = norm[c] * (xs[i * dim + c] * inv[i]);
  }

  {  // norm_linear, Store with a bias
    const std::int64_t m = 1280;
    const auto w = fp8_weight(b.p.cpu, b.p.gpu, b.fast, m, dim);
    const auto bias = random_values(static_cast<std::size_t>(m));
    const Weight bc = b.p.cpu.load_vector(bias), be = b.p.gpu.load_vector(bias), bf = b.fast.load_vector(bias);
    const std::vector<float> before(static_cast<std::size_t>(n * m), 0.0f);
    const Results r = run_on_all(b, n, m, before, [&](Backend& backend, const Tensor& y, int which) {
      if (which == 0) backend.norm_linear(x.cpu, nc, eps, w->cpu, bc, y, Epilogue::Store, scratch.cpu);
      if (which == 1) backend.norm_linear(x.gpu, ne, eps, w->exact, be, y, Epilogue::Store, scratch.gpu);
      if (which == 2) backend.norm_linear(xf, nf, eps, w->fast, bf, y, Epilogue::Store, scratch_f);
    });
    expect_fp8_path(r, with_epilogue(fp8_products(*w, m, dim, normed, n), m, bias, Epilogue::Store, before),
                    kRecomputedTolerance, "norm_linear");
  }

  {  // swiglu_linear, Add with a bias
    const auto gate_up = random_values(static_cast<std::size_t>(n * 2 * hidden), 2.0f);
    Buffers gu(b.p, ElemType::F32, n, 2 * hidden, gate_up.data()), act(b.p, ElemType::F32, n, hidden);
    DeviceBuffer gu_f(b.fast, ElemType::F32, n, 2 * hidden), act_f(b.fast, ElemType::F32, n, hidden);
    b.fast.copy_to_device(gu_f, gate_up.data());
    std::vector<float> silu(static_cast<std::size_t>(n * hidden));
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t c = 0; c < hidden; ++c) {
        const float g = gate_up[i * 2 * hidden + c], u = gate_up[i * 2 * hidden + hidden + c];
        silu[i * hidden + c] = (g / (1.0f + std::exp(-g))) * u;
      }
    }
    const auto w = fp8_weight(b.p.cpu, b.p.gpu, b.fast, dim, hidden);
    const auto bias = random_values(static_cast<std::size_t>(dim));
    const Weight bc = b.p.cpu.load_vector(bias), be = b.p.gpu.load_vector(bias), bf = b.fast.load_vector(bias);
    const auto before = random_values(static_cast<std::size_t>(n * dim));
    const Results r = run_on_all(b, n, dim, before, [&](Backend& backend, const Tensor& y, int which) {
      if (which == 0) backend.swiglu_linear(gu.cpu, w->cpu, bc, y, Epilogue::Add, act.cpu);
      if (which == 1) backend.swiglu_linear(gu.gpu, w->exact, be, y, Epilogue::Add, act.gpu);
      if (which == 2) backend.swiglu_linear(gu_f, w->fast, bf, y, Epilogue::Add, act_f);
    });
    expect_fp8_path(r, with_epilogue(fp8_products(*w, dim, hidden, silu, n), dim, bias, Epilogue::Add, before),
                    kRecomputedTolerance, "swiglu_linear");
  }

  {  // norm_swiglu with a norm per row: gate|up by the formula, then SiLU-gate
    const std::int64_t half = 512;
    constexpr int kNormRows = 3;
    const auto norm_values = random_values(static_cast<std::size_t>(kNormRows * dim));
    Buffers norms(b.p, ElemType::F32, kNormRows, dim, norm_values.data());
    DeviceBuffer norms_f(b.fast, ElemType::F32, kNormRows, dim);
    b.fast.copy_to_device(norms_f, norm_values.data());
    std::vector<std::int32_t> which_norm(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) which_norm[i] = static_cast<std::int32_t>(i % kNormRows);
    Buffers rows(b.p, ElemType::I32, n, 1, which_norm.data());
    DeviceBuffer rows_f(b.fast, ElemType::I32, n, 1);
    b.fast.copy_to_device(rows_f, which_norm.data());
    std::vector<float> row_normed(xs.size());
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t c = 0; c < dim; ++c) {
        row_normed[i * dim + c] = norm_values[which_norm[i] * dim + c] * (xs[i * dim + c] * inv[i]);
      }
    }
    const auto w = fp8_weight(b.p.cpu, b.p.gpu, b.fast, 2 * half, dim);
    Buffers gate_up(b.p, ElemType::F32, n, 2 * half);
    DeviceBuffer gate_up_f(b.fast, ElemType::F32, n, 2 * half);
    const std::vector<float> before(static_cast<std::size_t>(n * half), 0.0f);
    const Results r = run_on_all(b, n, half, before, [&](Backend& backend, const Tensor& act, int which) {
      if (which == 0) backend.norm_swiglu(x.cpu, norms.cpu, rows.cpu, eps, w->cpu, act, scratch.cpu, gate_up.cpu);
      if (which == 1) backend.norm_swiglu(x.gpu, norms.gpu, rows.gpu, eps, w->exact, act, scratch.gpu, gate_up.gpu);
      if (which == 2) backend.norm_swiglu(xf, norms_f, rows_f, eps, w->fast, act, scratch_f, gate_up_f);
    });
    const auto gu = fp8_products(*w, 2 * half, dim, row_normed, n);
    std::vector<float> want(static_cast<std::size_t>(n * half));
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t c = 0; c < half; ++c) {
        const auto g = static_cast<float>(gu[i * 2 * half + c]), u = static_cast<float>(gu[i * 2 * half + half + c]);
        want[i * half + c] = (g / (1.0f + std::exp(-g))) * u;
      }
    }
    expect_fp8_path(r, want, kRecomputedTolerance, "norm_swiglu");
  }
}

// A row of zeros gives the bias alone (scale 0, codes 0); a row holding a NaN gives NaNs in its
// own outputs only, as the float paths do.
TEST(CudaFp8Products, ZeroRowsGiveTheBiasAndNanRowsStayTheirOwn) {
  CudaBackend fast(Backends::fast_options());
  const std::int64_t n = 20, m = 64, k = 256;
  const auto values = random_values(static_cast<std::size_t>(m * k), 0.1f);
  const TensorView view{"w", DType::F32, {m, k}, reinterpret_cast<const std::byte*>(values.data()), values.size() * 4};
  const WeightPart part{&view, nullptr, WeightFormat::FP8};
  const Weight w = fast.load_weight(std::span(&part, 1), WeightUse::Dense);
  const auto bias = random_values(static_cast<std::size_t>(m));
  const Weight bg = fast.load_vector(bias);
  auto xs = random_values(static_cast<std::size_t>(n * k));
  std::fill_n(xs.begin() + 3 * k, k, 0.0f);
  xs[7 * k + 100] = std::nanf("");
  DeviceBuffer x(fast, ElemType::F32, n, k), y(fast, ElemType::F32, n, m);
  fast.copy_to_device(x, xs.data());
  fast.linear(x, w, bg, y, Epilogue::Store);
  const auto got = download(fast, y);
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t r = 0; r < m; ++r) {
      const float v = got[i * m + r];
      if (i == 3) {
        ASSERT_EQ(v, bias[r]) << "zero row, output " << r;
      } else if (i == 7) {
        ASSERT_TRUE(std::isnan(v)) << "NaN row, output " << r;
      } else {
        ASSERT_TRUE(std::isfinite(v)) << "row " << i << ", output " << r;
      }
    }
  }
}

// The backend's description names the weights' formats (the most bytes first) and, in fast
// precision with FP8 weights, the FP8 activations.
TEST(CudaFp8Products, TheBackendNamesItsWeightFormats) {
  CudaBackend fast(Backends::fast_options());
  EXPECT_THAT(fast.name(), ::testing::HasSubstr(", BF16 weights, fast matmul, "));
  const auto values = random_values(64 * 256);
  const TensorView big{"big", DType::F32, {64, 256}, reinterpret_cast<const std::byte*>(values.data()), values.size() * 4};
  const TensorView small{"small", DType::F32, {4, 256}, reinterpret_cast<const std::byte*>(values.data()), 4 * 256 * 4};
  const WeightPart fp8{&big, nullptr, WeightFormat::FP8};
  fast.load_weight(std::span(&fp8, 1), WeightUse::Dense);
  const TensorView* plain = &small;
  fast.load_weight(std::span(&plain, 1), WeightUse::Dense);
  EXPECT_THAT(fast.name(), ::testing::HasSubstr(", FP8 weights (the rest BF16), fast matmul (FP8 activations), "));
}

}  // namespace
}  // namespace voxtral
