#include "core/model_tensors.h"

#include "core/quantized_model.h"

#include "core/error.h"
#include "core/safetensors.h"

namespace voxtral {

namespace tensor_names {

std::string encoder(const std::string& suffix) { return kEncoder + suffix; }

std::string encoder_layer(int layer, const std::string& suffix) {
  return cat(kEncoder, "transformer.layers.", layer, ".", suffix);
}

std::string adapter(const std::string& suffix) { return kAdapter + suffix; }

std::string decoder_layer(int layer, const std::string& suffix) { return cat("layers.", layer, ".", suffix); }

}  // namespace tensor_names

namespace {

// Past this many problems the list stops helping: a wrong params.json mismatches hundreds.
constexpr std::size_t kMaxListedProblems = 20;

void add_encoder_tensors(const ModelConfig& config, std::vector<TensorSpec>& out) {
  using tensor_names::encoder;
  using tensor_names::encoder_layer;
  const TransformerConfig& enc = config.encoder;
  const std::int64_t dim = enc.dim;
  const std::int64_t q_width = enc.q_width();
  const std::int64_t kv_width = enc.kv_width();
  const std::int64_t hidden = enc.hidden_dim;

  out.push_back({encoder("conv_layers.0.conv.weight"), {dim, config.audio.num_mel_bins, 3}});
  out.push_back({encoder("conv_layers.0.conv.bias"), {dim}});
  out.push_back({encoder("conv_layers.1.conv.weight"), {dim, dim, 3}});
  out.push_back({encoder("conv_layers.1.conv.bias"), {dim}});
  for (int layer = 0; layer < enc.n_layers; ++layer) {
    auto add = [&](const char* suffix, std::vector<std::int64_t> shape) {
      out.push_back({encoder_layer(layer, suffix), std::move(shape)});
    };
    // The real encoder has biases on wq, wv, wo and w2 only.
    add("attention.wq.weight", {q_width, dim});
    if (enc.use_biases) add("attention.wq.bias", {q_width});
    add("attention.wk.weight", {kv_width, dim});
    add("attention.wv.weight", {kv_width, dim});
    if (enc.use_biases) add("attention.wv.bias", {kv_width});
    add("attention.wo.weight", {dim, q_width});
    if (enc.use_biases) add("attention.wo.bias", {dim});
    add("attention_norm.weight", {dim});
    add("feed_forward.w1.weight", {hidden, dim});
    add("feed_forward.w2.weight", {dim, hidden});
    if (enc.use_biases) add("feed_forward.w2.bias", {dim});
    add("feed_forward.w3.weight", {hidden, dim});
    add("ffn_norm.weight", {dim});
  }
  out.push_back({encoder("transformer.norm.weight"), {dim}});
}

void add_decoder_tensors(const DecoderConfig& dec, std::vector<TensorSpec>& out) {
  using tensor_names::decoder_layer;
  const std::int64_t dim = dec.dim;
  const std::int64_t q_width = dec.q_width();
  const std::int64_t kv_width = dec.kv_width();
  const std::int64_t hidden = dec.hidden_dim;
  const std::int64_t ada_dim = dec.ada_norm_dim;
  for (int layer = 0; layer < dec.n_layers; ++layer) {
    auto add = [&](const char* suffix, std::vector<std::int64_t> shape) {
      out.push_back({decoder_layer(layer, suffix), std::move(shape)});
    };
    add("attention_norm.weight", {dim});
    add("attention.wq.weight", {q_width, dim});
    add("attention.wk.weight", {kv_width, dim});
    add("attention.wv.weight", {kv_width, dim});
    add("attention.wo.weight", {dim, q_width});
    add("ffn_norm.weight", {dim});
    add("feed_forward.w1.weight", {hidden, dim});
    add("feed_forward.w2.weight", {dim, hidden});
    add("feed_forward.w3.weight", {hidden, dim});
    if (ada_dim > 0) {
      add("ada_rms_norm_t_cond.0.weight", {ada_dim, dim});
      add("ada_rms_norm_t_cond.2.weight", {dim, ada_dim});
    }
  }
  out.push_back({"norm.weight", {dim}});
}

// Only the formats the backends convert from; F64 weights would be a conversion mistake.
bool is_weight_dtype(DType dtype) { return dtype == DType::F16 || dtype == DType::BF16 || dtype == DType::F32; }

}  // namespace

std::vector<TensorSpec> expected_tensors(const ModelConfig& config) {
  std::vector<TensorSpec> out;
  out.push_back({tensor_names::kTokEmbeddings, {config.decoder.vocab_size, config.decoder.dim}});
  add_encoder_tensors(config, out);
  out.push_back({tensor_names::adapter("0.weight"), {config.decoder.dim, config.adapter_input_dim()}});
  out.push_back({tensor_names::adapter("2.weight"), {config.decoder.dim, config.decoder.dim}});
  add_decoder_tensors(config.decoder, out);
  return out;
}

namespace {

// The two planes of a matrix a quantized file stores block-quantized (core/quantized_model.h).
void check_quantized(const SafeTensors& weights, const TensorSpec& spec, const TensorView& values, WeightFormat format,
                     std::vector<std::string>& problems) {
  const std::int64_t rows = spec.shape[0], cols = spec.shape[1];
  const DType want = format == WeightFormat::Q8 ? DType::I8 : DType::U8;
  const std::vector<std::int64_t> value_shape = {rows, static_cast<std::int64_t>(quantized_row_bytes(format, cols))};
  if (values.dtype != want || values.shape != value_shape) {
    problems.push_back(cat(spec.name, ": expected ", weight_format_name(format), " codes ", dtype_name(want), " ",
                           shape_string(value_shape), ", found ", dtype_name(values.dtype), " ",
                           shape_string(values.shape)));
  }
  const std::string scale_name = scale_tensor_name(spec.name);
  const std::vector<std::int64_t> scale_shape = {rows, cols / kQuantBlock};
  const TensorView* scales = weights.find(scale_name);
  if (scales == nullptr) {
    problems.push_back(cat(scale_name, ": missing (expected F16 ", shape_string(scale_shape), ")"));
  } else if (scales->dtype != DType::F16 || scales->shape != scale_shape) {
    problems.push_back(cat(scale_name, ": expected F16 ", shape_string(scale_shape), ", found ",
                           dtype_name(scales->dtype), " ", shape_string(scales->shape)));
  }
}

}  // namespace

void check_model_tensors(const SafeTensors& weights, const ModelConfig& config) {
  // A quantized file says its format; params.json must say the same (one line, not a list).
  const auto stated = weights.metadata().find("quantization");
  const std::string in_params = config.stored_weights == WeightFormat::BF16
                                    ? "none" : std::string(weight_format_name(config.stored_weights));
  const std::string in_file = stated == weights.metadata().end() ? "none" : stated->second;
  if (in_file != in_params) {
    fail(weights.source(), cat("holds ", in_file == "none" ? "unquantized" : in_file, " weights but params.json says ",
                               in_params == "none" ? "unquantized" : in_params, " (\"quantization\")"));
  }
  std::vector<std::string> problems;
  for (const TensorSpec& spec : expected_tensors(config)) {
    const TensorView* found = weights.find(spec.name);
    if (found == nullptr) {
      problems.push_back(cat(spec.name, ": missing (expected shape ", shape_string(spec.shape), ")"));
      continue;
    }
    if (config.stored_weights != WeightFormat::BF16) {
      const WeightFormat format = stored_format(spec.name, spec.shape, config.stored_weights);
      if (format != WeightFormat::BF16) {
        check_quantized(weights, spec, *found, format, problems);
        continue;
      }
    }
    if (!is_weight_dtype(found->dtype)) {
      problems.push_back(cat(spec.name, ": expected dtype F16, BF16 or F32, found ", dtype_name(found->dtype)));
    }
    if (found->shape != spec.shape) {
      problems.push_back(cat(spec.name, ": expected shape ", shape_string(spec.shape), ", found ",
                             shape_string(found->shape)));
    }
  }
  if (problems.empty()) return;

  std::string message = cat(problems.size(), problems.size() == 1 ? " problem" : " problems",
                            " with the model tensors (does params.json belong to these weights?):");
  for (std::size_t i = 0; i < problems.size() && i < kMaxListedProblems; ++i) {
    message += cat("\n  ", problems[i]);
  }
  if (problems.size() > kMaxListedProblems) {
    message += cat("\n  ... and ", problems.size() - kMaxListedProblems, " more");
  }
  fail(weights.source(), message);
}

}  // namespace voxtral
