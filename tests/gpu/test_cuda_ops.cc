// Every CUDA op against the CPU backend on random inputs: a failing op is named directly,
// before the end-to-end parity tests run.
#include <cstdlib>

#include "gpu/gpu_test_util.h"

namespace voxtral {
namespace {

using namespace gpu_test;  // NOLINT: the helpers of every CUDA op test

TEST(CudaOps, LinearEveryPathAndEpilogue) {
  Pair p;
  for (auto [m, k] : {std::pair<std::int64_t, std::int64_t>{37, 64}, {64, 36}, {300, 256}, {70, 4360}, {33, 9216}}) {
    WeightFile f;
    f.add("w", m, k);
    f.build();
    const TensorView* parts[] = {&f.get("w")};
    const Weight wc = p.cpu.load_weight(parts, WeightUse::Streamed);
    const Weight wg = p.gpu.load_weight(parts, WeightUse::Streamed);
    const auto bias_values = random_values(static_cast<std::size_t>(m));
    const Weight bc = p.cpu.load_vector(bias_values), bg = p.gpu.load_vector(bias_values);
    for (std::int64_t n : {1, 3, 5, 8, 20, 64}) {
      for (Epilogue e : {Epilogue::Store, Epilogue::Gelu, Epilogue::Add}) {
        const auto xs = random_values(static_cast<std::size_t>(n * (k + 3)));
        Buffers x(p, ElemType::F32, n, k + 3, xs.data());
        const auto ys = random_values(static_cast<std::size_t>(n * m));
        Buffers y(p, ElemType::F32, n, m, ys.data());
        // A strided, offset input view (the unaligned path), and for one row also an aligned
        // one (the vectorized matrix-vector path).
        for (int offset : n == 1 ? std::vector<int>{1, 0} : std::vector<int>{1}) {
          p.cpu.copy_to_device(y.cpu, ys.data());
          p.gpu.copy_to_device(y.gpu, ys.data());
          const Tensor xc = x.cpu.view().col_range(offset, k), xg = x.gpu.view().col_range(offset, k);
          p.cpu.linear(xc, wc, bc, y.cpu, e);
          p.gpu.linear(xg, wg, bg, y.gpu, e);
          expect_close(p, y.cpu, y.gpu, 2e-5, "linear m=" + std::to_string(m) + " k=" + std::to_string(k) + " n=" +
                                                 std::to_string(n) + " offset " + std::to_string(offset) +
                                                 " epilogue " + std::to_string(int(e)));
        }
      }
    }
  }
}

// The products of many rows whose input is computed on the way (RMSNorm or SiLU-gate written
// straight as the 16-bit halves), with a bias in the epilogue and the residual added, over row
// counts that share one algorithm per bucket (9-16, 17-32, ..., 257-512) and first uses of each.
TEST(CudaOps, ManyRowProductsFromNormAndSwiGlu) {
  Pair p;
  for (auto [m, k] : {std::pair<std::int64_t, std::int64_t>{96, 128}, {300, 256}}) {
    WeightFile f;
    f.add("w", m, k);
    f.build();
    const TensorView* parts[] = {&f.get("w")};
    const Weight wc = p.cpu.load_weight(parts, WeightUse::Dense);
    const Weight wg = p.gpu.load_weight(parts, WeightUse::Dense);
    const auto bias_values = random_values(static_cast<std::size_t>(m));
    const Weight bc = p.cpu.load_vector(bias_values), bg = p.gpu.load_vector(bias_values);
    const auto norm_values = random_values(static_cast<std::size_t>(k));
    const Weight nc = p.cpu.load_vector(norm_values), ng = p.gpu.load_vector(norm_values);
    for (std::int64_t n : {9, 20, 33, 64, 100, 300, 512, 31}) {
      const std::string shape = " m=" + std::to_string(m) + " k=" + std::to_string(k) + " n=" + std::to_string(n);
      const auto xs = random_values(static_cast<std::size_t>(n * 2 * k));
      Buffers x(p, ElemType::F32, n, 2 * k, xs.data());
      const auto ys = random_values(static_cast<std::size_t>(n * m));
      Buffers y(p, ElemType::F32, n, m, ys.data());
      Buffers scratch(p, ElemType::F32, n, k);
      const Tensor xc = x.cpu.view().col_range(0, k), xg = x.gpu.view().col_range(0, k);  // a strided input
      p.cpu.norm_linear(xc, nc, 1e-5f, wc, bc, y.cpu, Epilogue::Add, scratch.cpu);
      p.gpu.norm_linear(xg, ng, 1e-5f, wg, bg, y.gpu, Epilogue::Add, scratch.gpu);
      expect_close(p, y.cpu, y.gpu, 2e-5, "norm_linear" + shape);
      p.cpu.swiglu_linear(x.cpu, wc, bc, y.cpu, Epilogue::Store, scratch.cpu);
      p.gpu.swiglu_linear(x.gpu, wg, bg, y.gpu, Epilogue::Store, scratch.gpu);
      expect_close(p, y.cpu, y.gpu, 2e-5, "swiglu_linear" + shape);
      p.cpu.swiglu_linear(x.cpu, wc, Weight{}, y.cpu, Epilogue::Gelu, scratch.cpu);
      p.gpu.swiglu_linear(x.gpu, wg, Weight{}, y.gpu, Epilogue::Gelu, scratch.gpu);
      expect_close(p, y.cpu, y.gpu, 2e-5, "swiglu_linear, GELU" + shape);
    }
  }
}

TEST(CudaOps, FastMatmulIsWithinBf16Rounding) {
  Pair p;
  CudaOptions fast = Pair::options();
  fast.exact_matmul = false;
  CudaBackend gpu_fast(fast);
  WeightFile f;
  f.add("w", 96, 128);
  f.build();
  const TensorView* parts[] = {&f.get("w")};
  const Weight wc = p.cpu.load_weight(parts, WeightUse::Dense);
  const Weight wg = gpu_fast.load_weight(parts, WeightUse::Dense);
  const auto xs = random_values(40 * 128);
  DeviceBuffer xc(p.cpu, ElemType::F32, 40, 128), yc(p.cpu, ElemType::F32, 40, 96);
  DeviceBuffer xg(gpu_fast, ElemType::F32, 40, 128), yg(gpu_fast, ElemType::F32, 40, 96);
  p.cpu.copy_to_device(xc, xs.data());
  gpu_fast.copy_to_device(xg, xs.data());
  const auto bias_values = random_values(96);
  const Weight bc = p.cpu.load_vector(bias_values), bg = gpu_fast.load_vector(bias_values);
  p.cpu.linear(xc, wc, bc, yc, Epilogue::Store);
  gpu_fast.linear(xg, wg, bg, yg, Epilogue::Store);
  const double err = relative_error(download(gpu_fast, yg), download(p.cpu, yc));
  EXPECT_LE(err, 2e-2);
  EXPECT_GT(err, 1e-6);  // it really is the BF16 path
}

TEST(CudaOps, NormActivationEmbedIm2colArgmax) {
  Pair p;
  const std::int64_t rows = 5, cols = 3072;
  const auto xs = random_values(static_cast<std::size_t>(rows * cols), 3.0f);
  Buffers x(p, ElemType::F32, rows, cols, xs.data());
  const auto ws = random_values(static_cast<std::size_t>(cols));
  const Weight wc = p.cpu.load_vector(ws), wg = p.gpu.load_vector(ws);
  Buffers y(p, ElemType::F32, rows, cols);
  p.cpu.rms_norm(x.cpu, wc, 1e-5f, y.cpu);
  p.gpu.rms_norm(x.gpu, wg, 1e-5f, y.gpu);
  expect_close(p, y.cpu, y.gpu, 1e-6, "rms_norm");

  Buffers half(p, ElemType::F32, rows, cols / 2);
  p.cpu.silu_mul(x.cpu, half.cpu);
  p.gpu.silu_mul(x.gpu, half.gpu);
  expect_close(p, half.cpu, half.gpu, 1e-6, "silu_mul");

  WeightFile f;
  f.add("table", 50, 48);
  f.build();
  const TensorView* parts[] = {&f.get("table")};
  const Weight tc = p.cpu.load_weight(parts, WeightUse::Streamed), tg = p.gpu.load_weight(parts, WeightUse::Streamed);
  const std::vector<std::int32_t> ids{3, 49, 0, 7};
  Buffers id(p, ElemType::I32, 4, 1, ids.data());
  const auto adds = random_values(4 * 48);
  Buffers add(p, ElemType::F32, 4, 48, adds.data());
  Buffers e(p, ElemType::F32, 4, 48);
  p.cpu.embed(tc, id.cpu, add.cpu, e.cpu);
  p.gpu.embed(tg, id.gpu, add.gpu, e.gpu);
  expect_close(p, e.cpu, e.gpu, 0, "embed");

  const auto ins = random_values(11 * 6);
  Buffers in(p, ElemType::F32, 11, 6, ins.data());
  for (int stride : {1, 2}) {
    const std::int64_t out_rows = (11 - 3) / stride + 1;
    Buffers out(p, ElemType::F32, out_rows, 18);
    std::vector<std::int32_t> index;
    for (std::int64_t t = 0; t < out_rows; ++t) {
      for (int k = 0; k < 3; ++k) index.push_back(static_cast<std::int32_t>((t * stride + k * 7) % 11));  // any rows
    }
    Buffers picked(p, ElemType::I32, out_rows * 3, 1, index.data());
    p.cpu.im2col(in.cpu, picked.cpu, 3, out.cpu);
    p.gpu.im2col(in.gpu, picked.gpu, 3, out.gpu);
    expect_close(p, out.cpu, out.gpu, 0, "im2col stride " + std::to_string(stride));
  }

  auto logits = random_values(3 * 131072);
  logits[100] = logits[200] = 50.0f;             // tie: the lower index wins
  logits[131072 + 131071] = 60.0f;               // the last column
  Buffers l(p, ElemType::F32, 3, 131072, logits.data());
  Buffers am(p, ElemType::I32, 3, 1);
  p.cpu.argmax(l.cpu, am.cpu);
  p.gpu.argmax(l.gpu, am.gpu);
  EXPECT_EQ(download<std::int32_t>(p.gpu, am.gpu), download<std::int32_t>(p.cpu, am.cpu));
  EXPECT_EQ(download<std::int32_t>(p.gpu, am.gpu)[0], 100);
  EXPECT_EQ(download<std::int32_t>(p.gpu, am.gpu)[1], 131071);
}

struct AttentionCase {
  int n_heads, n_kv_heads, head_dim, window, rows, first_position;
  ElemType cache;
};

class CudaAttention : public ::testing::TestWithParam<AttentionCase> {};

// Runs one case on a fresh backend; the caller sets the split policy in the environment. One
// sequence, its ring in one page (page_size 0, as the encoder has it) or in scattered
// 16-position pages.
void check_attention(const AttentionCase& c, const std::string& policy, int page_size) {
  Pair p(policy == "default" ? "" : "attention_keys=" + policy);
  const std::int64_t qw = static_cast<std::int64_t>(c.n_heads) * c.head_dim;
  const std::int64_t kvw = static_cast<std::int64_t>(c.n_kv_heads) * c.head_dim;
  // Long decode windows fill the cache in batches (one position at a time would take the CPU
  // reference minutes), then decode the last positions one by one.
  const int fill_rows = c.rows == 1 && c.first_position > 2000 ? 512 : c.rows;
  int capacity = c.window + fill_rows - 1;
  if (page_size > 0) capacity = (capacity + page_size - 1) / page_size * page_size;
  const KvCacheLayout layout{c.n_kv_heads, c.head_dim, capacity, c.window, c.cache, page_size};
  const int pages = layout.pages_per_sequence();
  const std::vector<std::int32_t> table = page_size > 0 ? scattered_pages(1, pages) : std::vector<std::int32_t>{0};
  Buffers kc(p, c.cache, layout.capacity, kvw), vc(p, c.cache, layout.capacity, kvw);
  const RopeParams qr{c.n_heads, c.head_dim, 1e6}, kr{c.n_kv_heads, c.head_dim, 1e6};
  // Fill the cache with the positions before the first row, a batch at a time.
  int position = 0;
  const int total = c.first_position + c.rows;
  Buffers out(p, ElemType::F32, fill_rows, qw);
  while (position < total) {
    const bool filling = fill_rows != c.rows && position + 8 < c.first_position;
    const int batch = filling ? std::min(fill_rows, c.first_position - 8 - position) : c.rows;
    const int n = std::min(batch, total - position);
    const auto qkv = random_values(static_cast<std::size_t>(n * (qw + 2 * kvw)));
    Buffers buf(p, ElemType::F32, n, qw + 2 * kvw, qkv.data());
    std::vector<std::int32_t> pos(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) pos[static_cast<std::size_t>(i)] = position + i;
    const BatchRows rows(p, pos, std::vector<std::int32_t>(static_cast<std::size_t>(n), 0), table, pages);
    for (Backend* b : {static_cast<Backend*>(&p.cpu), static_cast<Backend*>(&p.gpu)}) {
      const bool cpu = b == &p.cpu;
      const Tensor all = cpu ? buf.cpu.view() : buf.gpu.view();
      const KvRows kv_rows = cpu ? rows.cpu() : rows.gpu();
      b->rope_kv_append(all.col_range(0, qw), all.col_range(qw, kvw), all.col_range(qw + kvw, kvw), kv_rows, qr, kr,
                        layout, cpu ? kc.cpu : kc.gpu, cpu ? vc.cpu : vc.gpu);
      b->attention(all.col_range(0, qw), kv_rows, c.n_heads, layout, cpu ? kc.cpu : kc.gpu, cpu ? vc.cpu : vc.gpu,
                   (cpu ? out.cpu.view() : out.gpu.view()).row_range(0, n));
    }
    expect_close(p, buf.cpu.view().col_range(0, qw), buf.gpu.view().col_range(0, qw), 1e-6, "rotated q");
    // A BF16 cache turns a last-bit difference in the rotated keys (sincosf vs cosf) into
    // a whole BF16 step now and then; F32 caches must agree to rounding. The tensor-core
    // kernel (BF16 cache, 16 rows or more) also rounds Q and the softmax weights to BF16,
    // as transformers' BF16 attention does: up to two BF16 steps (2^-7) of the largest output
    // (measured on the H100: at most 3.7e-3); a wrong fragment or mask is off by far more.
    const bool tensor_cores = c.cache == ElemType::BF16 && n >= 16 && (c.head_dim == 64 || c.head_dim == 128);
    expect_close(p, out.cpu.view().row_range(0, n), out.gpu.view().row_range(0, n),
                 tensor_cores ? 7.8e-3 : c.cache == ElemType::BF16 ? 2e-3 : 2e-5,
                 "attention at position " + std::to_string(position) + ", split policy " + policy + ", page size " +
                     std::to_string(page_size));
    position += n;
  }
}

TEST_P(CudaAttention, MatchesTheCpu) {
  // The default split policy, then every window split into 32-key blocks (the most partial
  // results the in-kernel merge handles); the ring in one page, then in 16-position pages.
  for (const char* policy : {"default", "32"}) {
    for (int page_size : {0, 16}) check_attention(GetParam(), policy, page_size);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaAttention,
    ::testing::Values(AttentionCase{6, 2, 32, 48, 1, 100, ElemType::F32},     // decode, GQA 3:1, ring wrapped
                      AttentionCase{6, 2, 32, 48, 38, 0, ElemType::F32},      // prefill
                      AttentionCase{4, 4, 64, 24, 40, 90, ElemType::F32},     // encoder-like MHA
                      AttentionCase{32, 8, 128, 300, 1, 700, ElemType::F32},  // real decoder heads, several splits
                      AttentionCase{32, 8, 128, 300, 7, 500, ElemType::BF16},
                      AttentionCase{32, 8, 128, 300, 1, 420, ElemType::BF16},  // decode, BF16 cache
                      AttentionCase{8, 2, 64, 200, 1, 260, ElemType::F32},     // decode, head_dim 64
                      AttentionCase{8, 2, 128, 1000, 1, 1100, ElemType::BF16},  // long window: 16+ slices
                      AttentionCase{4, 1, 64, 4200, 1, 4300, ElemType::BF16},   // 64- and 128-key slices
                      // Tensor-core path (BF16 cache, 16+ rows): encoder-like chunks past the
                      // window, a partial last block, and a GQA prefill with head_dim 128.
                      AttentionCase{4, 4, 64, 150, 100, 300, ElemType::BF16},
                      AttentionCase{2, 2, 64, 750, 512, 1024, ElemType::BF16},
                      AttentionCase{8, 2, 128, 300, 38, 0, ElemType::BF16},
                      AttentionCase{8, 2, 128, 90, 17, 170, ElemType::BF16},
                      AttentionCase{3, 3, 16, 40, 33, 0, ElemType::BF16}));

// The argmax kernel leaves its per-row words (best key, blocks done) zeroed for the next call,
// whatever the next call's row count: calls of 3, 1, 2 and 3 rows on one backend, each against
// the CPU's ids.
TEST(CudaOps, ArgmaxCallsOfChangingRowCounts) {
  Pair p;
  auto logits = random_values(3 * 70000);
  logits[5] = 9.0f;                  // row 0: early
  logits[70000 + 69999] = 9.0f;      // row 1: the last column
  logits[2 * 70000 + 40000] = 9.0f;  // row 2: a middle block
  Buffers l(p, ElemType::F32, 3, 70000, logits.data());
  Buffers am(p, ElemType::I32, 3, 1);
  for (int rows : {3, 1, 2, 3, 1}) {
    p.cpu.argmax(l.cpu.view().row_range(0, rows), am.cpu.view().row_range(0, rows));
    p.gpu.argmax(l.gpu.view().row_range(0, rows), am.gpu.view().row_range(0, rows));
    const auto gpu = download<std::int32_t>(p.gpu, am.gpu), cpu = download<std::int32_t>(p.cpu, am.cpu);
    EXPECT_EQ(std::vector<std::int32_t>(gpu.begin(), gpu.begin() + rows), std::vector<std::int32_t>(cpu.begin(), cpu.begin() + rows))
        << rows << " rows";
    EXPECT_EQ(gpu[0], 5) << rows << " rows";
  }
}

TEST(CudaRecording, ReplayUsesTheCurrentInputs) {
  Pair p;
  WeightFile f;
  f.add("w", 1000, 64);
  f.build();
  const TensorView* parts[] = {&f.get("w")};
  const Weight w = p.gpu.load_weight(parts, WeightUse::Streamed);
  const Weight wc = p.cpu.load_weight(parts, WeightUse::Streamed);
  DeviceBuffer x(p.gpu, ElemType::F32, 1, 64), logits(p.gpu, ElemType::F32, 1, 1000), id(p.gpu, ElemType::I32, 1, 1);
  DeviceBuffer xc(p.cpu, ElemType::F32, 1, 64), lc(p.cpu, ElemType::F32, 1, 1000), idc(p.cpu, ElemType::I32, 1, 1);
  auto run = [&] {
    p.gpu.linear(x, w, Weight{}, logits, Epilogue::Store);
    p.gpu.argmax(logits, id);
  };
  std::unique_ptr<Recording> graph;
  for (int trial = 0; trial < 5; ++trial) {
    const auto xs = random_values(64);
    p.gpu.copy_to_device(x, xs.data());
    p.cpu.copy_to_device(xc, xs.data());
    if (!graph) {
      graph = p.gpu.record(run);
    } else {
      p.gpu.replay(*graph);
    }
    p.cpu.linear(xc, wc, Weight{}, lc, Epilogue::Store);
    p.cpu.argmax(lc, idc);
    EXPECT_EQ(download<std::int32_t>(p.gpu, id), download<std::int32_t>(p.cpu, idc)) << "trial " << trial;
  }
}

TEST(CudaErrors, OutOfMemoryIsAClearError) {
  CudaBackend gpu(Pair::options());
  try {
    gpu.allocate(std::size_t{1} << 50);
    FAIL() << "a petabyte allocation succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of GPU memory"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace voxtral
