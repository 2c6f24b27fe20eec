/* voxtral: a C API for embedding Voxtral Realtime transcription in other languages.
 *
 * Load a model once, create a stream per audio source, feed it 16 kHz mono samples as they
 * arrive, and read the text pieces it produces (each with its token id and audio time).
 * Every function is safe to call from any thread. Streams of one model may be fed from many
 * threads at once: the model's one scheduler thread decodes all of them together, one batched
 * decoder step for every stream with audio ready (calls on one stream are serialised). A
 * model holds voxtral_model_options.max_streams streams at once; creating one more fails.
 * Functions that can fail return NULL or -1 and describe the problem in the error buffer
 * they were given (which may be NULL), or in voxtral_stream_error() / voxtral_model_error().
 * A NULL argument where an object or array is required is such a failure, never a crash.
 * An option out of its range (given next to each field) is an error naming the field.
 *
 * Lifetimes: free every stream of a model before the model. voxtral_model_free() on a model
 * that still has streams frees nothing and returns -1 (the streams stay usable); freeing
 * NULL does nothing. Pieces from voxtral_stream_read() live until the next call on their
 * stream; samples from voxtral_load_audio() until voxtral_free_samples().
 *
 *   voxtral_model* m = voxtral_model_load("models/demo", NULL, err, sizeof err);
 *   voxtral_stream* s = voxtral_stream_create(m, NULL, err, sizeof err);
 *   voxtral_stream_feed(s, samples, n);           (as audio arrives)
 *   const voxtral_piece* p; size_t k = voxtral_stream_read(s, &p);
 *   voxtral_stream_finish(s); ... read the rest ...; voxtral_stream_free(s); voxtral_model_free(m);
 */
#ifndef VOXTRAL_H
#define VOXTRAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 2: voxtral_piece.start and .end (word times); voxtral_model_free returns int (it refuses a
 * model with live streams); voxtral_model_error.
 * 3: voxtral_model_options.max_streams, .kv_cache_mb and .weights (the struct grew: rebuild
 * callers and fill it with voxtral_model_options_init); streams of one model decode
 * concurrently. */
#define VOXTRAL_API_VERSION 3

#if defined(VOXTRAL_BUILDING_LIBRARY) && defined(__GNUC__)
#define VOXTRAL_API __attribute__((visibility("default")))
#else
#define VOXTRAL_API
#endif

typedef struct voxtral_model voxtral_model;
typedef struct voxtral_stream voxtral_stream;

typedef struct {
  const char* backend;   /* "auto" (GPU if usable, else CPU), "cpu" or "cuda"; NULL = "auto" */
  int threads;           /* CPU threads: 1 to 1024, or 0 = one per core */
  const char* precision; /* matrix products: "exact" or "fast" (BF16 activations: on the CPU, the decode
                            step through AVX512_BF16 where present; with Q8/Q4 weights on the CPU, int8
                            activations per block of 32 and integer products); NULL = "exact" */
  const char* kv_cache;  /* "f32", "bf16" or NULL (the backend's default) */
  int max_streams;       /* streams open at once: 1 to 4096, or 0 = the backend's default (8 on the CPU) */
  int64_t kv_cache_mb;   /* MiB of decoder K/V cache shared by the streams; 0 = enough for every stream's
                            full window, within 90% of the GPU's free memory (a quarter of the machine's);
                            more than the machine's memory (or the GPU's free memory) is refused */
  const char* weights;   /* matrix storage: "auto" (as the model stores them; NULL), "bf16", "fp16" (GPU),
                            "q8" / "q4" (a BF16 model quantized at load), or "fp8" (E4M3, quantized at
                            load; CUDA on sm_89 or newer) */
} voxtral_model_options;
/* Speculative decoding (README, --speculative-tokens) runs with the backend's default: up to 7
   speculative rows per step on the CPU, none on a GPU. It never changes the text. */

typedef struct {
  int delay_ms;                 /* transcription delay: a multiple of 80 from 80 to 1200, or 2400;
                                   0 = the model's (480 ms) */
  double processing_interval_s; /* audio gathered per encoder run: 0 to 60 s; 0 = every 80 ms */
  int continuous;               /* 1: restart by itself before the model's length limit */
  int alternatives;             /* candidates reported per token: 0 (none) to 20 */
  double alternative_cutoff;    /* ... with at least this probability: 0 to 1 */
} voxtral_stream_options;

typedef struct {
  int token_id;
  const char* text; /* the token's text (UTF-8, possibly a partial character) */
  float probability;
} voxtral_alternative;

