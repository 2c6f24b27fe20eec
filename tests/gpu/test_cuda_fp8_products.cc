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
// ran: exact precision's widened path stays within 1e-3 of the F32 product, BF16 activations
// within a few 1e-3 (CudaOps.FastMatmulIsWithinBf16Rounding).
//
// Each product runs with the scales, bias and residual applied by cuBLASLt (per-row "outer
// vector" scales, variant fp8_epilogue=library, the bias put into y ahead of the product), by
// our own epilogue kernel (fp8_epilogue=kernel), and the faster of the two for the shape (the
// default). Where cuBLASLt has no product with these scales for a shape, the library variant
// reports it and that is noted; it must have run for some of the shapes.
#include <gmock/gmock.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

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
  Weight on[5];  // on each of Backends' backends, in its order
};

struct Backends;
std::unique_ptr<Fp8Weight> fp8_weight(Backends& b, std::int64_t m, std::int64_t k);

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

// The backends every product runs on: the CPU backend (F32), the GPU in exact precision (the
// widened path), and in fast precision (FP8 products) three ways: the faster of the two for the
// shape (auto, timed), the scales applied by cuBLASLt (the bias put into y ahead of the
// product), and the scales applied by our own epilogue kernel.
struct Backends {
  static constexpr int kCount = 5;
  Pair p;
  CudaBackend fast, library, own;
  Backends() : fast(fast_options()), library(fast_options("fp8_epilogue=library")), own(fast_options("fp8_epilogue=kernel")) {}
  static CudaOptions fast_options(const std::string& variants = "") {
    CudaOptions o = Pair::options(variants);
    o.exact_matmul = false;
    return o;
  }
  Backend& operator[](int which) {
    Backend* all[] = {&p.cpu, &p.gpu, &fast, &library, &own};
    return *all[which];
  }
  // The same F32 values on each backend.
  std::vector<DeviceBuffer> upload(const std::vector<float>& values, std::int64_t rows, std::int64_t cols,
                                   ElemType type = ElemType::F32) {
    std::vector<DeviceBuffer> out;
    for (int i = 0; i < kCount; ++i) {
      out.emplace_back((*this)[i], type, rows, cols);
      if (!values.empty()) (*this)[i].copy_to_device(out.back(), values.data());
    }
    return out;
  }
  std::vector<Weight> vector(const std::vector<float>& values) {
    std::vector<Weight> out;
    for (int i = 0; i < kCount; ++i) out.push_back((*this)[i].load_vector(values));
    return out;
  }
};

std::unique_ptr<Fp8Weight> fp8_weight(Backends& b, std::int64_t m, std::int64_t k) {
  auto w = std::make_unique<Fp8Weight>();
  w->values = random_values(static_cast<std::size_t>(m * k), 1.0f / std::sqrt(static_cast<float>(k)));
  w->q = fp8_rows(w->values, m, k);
  w->dequantized.resize(w->values.size());
  for (std::size_t i = 0; i < w->values.size(); ++i) w->dequantized[i] = w->q.codes[i] * w->q.scales[i / static_cast<std::size_t>(k)];
  w->values_view = {"w", DType::F32, {m, k}, reinterpret_cast<const std::byte*>(w->values.data()), w->values.size() * 4};
  w->dequantized_view = {"w_f32", DType::F32, {m, k}, reinterpret_cast<const std::byte*>(w->dequantized.data()),
                         w->dequantized.size() * 4};
  const TensorView* reference = &w->dequantized_view;
  w->on[0] = b.p.cpu.load_weight(std::span(&reference, 1), WeightUse::Dense);
  const WeightPart part{&w->values_view, nullptr, WeightFormat::FP8};
  for (int i = 1; i < Backends::kCount; ++i) w->on[i] = b[i].load_weight(std::span(&part, 1), WeightUse::Dense);
  return w;
}

// Products by the library variant (index kLibrary of Backends).
constexpr int kLibrary = 3;
int library_products = 0;

// The library variant's error where cuBLASLt has no product with per-row scales for a shape:
// that error, and only that one, is noted instead of failing.
void note_library_refusal(const Error& e) {
  EXPECT_THAT(e.what(), ::testing::HasSubstr("cuBLASLt has no FP8 product with per-row scales")) << e.what();
  std::printf("note: %s\n", e.what());
}

// The GPU's compute capability as its backend's name gives it ("sm_90" -> 90; 0 if absent).
int compute_capability(const Backend& gpu) {
  const std::string name = gpu.name();
  const auto at = name.find("sm_");
  return at == std::string::npos ? 0 : std::atoi(name.c_str() + at + 3);
}

