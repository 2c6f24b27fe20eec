/* The C API's edges, used from C: NULL arguments are errors (never crashes), a model with
 * open streams is not freed, and voxtral_load_audio refuses target rates outside 1000 to
 * 384000 Hz.   c_api_edge_test MODEL_DIR WAV */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "voxtral.h"

static int failures = 0;

static void check(int ok, const char* what, const char* detail) {
  if (!ok) {
    fprintf(stderr, "c_api_edge_test: FAILED: %s (%s)\n", what, detail != NULL ? detail : "");
    ++failures;
  }
}

static void null_arguments(const char* model_dir, const char* wav) {
  char err[512] = "";
  voxtral_model_options mo;
  voxtral_model_options_init(&mo);
  mo.backend = "cpu";

  check(voxtral_model_load(NULL, &mo, err, sizeof err) == NULL && strstr(err, "model_dir is NULL") != NULL,
        "voxtral_model_load(NULL) is an error naming the argument", err);
  check(voxtral_model_load("/nonexistent", NULL, NULL, 0) == NULL, "no error buffer: still NULL, no crash", "");
  check(voxtral_stream_create(NULL, NULL, err, sizeof err) == NULL && strstr(err, "model is NULL") != NULL,
        "voxtral_stream_create(NULL model) is an error", err);
  float one = 0.0f;
  short pcm = 0;
  check(voxtral_stream_feed(NULL, &one, 1) == -1, "feed on a NULL stream is -1", "");
  check(voxtral_stream_feed_pcm16(NULL, &pcm, 1) == -1, "feed_pcm16 on a NULL stream is -1", "");
  check(voxtral_stream_flush(NULL) == -1, "flush on a NULL stream is -1", "");
  check(voxtral_stream_finish(NULL) == -1, "finish on a NULL stream is -1", "");
  const voxtral_piece* pieces = NULL;
  check(voxtral_stream_read(NULL, &pieces) == 0, "read on a NULL stream is 0 pieces", "");
  check(strcmp(voxtral_stream_error(NULL), "") == 0, "the error of a NULL stream is \"\"", "");
  check(voxtral_model_sample_rate(NULL) == 0, "the rate of a NULL model is 0", "");
  check(strcmp(voxtral_model_error(NULL), "") == 0, "the error of a NULL model is \"\"", "");
  check(voxtral_model_free(NULL) == 0, "freeing a NULL model does nothing", "");
  voxtral_stream_free(NULL);
  voxtral_free_samples(NULL);
  size_t n = 0;
  check(voxtral_load_audio(NULL, 16000, &n, err, sizeof err) == NULL && strstr(err, "path is NULL") != NULL,
        "voxtral_load_audio(NULL path) is an error", err);
  check(voxtral_load_audio(wav, 16000, NULL, err, sizeof err) == NULL && strstr(err, "count is NULL") != NULL,
        "voxtral_load_audio(NULL count) is an error", err);

  voxtral_model* model = voxtral_model_load(model_dir, &mo, err, sizeof err);
  check(model != NULL, "the model loads", err);
  if (model == NULL) return;
  voxtral_stream* stream = voxtral_stream_create(model, NULL, err, sizeof err);
  check(stream != NULL, "a stream with NULL options gets the defaults", err);
  if (stream != NULL) {
    check(voxtral_stream_feed(stream, NULL, 160) == -1 && strstr(voxtral_stream_error(stream), "samples is NULL") != NULL,
          "feeding NULL samples is an error", voxtral_stream_error(stream));
    check(voxtral_stream_feed_pcm16(stream, NULL, 160) == -1 &&
              strstr(voxtral_stream_error(stream), "samples is NULL") != NULL,
          "feeding NULL PCM16 samples is an error", voxtral_stream_error(stream));
    check(voxtral_stream_feed(stream, NULL, 0) == 0, "feeding nothing is fine", voxtral_stream_error(stream));
    check(voxtral_stream_read(stream, NULL) == 0, "read with a NULL pieces pointer", "");
    voxtral_stream_free(stream);
  }
  const int freed = voxtral_model_free(model); /* (no use of `model` after this) */
  check(freed == 0, "the model is freed once its streams are", "");
}

static void free_order(const char* model_dir) {
  char err[512] = "";
  voxtral_model_options mo;
  voxtral_model_options_init(&mo);
  mo.backend = "cpu";
  voxtral_model* model = voxtral_model_load(model_dir, &mo, err, sizeof err);
  check(model != NULL, "the model loads", err);
  if (model == NULL) return;
  voxtral_stream* a = voxtral_stream_create(model, NULL, err, sizeof err);
  voxtral_stream* b = voxtral_stream_create(model, NULL, err, sizeof err);
  check(a != NULL && b != NULL, "two streams", err);
  if (a == NULL || b == NULL) return;

  check(voxtral_model_free(model) == -1, "freeing a model with two open streams fails", "");
  check(strstr(voxtral_model_error(model), "2 stream(s) of this model are still open") != NULL,
        "... and says why", voxtral_model_error(model));
  static float silence[16000];
  check(voxtral_stream_feed(a, silence, 16000) == 0, "the streams still work after the refused free",
        voxtral_stream_error(a));
  voxtral_stream_free(a);
  check(voxtral_model_free(model) == -1 && strstr(voxtral_model_error(model), "1 stream(s)") != NULL,
        "one stream left: still refused", voxtral_model_error(model));
  check(voxtral_stream_finish(b) == 0, "the last stream finishes", voxtral_stream_error(b));
  voxtral_stream_free(b);
  check(voxtral_model_free(model) == 0, "freed once no stream is open", "");
}

static void target_rates(const char* wav) {
  char err[512] = "";
  const int refused[] = {INT_MIN, -16000, 0, 1, 999, 384001, 1000000, INT_MAX};
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; ++i) {
    size_t n = 12345;
    err[0] = '\0';
    float* samples = voxtral_load_audio(wav, refused[i], &n, err, sizeof err);
    char what[128];
    snprintf(what, sizeof what, "sample_rate %d is refused with a message naming the range", refused[i]);
    check(samples == NULL && strstr(err, "out of range (1000 to 384000 Hz)") != NULL, what, err);
    voxtral_free_samples(samples);
  }
  /* The bounds themselves work; the length scales with the rate (speech_short.wav: 16 kHz). */
  size_t n16 = 0, n1 = 0, n384 = 0;
  float* s16 = voxtral_load_audio(wav, 16000, &n16, err, sizeof err);
  float* s1 = voxtral_load_audio(wav, 1000, &n1, err, sizeof err);
  float* s384 = voxtral_load_audio(wav, 384000, &n384, err, sizeof err);
  check(s16 != NULL && s1 != NULL && s384 != NULL, "1000, 16000 and 384000 Hz load", err);
  if (s16 != NULL && s1 != NULL && s384 != NULL) {
    char detail[128];
    snprintf(detail, sizeof detail, "%zu, %zu, %zu samples", n1, n16, n384);
    const double at1 = (double)n16 / 16.0, at384 = (double)n16 * 24.0;
    check(n1 > at1 - 2 && n1 < at1 + 2 && n384 > at384 - 48 && n384 < at384 + 48,
          "the sample counts scale with the rate (within a filter's rounding)", detail);
  }
  voxtral_free_samples(s16);
  voxtral_free_samples(s1);
  voxtral_free_samples(s384);
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: c_api_edge_test MODEL_DIR WAV\n");
    return 2;
  }
  null_arguments(argv[1], argv[2]);
  free_order(argv[1]);
  target_rates(argv[2]);
  if (failures > 0) return 1;
  printf("c_api_edge_test: all checks passed\n");
  return 0;
}