typedef struct {
  int token_id;     /* -1 marks the end of a segment (after a flush or at the end) */
  const char* text; /* UTF-8, never a broken sequence; may be empty */
  double time;      /* seconds of input audio: the token's position minus the delay */
  double audio_end; /* seconds of input audio consumed when it was produced */
  size_t alternative_count;
  const voxtral_alternative* alternatives; /* most likely first (the token itself) */
  /* Seconds of input audio where the word this piece's text belongs to starts and ends:
   * the same for every piece of a word (a piece whose text begins with a space, or the first
   * text after a segment end, starts a word). The end comes from when the model emitted the
   * word, the start from the onset of speech energy after the previous word (README,
   * "Timestamps"); the end never passes the audio fed. Pieces without text: both = time. */
  double start;
  double end;
} voxtral_piece;

VOXTRAL_API const char* voxtral_version(void);

VOXTRAL_API void voxtral_model_options_init(voxtral_model_options* options);
VOXTRAL_API voxtral_model* voxtral_model_load(const char* model_dir, const voxtral_model_options* options, char* error,
                                  size_t error_size);
/* 0: freed (or NULL). -1: streams created on it are still open; nothing was freed. */
VOXTRAL_API int voxtral_model_free(voxtral_model* model);
/* The model's input rate in Hz (16000), or 0 for NULL. */
VOXTRAL_API int voxtral_model_sample_rate(const voxtral_model* model);
/* The last error on this model (from voxtral_model_free), or "". The string is owned by the
 * model and stays valid until the next call on it (a later failure overwrites it) or its free;
 * copy it to keep it. */
VOXTRAL_API const char* voxtral_model_error(const voxtral_model* model);

VOXTRAL_API void voxtral_stream_options_init(voxtral_stream_options* options);
/* NULL and an error when the options are out of range, or when max_streams streams of the
 * model are open already. */
VOXTRAL_API voxtral_stream* voxtral_stream_create(voxtral_model* model, const voxtral_stream_options* options, char* error,
                                      size_t error_size);
VOXTRAL_API void voxtral_stream_free(voxtral_stream* stream);

/* Feeds samples at the model's sample rate (16 kHz), mono, floats in [-1, 1] or PCM16.
 * `samples` may be NULL only when `count` is 0. A NaN or infinite sample, or a float beyond
 * +-2 (6 dB over full scale: integer PCM values passed as floats), is refused: -1, an error
 * naming its index, and none of the call's samples are taken (the stream stays usable).
 * Returns once the audio has been decoded as far as it allows: the next read has its text.
 * A failure in decoding (e.g. the K/V cache of kv_cache_mb is full) ends the stream: this and
 * every later call return -1 with that error. */
VOXTRAL_API int voxtral_stream_feed(voxtral_stream* stream, const float* samples, size_t count);
VOXTRAL_API int voxtral_stream_feed_pcm16(voxtral_stream* stream, const int16_t* samples, size_t count);
/* At a pause: brings out everything said so far; later audio continues the stream. */
VOXTRAL_API int voxtral_stream_flush(voxtral_stream* stream);
/* End of the audio: brings out the rest. No more audio may be fed. */
VOXTRAL_API int voxtral_stream_finish(voxtral_stream* stream);
/* The pieces produced since the last call; they stay valid until the next call on the stream.
 * `pieces` NULL is an error (0, voxtral_stream_error says so) and takes nothing. */
VOXTRAL_API size_t voxtral_stream_read(voxtral_stream* stream, const voxtral_piece** pieces);
/* The last error on this stream, or "" after a call that succeeded. The string is owned by the
 * stream and stays valid until the next call on that stream (which may overwrite or clear it)
 * or its free; copy it to keep it. */
VOXTRAL_API const char* voxtral_stream_error(const voxtral_stream* stream);

/* Reads an audio file (WAV) as mono floats at `sample_rate` (1000 to 384000 Hz; other rates
 * are an error), with the count in *count (required); free with voxtral_free_samples. A FIFO
 * or device is read to its end, at most 4 hours of audio: more is an error (an endless source
 * must not take all memory; feed a stream piece by piece instead); an open or read a signal
 * interrupts (EINTR) is resumed. Channels are averaged, or one is used when they cancel.
 * Float WAV samples beyond +-2 are an error (integer PCM values stored as floats). */
VOXTRAL_API float* voxtral_load_audio(const char* path, int sample_rate, size_t* count, char* error, size_t error_size);
VOXTRAL_API void voxtral_free_samples(float* samples);

#ifdef __cplusplus
}
#endif

#endif /* VOXTRAL_H */