// One product on each backend, from the same y before it: op(backend index, y). The library
// variant's result is empty where cuBLASLt has no such product.
template <typename Op>
std::vector<std::vector<float>> run_on_all(Backends& b, std::int64_t n, std::int64_t m, const std::vector<float>& before,
                                           Op&& op) {
  auto y = b.upload(before, n, m);
  std::vector<std::vector<float>> got;
  for (int i = 0; i < Backends::kCount; ++i) {
    if (i == kLibrary) {
      try {
        op(i, y[i].view());
        ++library_products;
      } catch (const Error& e) {
        note_library_refusal(e);
        got.emplace_back();
        continue;
      }
    } else {
      op(i, y[i].view());
    }
    got.push_back(download(b[i], y[i]));
  }
  return got;
}

void expect_fp8_path(const std::vector<std::vector<float>>& r, const std::vector<float>& formula, double formula_tolerance,
                     const std::string& what) {
  EXPECT_LE(relative_error(r[1], r[0]), kWidenedTolerance) << "exact precision (widened) against the F32 product, " << what;
  for (int i : {2, 3, 4}) {
    const std::string path = i == 2 ? "fp8_epilogue=auto, " : i == kLibrary ? "fp8_epilogue=library, " : "fp8_epilogue=kernel, ";
    if (r[i].empty()) continue;  // the library had no product (noted by run_on_all)
    for (float v : r[i]) ASSERT_TRUE(std::isfinite(v)) << path << what;
    EXPECT_LE(relative_error(r[i], formula), formula_tolerance) << "against the formula, " << path << what;
    EXPECT_LE(relative_error(r[i], r[0]), kFloatTolerance) << "against the F32 product, " << path << what;
    EXPECT_GT(relative_error(r[i], r[1]), 10 * kWidenedTolerance) << "the FP8 product ran, " << path << what;
  }
}

