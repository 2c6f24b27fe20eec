#include "model/weights.h"

#include <initializer_list>

#include "core/error.h"
#include "core/model_tensors.h"
#include "core/quantized_model.h"
#include "core/tensor_values.h"

namespace voxtral {

namespace {

// Uploads the weights, or (measuring) only counts the matrices it would upload.
struct Loader {
  Backend& backend;
  const SafeTensors& file;
  bool measuring = false;
  WeightFormat quantize_to = WeightFormat::BF16;
  QuantizedStore* store = nullptr;
  int threads = 1;
  std::size_t matrices = 0;
  std::int64_t elements = 0;

  Weight matrix(std::initializer_list<std::string> names, WeightUse use) {
    if (measuring) {
      ++matrices;
      for (const auto& n : names) elements += sixteen_bit_elements(n);
      return Weight{};
    }
    std::vector<WeightPart> parts;
    for (const auto& n : names) {
      const TensorView& t = file.get(n);
      const WeightFormat at_load = format_at_load(n, t);
      if (at_load == WeightFormat::FP8) {
        parts.push_back({&t, nullptr, WeightFormat::FP8});  // the backend quantizes it
      } else if (const TensorView* scales = file.find(scale_tensor_name(n))) {
        // A NaN or infinite scale would silently empty every transcript.
        check_scales(cat(file.source(), ": ", scales->name), scales->as<std::uint16_t>(DType::F16));
        parts.push_back({&t, scales});
      } else if (at_load != WeightFormat::BF16) {
        parts.push_back(store->quantize(t, at_load, threads));
        file.release(t);  // the BF16 values are not read again
      } else {
        parts.push_back({&t, nullptr});
      }
    }
    return backend.load_weight(std::span<const WeightPart>(parts), use);
  }
  WeightFormat format_at_load(const std::string& name, const TensorView& t) const {
    return quantize_to == WeightFormat::BF16 ? quantize_to : stored_format(name, t.shape, quantize_to);
  }
  // The memory a tensor takes in the backend, in 16-bit elements (reserve_weights).
  std::int64_t sixteen_bit_elements(const std::string& name) const {
    const TensorView& t = file.get(name);
    const TensorView* scales = file.find(scale_tensor_name(name));
    const WeightFormat format = scales != nullptr ? (t.dtype == DType::I8 ? WeightFormat::Q8 : WeightFormat::Q4)
                                                  : format_at_load(name, t);
    const std::int64_t rows = t.shape.empty() ? 1 : t.shape[0];
    switch (format) {
      case WeightFormat::Q8:
      case WeightFormat::Q4: {
        const std::int64_t cols = scales != nullptr ? scales->shape[1] * kQuantBlock : t.numel() / rows;
        const auto bytes = static_cast<std::int64_t>(quantized_row_bytes(format, cols)) + cols / kQuantBlock * 2;
        return (rows * bytes + 1) / 2;
      }
      case WeightFormat::FP8: return (t.numel() + 1) / 2 + 2 * rows;  // E4M3 codes and an F32 scale per row
      default: return t.numel();
    }
  }
  Weight vector(const std::string& name) { return measuring ? Weight{} : backend.load_vector(floats(name)); }
  // Kept on the host (the decoder's FFN and ada norms, combined per session).
  std::vector<float> floats(const std::string& name) const {
    return measuring ? std::vector<float>{} : read_floats(file.get(name));
  }
  // Biases of stacked projections; a projection without a bias contributes zeros.
  Weight stacked_bias(std::initializer_list<std::pair<std::string, std::int64_t>> parts) {
    if (measuring) return Weight{};
    std::vector<float> values;
    for (const auto& [name, width] : parts) {
      if (name.empty()) {
        values.insert(values.end(), static_cast<std::size_t>(width), 0.0f);
      } else {
        const auto v = floats(name);
        values.insert(values.end(), v.begin(), v.end());
      }
    }
    return backend.load_vector(values);
  }
};

ModelWeights load_all(Loader& load, const ModelConfig& config) {
  namespace names = tensor_names;
  ModelWeights w;
  const auto dense = WeightUse::Dense;
  const auto streamed = WeightUse::Streamed;

  w.conv0 = load.matrix({names::encoder("conv_layers.0.conv.weight")}, dense);
  w.conv0_bias = load.vector(names::encoder("conv_layers.0.conv.bias"));
  w.conv1 = load.matrix({names::encoder("conv_layers.1.conv.weight")}, dense);
  w.conv1_bias = load.vector(names::encoder("conv_layers.1.conv.bias"));

  const auto& enc = config.encoder;
  for (int i = 0; i < enc.n_layers; ++i) {
    auto n = [i](const char* suffix) { return names::encoder_layer(i, suffix); };
    EncoderLayerWeights l;
    l.attention_norm = load.vector(n("attention_norm.weight"));
    l.qkv = load.matrix({n("attention.wq.weight"), n("attention.wk.weight"), n("attention.wv.weight")}, dense);
    l.wo = load.matrix({n("attention.wo.weight")}, dense);
    l.ffn_norm = load.vector(n("ffn_norm.weight"));
    l.gate_up = load.matrix({n("feed_forward.w1.weight"), n("feed_forward.w3.weight")}, dense);
    l.w2 = load.matrix({n("feed_forward.w2.weight")}, dense);
    if (enc.use_biases) {
      l.qkv_bias = load.stacked_bias({{n("attention.wq.bias"), enc.q_width()},
                                      {"", enc.kv_width()},
                                      {n("attention.wv.bias"), enc.kv_width()}});
      l.wo_bias = load.vector(n("attention.wo.bias"));
      l.w2_bias = load.vector(n("feed_forward.w2.bias"));
    }
    w.encoder.push_back(std::move(l));
  }
  w.encoder_norm = load.vector(names::encoder("transformer.norm.weight"));
  w.adapter_in = load.matrix({names::adapter("0.weight")}, dense);
  w.adapter_out = load.matrix({names::adapter("2.weight")}, dense);

  w.tok_embeddings = load.matrix({names::kTokEmbeddings}, streamed);
  const auto& dec = config.decoder;
  for (int i = 0; i < dec.n_layers; ++i) {
    auto n = [i](const char* suffix) { return names::decoder_layer(i, suffix); };
    DecoderLayerWeights l;
    l.attention_norm = load.vector(n("attention_norm.weight"));
    l.qkv = load.matrix({n("attention.wq.weight"), n("attention.wk.weight"), n("attention.wv.weight")}, streamed);
    l.wo = load.matrix({n("attention.wo.weight")}, streamed);
    l.gate_up = load.matrix({n("feed_forward.w1.weight"), n("feed_forward.w3.weight")}, streamed);
    l.w2 = load.matrix({n("feed_forward.w2.weight")}, streamed);
    l.ffn_norm = load.floats(n("ffn_norm.weight"));
    if (dec.ada_norm_dim > 0) {
      l.ada_down = load.floats(n("ada_rms_norm_t_cond.0.weight"));
      l.ada_up = load.floats(n("ada_rms_norm_t_cond.2.weight"));
    }
    w.decoder.push_back(std::move(l));
  }
  w.final_norm = load.vector("norm.weight");
  return w;
}

}  // namespace

ModelWeights ModelWeights::load(Backend& backend, const SafeTensors& file, const ModelConfig& config,
                                WeightFormat quantize_to, QuantizedStore* store, int threads) {
  if (quantize_to != WeightFormat::BF16 && (store == nullptr || config.stored_weights != WeightFormat::BF16)) {
    fail("weights", "quantizing at load needs a BF16 model and a store");
  }
  Loader measure{backend, file, true, quantize_to};
  load_all(measure, config);
  backend.reserve_weights(measure.matrices, measure.elements);
  Loader upload{backend, file, false, quantize_to, store, threads};
  return load_all(upload, config);
}

}  // namespace voxtral
