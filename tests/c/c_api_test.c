/* The C API used from C: streams a fixture clip in uneven pieces and checks the text
 * against the transcript transformers recorded (argv[3], a file holding that text). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "voxtral.h"

static int fail(const char* what, const char* detail) {
  fprintf(stderr, "c_api_test: %s: %s\n", what, detail);
  return 1;
}

int main(int argc, char** argv) {
  char err[512];
  if (argc != 4) return fail("usage", "c_api_test MODEL_DIR WAV EXPECTED_TEXT_FILE");

  FILE* f = fopen(argv[3], "rb");
  if (f == NULL) return fail("cannot open", argv[3]);
  static char expected[65536];
  size_t expected_len = fread(expected, 1, sizeof expected - 1, f);
  fclose(f);
  expected[expected_len] = '\0';

  voxtral_model_options mo;
  voxtral_model_options_init(&mo);
  mo.backend = getenv("VOXTRAL_TEST_BACKEND") ? getenv("VOXTRAL_TEST_BACKEND") : "cpu";
  mo.kv_cache = "f32";
  voxtral_model* model = voxtral_model_load(argv[1], &mo, err, sizeof err);
  if (model == NULL) return fail("load", err);
  if (voxtral_model_load("/nonexistent", &mo, err, sizeof err) != NULL || strstr(err, "no such model directory") == NULL) {
    return fail("a missing model must give an error", err);
  }

  size_t n = 0;
  float* samples = voxtral_load_audio(argv[2], voxtral_model_sample_rate(model), &n, err, sizeof err);
  if (samples == NULL) return fail("audio", err);

  voxtral_stream_options so;
  voxtral_stream_options_init(&so);
  voxtral_stream* stream = voxtral_stream_create(model, &so, err, sizeof err);
  if (stream == NULL) return fail("stream", err);

  static char text[65536];
  size_t len = 0, at = 0, piece = 1;
  int ended = 0;
  while (at < n || !ended) {
    if (at < n) {
      size_t take = piece < n - at ? piece : n - at;
      if (voxtral_stream_feed(stream, samples + at, take) != 0) return fail("feed", voxtral_stream_error(stream));
      at += take;
      piece = piece * 3 + 1; /* 1, 4, 13, ... samples */
    } else {
      if (voxtral_stream_finish(stream) != 0) return fail("finish", voxtral_stream_error(stream));
      ended = 1;
    }
    const voxtral_piece* pieces = NULL;
    size_t count = voxtral_stream_read(stream, &pieces);
    for (size_t i = 0; i < count; ++i) {
      size_t l = strlen(pieces[i].text);
      if (len + l >= sizeof text) return fail("text", "too long");
      memcpy(text + len, pieces[i].text, l);
      len += l;
    }
  }
  text[len] = '\0';
  if (voxtral_stream_feed(stream, samples, 1) == 0 || strstr(voxtral_stream_error(stream), "after finish") == NULL) {
    return fail("feeding after finish must fail", voxtral_stream_error(stream));
  }
  voxtral_stream_free(stream);
  voxtral_free_samples(samples);
  voxtral_model_free(model);
  if (strcmp(text, expected) != 0) {
    fprintf(stderr, "c_api_test: got      \"%s\"\nc_api_test: expected \"%s\"\n", text, expected);
    return 1;
  }
  printf("c_api_test: %zu bytes of text match\n", len);
  return 0;
}