// linear with a bias and each epilogue, encoder-like shapes: 300 to 1500 rows (37: rows padded
// to 16 for the product, and 770 outputs: rows of y and of the sums not in 16-byte chunks),
// k = 1280 and 5120.
TEST(CudaFp8Products, LinearEqualsTheFp8FormulaWithEachEpilogue) {
  Backends b;
  const int products_before = library_products;
  struct Shape {
    std::int64_t n, m, k;
  };
  for (const Shape s : {Shape{300, 1280, 1280}, Shape{1500, 256, 1280}, Shape{300, 512, 5120}, Shape{37, 770, 1280}}) {
    const auto w = fp8_weight(b, s.m, s.k);
    const auto bias = random_values(static_cast<std::size_t>(s.m));
    const auto bias_on = b.vector(bias);
    const auto xs = random_values(static_cast<std::size_t>(s.n * s.k), 2.0f);
    const auto before = random_values(static_cast<std::size_t>(s.n * s.m));
    const auto x = b.upload(xs, s.n, s.k);
    const auto products = fp8_products(*w, s.m, s.k, xs, s.n);
    for (const Epilogue e : {Epilogue::Store, Epilogue::Gelu, Epilogue::Add}) {
      const auto r = run_on_all(b, s.n, s.m, before, [&](int i, const Tensor& y) { b[i].linear(x[i], w->on[i], bias_on[i], y, e); });
      expect_fp8_path(r, with_epilogue(products, s.m, bias, e, before), kFormulaTolerance,
                      "linear n=" + std::to_string(s.n) + " m=" + std::to_string(s.m) + " k=" + std::to_string(s.k) +
                          " epilogue " + std::to_string(static_cast<int>(e)));
    }
  }
  // Hopper's cuBLASLt has these products (H200, cuBLAS 13.0); on sm_89 it may have none.
  if (compute_capability(b.fast) >= 90) {
    EXPECT_GT(library_products, products_before) << "cuBLASLt's FP8 product with per-row scales ran for none of the shapes";
  } else if (library_products == products_before) {
    std::printf("note: cuBLASLt had no FP8 product with per-row scales for any shape on %s\n", b.fast.name().c_str());
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
  const auto x = b.upload(xs, n, dim), scratch = b.upload({}, n, dim);
  const auto norm = random_values(static_cast<std::size_t>(dim));
  const auto norm_on = b.vector(norm);
  std::vector<float> normed(xs.size()), inv(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    double ss = 0;
    for (std::int64_t c = 0; c < dim; ++c) ss += static_cast<double>(xs[i * dim + c]) * xs[i * dim + c];
    inv[i] = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(dim)) + eps);
    for (std::int64_t c = 0; c < dim; ++c) normed[i * dim + c] = norm[c] * (xs[i * dim + c] * inv[i]);
  }

  {  // norm_linear, Store with a bias
    const std::int64_t m = 1280;
    const auto w = fp8_weight(b, m, dim);
    const auto bias = random_values(static_cast<std::size_t>(m));
    const auto bias_on = b.vector(bias);
    const std::vector<float> before(static_cast<std::size_t>(n * m), 0.0f);
    const auto r = run_on_all(b, n, m, before, [&](int i, const Tensor& y) {
      b[i].norm_linear(x[i], norm_on[i], eps, w->on[i], bias_on[i], y, Epilogue::Store, scratch[i]);
    });
    expect_fp8_path(r, with_epilogue(fp8_products(*w, m, dim, normed, n), m, bias, Epilogue::Store, before),
                    kRecomputedTolerance, "norm_linear");
  }

  {  // swiglu_linear, Add with a bias
    const auto gate_up = random_values(static_cast<std::size_t>(n * 2 * hidden), 2.0f);
    const auto gu = b.upload(gate_up, n, 2 * hidden), act = b.upload({}, n, hidden);
    std::vector<float> silu(static_cast<std::size_t>(n * hidden));
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t c = 0; c < hidden; ++c) {
        const float g = gate_up[i * 2 * hidden + c], u = gate_up[i * 2 * hidden + hidden + c];
        silu[i * hidden + c] = (g / (1.0f + std::exp(-g))) * u;
      }
    }
    const auto w = fp8_weight(b, dim, hidden);
    const auto bias = random_values(static_cast<std::size_t>(dim));
    const auto bias_on = b.vector(bias);
    const auto before = random_values(static_cast<std::size_t>(n * dim));
    const auto r = run_on_all(b, n, dim, before, [&](int i, const Tensor& y) {
      b[i].swiglu_linear(gu[i], w->on[i], bias_on[i], y, Epilogue::Add, act[i]);
    });
    expect_fp8_path(r, with_epilogue(fp8_products(*w, dim, hidden, silu, n), dim, bias, Epilogue::Add, before),
                    kRecomputedTolerance, "swiglu_linear");
  }

  {  // norm_swiglu with a norm per row: gate|up by the formula, then SiLU-gate
    const std::int64_t half = 512;
    constexpr int kNormRows = 3;
    const auto norm_values = random_values(static_cast<std::size_t>(kNormRows * dim));
    const auto norms = b.upload(norm_values, kNormRows, dim);
    std::vector<std::int32_t> which_norm(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) which_norm[i] = static_cast<std::int32_t>(i % kNormRows);
    std::vector<DeviceBuffer> rows;
    for (int i = 0; i < Backends::kCount; ++i) {
      rows.emplace_back(b[i], ElemType::I32, n, 1);
      b[i].copy_to_device(rows.back(), which_norm.data());
    }
    std::vector<float> row_normed(xs.size());
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t c = 0; c < dim; ++c) {
        row_normed[i * dim + c] = norm_values[which_norm[i] * dim + c] * (xs[i * dim + c] * inv[i]);
      }
    }
    const auto w = fp8_weight(b, 2 * half, dim);
    const auto gate_up = b.upload({}, n, 2 * half);
    const std::vector<float> before(static_cast<std::size_t>(n * half), 0.0f);
    const auto r = run_on_all(b, n, half, before, [&](int i, const Tensor& act) {
      b[i].norm_swiglu(x[i], norms[i], rows[i], eps, w->on[i], act, scratch[i], gate_up[i]);
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
// own outputs only, as the float paths do; each way (the library variant where cuBLASLt has the product).
TEST(CudaFp8Products, ZeroRowsGiveTheBiasAndNanRowsStayTheirOwn) {
  const std::int64_t n = 20, m = 64, k = 256;
  const auto values = random_values(static_cast<std::size_t>(m * k), 0.1f);
  const TensorView view{"w", DType::F32, {m, k}, reinterpret_cast<const std::byte*>(values.data()), values.size() * 4};
  const WeightPart part{&view, nullptr, WeightFormat::FP8};
  const auto bias = random_values(static_cast<std::size_t>(m));
  auto xs = random_values(static_cast<std::size_t>(n * k));
  std::fill_n(xs.begin() + 3 * k, k, 0.0f);
  xs[7 * k + 100] = std::nanf("");
  for (const std::string variant : {"", "fp8_epilogue=library", "fp8_epilogue=kernel"}) {
    CudaBackend fast(Backends::fast_options(variant));
    const Weight w = fast.load_weight(std::span(&part, 1), WeightUse::Dense);
    const Weight bg = fast.load_vector(bias);
    DeviceBuffer x(fast, ElemType::F32, n, k), y(fast, ElemType::F32, n, m);
    fast.copy_to_device(x, xs.data());
    try {
      fast.linear(x, w, bg, y, Epilogue::Store);
    } catch (const Error& e) {  // only the library variant may have no product for the shape
      ASSERT_EQ(variant, "fp8_epilogue=library") << e.what();
      note_library_refusal(e);
      continue;
    }
    const auto got = download(fast, y);
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t r = 0; r < m; ++r) {
        const float v = got[i * m + r];
        if (i == 3) {
          ASSERT_EQ(v, bias[r]) << "zero row, output " << r << ", variant '" << variant << "'";
        } else if (i == 7) {
          ASSERT_TRUE(std::isnan(v)) << "NaN row, output " << r << ", variant '" << variant << "'";
        } else {
          ASSERT_TRUE(std::isfinite(v)) << "row " << i << ", output " << r << ", variant '" << variant << "'";
        }
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
