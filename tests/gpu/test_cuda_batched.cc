// The CUDA ops of a batched decode step against the CPU backend: N rows of N streams, each at
// its own position in its own pages of the K/V cache, products of N rows on both sides of the
// crossover from the weight-streaming kernel to cuBLASLt, and the decoder pool's batched
// steps against each stream decoded alone.
#include <cstdlib>
#include <numeric>

#include "gpu/gpu_test_util.h"
#include "core/audio.h"
#include "model/model.h"
#include "runtime/transcriber.h"

namespace voxtral {
namespace {

using namespace gpu_test;  // NOLINT: the helpers of every CUDA op test

// The kernel variants of a crossover setting ("" = the measured default).
std::string streamed_rows(const std::string& rows) { return rows.empty() ? "" : "streamed_rows=" + rows; }

// Products of 1 to 256 rows: with the measured crossover, with the weight-streaming kernel
// for every count (passes of 8 rows), and with cuBLASLt for every count (one product of the
// stacked 16-bit halves).
TEST(CudaBatchedOps, ProductsOfNRowsOnEitherSideOfTheCrossover) {
  for (const std::string crossover : {"", "256", "0"}) {
    Pair p(streamed_rows(crossover));
    for (auto [m, k] : {std::pair<std::int64_t, std::int64_t>{300, 1024}, {96, 4104}}) {
      WeightFile f;
      f.add("w", m, k);
      f.build();
      const TensorView* parts[] = {&f.get("w")};
      const Weight wc = p.cpu.load_weight(parts, WeightUse::Streamed), wg = p.gpu.load_weight(parts, WeightUse::Streamed);
      const auto bias_values = random_values(static_cast<std::size_t>(m));
      const Weight bc = p.cpu.load_vector(bias_values), bg = p.gpu.load_vector(bias_values);
      const auto norm_values = random_values(static_cast<std::size_t>(k));
      const Weight nc = p.cpu.load_vector(norm_values), ng = p.gpu.load_vector(norm_values);
      for (std::int64_t n : {1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 64, 100, 256}) {
        const std::string what = " m=" + std::to_string(m) + " k=" + std::to_string(k) + " n=" + std::to_string(n) +
                                 " crossover '" + crossover + "'";
        const auto xs = random_values(static_cast<std::size_t>(n * k), 2.0f);
        Buffers x(p, ElemType::F32, n, k, xs.data()), scratch(p, ElemType::F32, n, k);
        const auto ys = random_values(static_cast<std::size_t>(n * m));
        Buffers y(p, ElemType::F32, n, m, ys.data());
        for (Epilogue e : {Epilogue::Store, Epilogue::Gelu, Epilogue::Add}) {
          p.cpu.linear(x.cpu, wc, bc, y.cpu, e);
          p.gpu.linear(x.gpu, wg, bg, y.gpu, e);
          expect_close(p, y.cpu, y.gpu, 2e-5, "linear, epilogue " + std::to_string(static_cast<int>(e)) + what);
        }
        p.cpu.norm_linear(x.cpu, nc, 1e-5f, wc, Weight{}, y.cpu, Epilogue::Add, scratch.cpu);
        p.gpu.norm_linear(x.gpu, ng, 1e-5f, wg, Weight{}, y.gpu, Epilogue::Add, scratch.gpu);
        expect_close(p, y.cpu, y.gpu, 2e-5, "norm_linear" + what);
      }
    }
  }
}

TEST(CudaBatchedOps, RmsNormRowsAndGatherRows) {
  Pair p;
  const std::int64_t rows = 37, cols = 3072, table_rows = 5;
  const auto xs = random_values(static_cast<std::size_t>(rows * cols), 3.0f);
  Buffers x(p, ElemType::F32, rows, cols, xs.data()), y(p, ElemType::F32, rows, cols);
  // A strided norm table: each row's norms are one layer's columns of a wider table.
  const auto norm_values = random_values(static_cast<std::size_t>(table_rows * 2 * cols));
  Buffers norms(p, ElemType::F32, table_rows, 2 * cols, norm_values.data());
  std::vector<std::int32_t> which(static_cast<std::size_t>(rows));
  for (auto& w : which) w = static_cast<std::int32_t>(rng() % table_rows);
  Buffers norm_rows(p, ElemType::I32, rows, 1, which.data());
  p.cpu.rms_norm_rows(x.cpu, norms.cpu.view().col_range(cols, cols), norm_rows.cpu, 1e-5f, y.cpu);
  p.gpu.rms_norm_rows(x.gpu, norms.gpu.view().col_range(cols, cols), norm_rows.gpu, 1e-5f, y.gpu);
  expect_close(p, y.cpu, y.gpu, 1e-6, "rms_norm_rows");

  std::vector<std::int32_t> indices{36, 0, 5, 5, 17, 2};
  Buffers index(p, ElemType::I32, 6, 1, indices.data()), gathered(p, ElemType::F32, 6, cols);
  p.cpu.gather_rows(x.cpu, index.cpu, gathered.cpu);
  p.gpu.gather_rows(x.gpu, index.gpu, gathered.gpu);
  expect_close(p, gathered.cpu, gathered.gpu, 0, "gather_rows");
  EXPECT_EQ(download(p.gpu, gathered.gpu.view().row_range(0, 1)), std::vector<float>(xs.end() - cols, xs.end()));
}

class CudaBatchedDecodeOps : public ::testing::TestWithParam<DecodeLayerShape> {};

// The fused ops of a step (RMSNorm + q|k|v + RoPE + paged K/V append, RMSNorm with each row's
// norm + gate|up + SiLU-gate, RMSNorm + LM head) for N rows of N sequences against the CPU
// backend's separate ops, below and above the crossover; then with the weight-streaming
// kernel for every count (passes of 8 rows).
void check_fused_ops(const DecodeLayerShape& c, const std::string& crossover) {
  Pair p(streamed_rows(crossover));
  const std::int64_t qw = static_cast<std::int64_t>(c.n_heads) * c.head_dim;
  const std::int64_t kvw = static_cast<std::int64_t>(c.n_kv_heads) * c.head_dim;
  WeightFile f;
  f.add("wq", qw, c.dim), f.add("wk", kvw, c.dim), f.add("wv", kvw, c.dim);
  f.add("w1", c.hidden, c.dim), f.add("w3", c.hidden, c.dim), f.add("head", c.vocab, c.dim);
  f.build();
  const TensorView* qkv_parts[] = {&f.get("wq"), &f.get("wk"), &f.get("wv")};
  const TensorView* gate_up_parts[] = {&f.get("w1"), &f.get("w3")};
  const TensorView* head_parts[] = {&f.get("head")};
  const Weight qkv_c = p.cpu.load_weight(qkv_parts, WeightUse::Streamed), qkv_g = p.gpu.load_weight(qkv_parts, WeightUse::Streamed);
  const Weight gu_c = p.cpu.load_weight(gate_up_parts, WeightUse::Streamed);
  const Weight gu_g = p.gpu.load_weight(gate_up_parts, WeightUse::Streamed);
  const Weight head_c = p.cpu.load_weight(head_parts, WeightUse::Streamed);
  const Weight head_g = p.gpu.load_weight(head_parts, WeightUse::Streamed);
  const auto norm_values = random_values(static_cast<std::size_t>(c.dim));
  const Weight norm_c = p.cpu.load_vector(norm_values), norm_g = p.gpu.load_vector(norm_values);
  constexpr int kNormRows = 4;  // e.g. four streams' delays
  const auto ffn_values = random_values(static_cast<std::size_t>(kNormRows * c.dim));
  Buffers ffn_norms(p, ElemType::F32, kNormRows, c.dim, ffn_values.data());
  const RopeParams qr{c.n_heads, c.head_dim, 1e6}, kr{c.n_kv_heads, c.head_dim, 1e6};

  for (int n : {1, 2, 3, 8, 13, 40}) {
    const std::string at =
        " dim " + std::to_string(c.dim) + ", " + std::to_string(n) + " rows, crossover '" + crossover + "'";
    for (ElemType cache_type : {ElemType::F32, ElemType::BF16}) {
      // Sequences 0..n-1 in shuffled row order, 16-position pages scattered over the cache;
      // positions at the start, the end of a page, past the ring's wrap.
      const KvCacheLayout layout{c.n_kv_heads, c.head_dim, 64, 40, cache_type, 16};
      const int pages = layout.pages_per_sequence();
      const auto table = scattered_pages(n, pages);
      std::vector<std::int32_t> seq(static_cast<std::size_t>(n)), pos(static_cast<std::size_t>(n));
      std::iota(seq.begin(), seq.end(), 0);
      std::shuffle(seq.begin(), seq.end(), rng);
      const int some[] = {0, 7, 15, 16, 63, 64, 1234, 100000};
      for (int i = 0; i < n; ++i) pos[static_cast<std::size_t>(i)] = i < 8 ? some[i] : static_cast<int>(rng() % 5000);
      const BatchRows rows(p, pos, seq, table, pages);
      Buffers kc(p, cache_type, static_cast<std::int64_t>(n) * pages * 16, kvw);
      Buffers vc(p, cache_type, static_cast<std::int64_t>(n) * pages * 16, kvw);
      const auto xs = random_values(static_cast<std::size_t>(n * c.dim), 2.0f);
      Buffers x(p, ElemType::F32, n, c.dim, xs.data());
      Buffers normed(p, ElemType::F32, n, c.dim), qkv(p, ElemType::F32, n, qw + 2 * kvw);
      p.cpu.norm_qkv_rope(x.cpu, norm_c, 1e-5f, qkv_c, qkv.cpu, normed.cpu, rows.cpu(), qr, kr, layout, kc.cpu, vc.cpu);
      p.gpu.norm_qkv_rope(x.gpu, norm_g, 1e-5f, qkv_g, qkv.gpu, normed.gpu, rows.gpu(), qr, kr, layout, kc.gpu, vc.gpu);
      expect_close(p, qkv.cpu.view().col_range(0, qw), qkv.gpu.view().col_range(0, qw), 2e-5, "rotated q" + at);
      // A BF16 cache may round a last-bit difference to a whole BF16 step.
      const double cache_tolerance = cache_type == ElemType::BF16 ? 1e-2 : 2e-5;
      for (std::size_t i = 0; i < seq.size(); ++i) {
        const std::int64_t r = kv_cache_row(layout, table.data(), seq[i], pos[i]);
        const std::string row = at + ", row " + std::to_string(i) + " at " + std::to_string(pos[i]);
        expect_close(p, kc.cpu.view().row_range(r, 1), kc.gpu.view().row_range(r, 1), cache_tolerance, "k cache" + row);
        expect_close(p, vc.cpu.view().row_range(r, 1), vc.gpu.view().row_range(r, 1), cache_tolerance, "v cache" + row);
      }
    }

    const auto xs = random_values(static_cast<std::size_t>(n * c.dim), 2.0f);
    Buffers x(p, ElemType::F32, n, c.dim, xs.data());
    std::vector<std::int32_t> which(static_cast<std::size_t>(n));
    for (auto& w : which) w = static_cast<std::int32_t>(rng() % kNormRows);
    Buffers norm_rows(p, ElemType::I32, n, 1, which.data());
    Buffers normed(p, ElemType::F32, n, c.dim), gate_up(p, ElemType::F32, n, 2 * c.hidden), act(p, ElemType::F32, n, c.hidden);
    p.cpu.norm_swiglu(x.cpu, ffn_norms.cpu, norm_rows.cpu, 1e-5f, gu_c, act.cpu, normed.cpu, gate_up.cpu);
    p.gpu.norm_swiglu(x.gpu, ffn_norms.gpu, norm_rows.gpu, 1e-5f, gu_g, act.gpu, normed.gpu, gate_up.gpu);
    expect_close(p, act.cpu, act.gpu, 2e-5, "norm_swiglu, a norm per row" + at);

    Buffers logits(p, ElemType::F32, n, c.vocab);
    p.cpu.norm_linear(x.cpu, norm_c, 1e-5f, head_c, Weight{}, logits.cpu, Epilogue::Store, normed.cpu);
    p.gpu.norm_linear(x.gpu, norm_g, 1e-5f, head_g, Weight{}, logits.gpu, Epilogue::Store, normed.gpu);
    expect_close(p, logits.cpu, logits.gpu, 2e-5, "norm_linear (LM head)" + at);
  }
}

TEST_P(CudaBatchedDecodeOps, FusedOpsOfNRowsMatchTheCpu) {
  for (const std::string crossover : {"", "256"}) check_fused_ops(GetParam(), crossover);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaBatchedDecodeOps,
                         ::testing::Values(DecodeLayerShape{96, 6, 2, 32, 256, 1515},       // tiny-a fixture
                                           DecodeLayerShape{256, 8, 2, 32, 1024, 1586},     // the demo model
                                           DecodeLayerShape{3072, 32, 8, 128, 9216, 4001}));  // the real layer

struct BatchedAttentionCase {
  int n_heads, n_kv_heads, head_dim, window, page_size, rows;
  ElemType cache;
  const char* variants = "";  // as `voxtral-bench --variant`
};

class CudaBatchedAttention : public ::testing::TestWithParam<BatchedAttentionCase> {};

// N query rows of N sequences, each at its own position (short windows, full windows, past
// the ring's wrap), after the sequences' earlier keys were appended a block at a time.
TEST_P(CudaBatchedAttention, RowsOfManySequencesMatchTheCpu) {
  const BatchedAttentionCase c = GetParam();
  Pair p(c.variants);
  const std::int64_t qw = static_cast<std::int64_t>(c.n_heads) * c.head_dim;
  const std::int64_t kvw = static_cast<std::int64_t>(c.n_kv_heads) * c.head_dim;
  constexpr int kFillRows = 64;
  // Room for the window plus a fill block of one sequence.
  int capacity = c.window + kFillRows - 1;
  if (c.page_size > 0) capacity = (capacity + c.page_size - 1) / c.page_size * c.page_size;
  const KvCacheLayout layout{c.n_kv_heads, c.head_dim, capacity, c.window, c.cache, c.page_size};
  const int pages = layout.pages_per_sequence();
  const int n = c.rows;
  const auto table = scattered_pages(n, pages);
  const std::int64_t cache_rows = static_cast<std::int64_t>(n) * capacity;
  Buffers kc(p, c.cache, cache_rows, kvw), vc(p, c.cache, cache_rows, kvw);
  const RopeParams qr{c.n_heads, c.head_dim, 1e6}, kr{c.n_kv_heads, c.head_dim, 1e6};
  std::vector<std::int32_t> pos(static_cast<std::size_t>(n)), seq(static_cast<std::size_t>(n));
  std::iota(seq.begin(), seq.end(), 0);
  std::shuffle(seq.begin(), seq.end(), rng);
  const int some[] = {c.window + 500, 0, c.window - 1, c.window, capacity, capacity + 5, 1234, 31};
  for (int i = 0; i < n; ++i) pos[static_cast<std::size_t>(i)] = i < 8 ? some[i] : static_cast<int>(rng() % 1500);

  // Each sequence's earlier keys (those its window still sees), appended in blocks of rows.
  auto append_and_attend = [&](const std::vector<std::int32_t>& at, const std::vector<std::int32_t>& of, bool attend) {
    const auto m = static_cast<std::int64_t>(at.size());
    const auto values = random_values(static_cast<std::size_t>(m * (qw + 2 * kvw)));
    Buffers buf(p, ElemType::F32, m, qw + 2 * kvw, values.data()), out(p, ElemType::F32, m, qw);
    const BatchRows rows(p, at, of, table, pages);
    for (Backend* b : {static_cast<Backend*>(&p.cpu), static_cast<Backend*>(&p.gpu)}) {
      const bool cpu = b == &p.cpu;
      const Tensor all = cpu ? buf.cpu.view() : buf.gpu.view();
      const KvRows kv_rows = cpu ? rows.cpu() : rows.gpu();
      b->rope_kv_append(all.col_range(0, qw), all.col_range(qw, kvw), all.col_range(qw + kvw, kvw), kv_rows, qr, kr,
                        layout, cpu ? kc.cpu : kc.gpu, cpu ? vc.cpu : vc.gpu);
      if (attend) {
        b->attention(all.col_range(0, qw), kv_rows, c.n_heads, layout, cpu ? kc.cpu : kc.gpu, cpu ? vc.cpu : vc.gpu,
                     cpu ? out.cpu : out.gpu);
      }
    }
    if (attend) {
      expect_close(p, out.cpu, out.gpu, c.cache == ElemType::BF16 ? 2e-3 : 2e-5,
                   std::to_string(n) + " rows, page size " + std::to_string(c.page_size));
    }
  };
  for (int i = 0; i < n; ++i) {
    const int s = seq[static_cast<std::size_t>(i)], end = pos[static_cast<std::size_t>(i)];
    for (int first = std::max(0, end - c.window + 1); first < end; first += kFillRows) {
      std::vector<std::int32_t> at;
      for (int q = first; q < std::min(end, first + kFillRows); ++q) at.push_back(q);
      append_and_attend(at, std::vector<std::int32_t>(at.size(), s), false);
    }
  }
  append_and_attend(pos, seq, true);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaBatchedAttention,
    ::testing::Values(BatchedAttentionCase{32, 8, 128, 300, 64, 40, ElemType::BF16},  // the real heads, paged
                      BatchedAttentionCase{32, 8, 128, 300, 64, 1, ElemType::BF16},
                      BatchedAttentionCase{32, 8, 128, 300, 0, 6, ElemType::F32},     // one page per sequence
                      BatchedAttentionCase{32, 8, 128, 1000, 64, 9, ElemType::BF16},  // 16+ slices a row
                      BatchedAttentionCase{32, 8, 128, 1000, 64, 40, ElemType::BF16}, // blocks walk several slices
                      BatchedAttentionCase{6, 2, 32, 48, 16, 9, ElemType::F32},       // tiny-a's heads
                      BatchedAttentionCase{8, 1, 64, 100, 16, 5, ElemType::F32},      // GQA 8:1: the general kernel
                      // 256 threads a block: a thread per pair of dimensions, no key split
                      BatchedAttentionCase{32, 8, 128, 300, 64, 1, ElemType::BF16, "attention_threads=256"},
                      BatchedAttentionCase{32, 8, 128, 1000, 64, 40, ElemType::BF16, "attention_threads=256"},
                      BatchedAttentionCase{6, 2, 32, 48, 16, 9, ElemType::F32, "attention_threads=256"},
                      // 1024 threads: up to 16 threads share a pair's keys
                      BatchedAttentionCase{32, 8, 128, 300, 64, 1, ElemType::BF16, "attention_threads=1024"},
                      BatchedAttentionCase{32, 8, 128, 1000, 64, 40, ElemType::BF16, "attention_threads=1024"},
                      BatchedAttentionCase{6, 2, 32, 48, 16, 9, ElemType::BF16, "attention_threads=1024"},
                      BatchedAttentionCase{6, 2, 32, 48, 16, 9, ElemType::F32, "attention_threads=1024"}));

// tiny-a on CUDA, exact, F32 caches: `max_streams` streams, steps of up to
// max(max_streams, speculative_tokens + 1) rows.
std::unique_ptr<Model> tiny_a_on_cuda(int max_streams, int speculative_tokens) {
  ModelOptions options;
  options.backend = "cuda";
  options.precision = "exact";
  options.kv_cache = "f32";
  options.max_streams = max_streams;
  options.speculative_tokens = speculative_tokens;
  options.kv_cache_mb = 64;
  return Model::load(testing::fixture("tiny-a"), options);
}

// A stream's tokens do not depend on the batch: streams of different lengths and delays,
// starting at different ticks, decoded together give the ids and logits each gives alone.
TEST(CudaDecoderPool, EachStreamDecodesInABatchAsAlone) {
  auto model = tiny_a_on_cuda(12, 0);
  DecoderPool& pool = model->decoder();
  const int vocab = model->config().decoder.vocab_size;
  struct Plan {
    int start, steps, delay;
  };
  const std::vector<Plan> plans{{0, 40, 6}, {3, 20, 2}, {0, 70, 6}, {10, 30, 10}, {1, 5, 6}, {2, 60, 4},
                                {0, 33, 6}, {5, 45, 2}, {7, 12, 8}, {4, 50, 6}, {6, 25, 6}, {0, 64, 3}};
  const int ring = pool.options().audio_ring_positions;
  std::vector<std::vector<int>> alone_ids(plans.size());
  std::vector<std::vector<float>> alone_logits(plans.size());
  for (std::size_t s = 0; s < plans.size(); ++s) {
    const int sequence = pool.acquire();
    pool.start(sequence, model->ffn_norms(plans[s].delay));
    int id = 1;
    for (int t = 0; t < plans[s].steps; ++t) {
      const DecodeRow row{sequence, id, t, t % ring};
      int next = 0;
      pool.step(std::span(&row, 1), std::span(&next, 1));
      const auto logits = download(model->backend(), pool.step_logits(1));
      alone_logits[s].insert(alone_logits[s].end(), logits.begin(), logits.end());
      alone_ids[s].push_back(next);
      id = next;
    }
    pool.release(sequence);
  }
  std::vector<int> sequences, ids(plans.size(), 1);
  for (std::size_t s = 0; s < plans.size(); ++s) {
    sequences.push_back(pool.acquire());
    pool.start(sequences.back(), model->ffn_norms(plans[s].delay));
  }
  for (int tick = 0;; ++tick) {
    std::vector<DecodeRow> rows;
    std::vector<std::size_t> who;
    for (std::size_t s = 0; s < plans.size(); ++s) {
      const int t = tick - plans[s].start;
      if (t < 0 || t >= plans[s].steps) continue;
      rows.push_back({sequences[s], ids[s], t, t % ring});
      who.push_back(s);
    }
    if (rows.empty() && tick > 10) break;
    if (rows.empty()) continue;
    std::vector<int> next(rows.size());
    pool.step(rows, next);
    const auto logits = download(model->backend(), pool.step_logits(static_cast<std::int64_t>(rows.size())));
    for (std::size_t r = 0; r < rows.size(); ++r) {
      const std::size_t s = who[r];
      const auto t = static_cast<std::size_t>(rows[r].position);
      ASSERT_EQ(next[r], alone_ids[s][t]) << "stream " << s << " step " << t << " in a batch of " << rows.size();
      const std::vector<float> got(logits.begin() + static_cast<std::ptrdiff_t>(r * vocab),
                                   logits.begin() + static_cast<std::ptrdiff_t>((r + 1) * vocab));
      const std::vector<float> want(alone_logits[s].begin() + static_cast<std::ptrdiff_t>(t * vocab),
                                    alone_logits[s].begin() + static_cast<std::ptrdiff_t>((t + 1) * vocab));
      EXPECT_LE(relative_error(got, want), 1e-4) << "stream " << s << " step " << t << " in a batch of " << rows.size();
      ids[s] = next[r];
    }
  }
  for (int s : sequences) pool.release(s);
}

// Speculative rows (runtime/speculation.h): consecutive positions of one sequence in one step
// give each position's logits as steps of one row do (close, not equal: one row and four take
// different kernels on the GPU), and the pool keeps the sequence's keys for the next step.
TEST(CudaDecoderPool, RowsOfOneSequenceInOneStepMatchStepsOfOneRow) {
  auto model = tiny_a_on_cuda(2, 3);  // steps of up to 4 rows
  DecoderPool& pool = model->decoder();
  const int vocab = model->config().decoder.vocab_size;
  const int ring = pool.options().audio_ring_positions;
  constexpr int kSteps = 40;
  std::vector<int> inputs(kSteps);
  for (int t = 0; t < kSteps; ++t) inputs[static_cast<std::size_t>(t)] = t % 3 == 0 ? 32 : 1000 + 7 * t;
  const int alone = pool.acquire();
  pool.start(alone, model->ffn_norms(6));
  std::vector<float> want;
  for (int t = 0; t < kSteps; ++t) {
    const DecodeRow row{alone, inputs[static_cast<std::size_t>(t)], t, t % ring};
    int next = 0;
    pool.step(std::span(&row, 1), std::span(&next, 1));
    const auto logits = download(model->backend(), pool.step_logits(1));
    want.insert(want.end(), logits.begin(), logits.end());
  }
  pool.release(alone);
  const int together = pool.acquire();
  pool.start(together, model->ffn_norms(6));
  for (int t = 0; t < kSteps; t += 4) {
    std::vector<DecodeRow> rows;
    for (int i = 0; i < 4; ++i) rows.push_back({together, inputs[static_cast<std::size_t>(t + i)], t + i, (t + i) % ring});
    std::vector<int> next(4);
    pool.step(rows, next);
    const auto logits = download(model->backend(), pool.step_logits(4));
    for (int i = 0; i < 4; ++i) {
      const auto at = static_cast<std::ptrdiff_t>(t + i) * vocab;
      const std::vector<float> got(logits.begin() + static_cast<std::ptrdiff_t>(i) * vocab,
                                   logits.begin() + static_cast<std::ptrdiff_t>(i + 1) * vocab);
      const std::vector<float> one(want.begin() + at, want.begin() + at + vocab);
      EXPECT_LE(relative_error(got, one), 1e-4) << "position " << t + i;
    }
  }
  pool.release(together);
}

// A stream with speculative rows on the GPU: the demo model's tokens as without them.
TEST(CudaSpeculativeSteps, KeepTheDemoModelsTokens) {
  const auto samples = load_audio_file(testing::source_path("samples/commands.wav"), 16000);
  const auto ids = [&](int speculative_tokens) {
    ModelOptions options;
    options.backend = "cuda";
    options.speculative_tokens = speculative_tokens;
    auto model = Model::load(testing::source_path("models/demo"), options);
    const Transcript t = transcribe(*model, samples);
    return std::pair(t.ids, t.stats.decode_passes);
  };
  const auto [one_row, one_row_steps] = ids(0);
  const auto [speculative, speculative_steps] = ids(3);
  ASSERT_GT(one_row.size(), 50u);
  EXPECT_EQ(speculative, one_row);
  EXPECT_LT(speculative_steps, one_row_steps * 7 / 10);
}

}  // namespace
}  // namespace voxtral
