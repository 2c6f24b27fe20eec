"""Bad input to the Python package: a clear exception naming the argument and the problem,
never a crash; the model and its streams stay usable after a refusal."""

import os
import signal
import threading
import time

import numpy as np
import pytest

import voxtral
from conftest import BACKEND, SOURCE, read_wav, sample_path, truth

DEMO = SOURCE / "models" / "demo"


def test_the_exceptions_are_runtime_errors():
    assert issubclass(voxtral.Error, RuntimeError)
    assert issubclass(voxtral.BusyError, voxtral.Error)
    assert voxtral.Error.__module__ == "voxtral"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"threads": 5000}, "threads: 5000 is out of range (1 to 1024, or 0 for one per core)"),
        ({"threads": -1}, "threads: -1 is out of range"),
        ({"backend": "tpu"}, 'backend: unknown value "tpu" (use auto, cpu, cuda)'),
        ({"weights": "int4"}, 'weights: unknown value "int4"'),
        ({"precision": "fastest"}, 'precision: unknown value "fastest"'),
        ({"kv_cache": "f16"}, 'kv_cache: unknown value "f16"'),
        ({"max_streams": 5000}, "max_streams: 5000 is out of range"),
        ({"kv_cache_mb": 1 << 40}, "kv_cache_mb: 1099511627776 is out of range"),
        ({"kv_cache_mb": 1 << 29}, "kv_cache_mb: 536870912 MiB is more than this machine's memory"),
    ],
)
def test_an_option_out_of_range_is_a_value_error_naming_it(options, message):
    with pytest.raises(ValueError) as e:
        voxtral.Model(DEMO, **options)
    assert message in str(e.value)
    assert "--" not in str(e.value)  # the field's name, not the command line's flag


def test_an_option_of_the_wrong_type_is_a_type_error():
    with pytest.raises(TypeError):
        voxtral.Model(DEMO, threads="4")
    with pytest.raises(TypeError):
        voxtral.Model(DEMO, "cpu")  # the options are keywords
    with pytest.raises(TypeError, match="path"):
        voxtral.Model(42)


def test_a_missing_model_is_an_engine_error_naming_it(tmp_path):
    with pytest.raises(voxtral.Error, match="no such model directory"):
        voxtral.Model(tmp_path / "nothing-here")
    with pytest.raises(voxtral.Error, match="params.json"):
        voxtral.Model(tmp_path)


def test_a_missing_audio_file_is_an_engine_error_naming_it(model, tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(voxtral.Error) as e:
        model.transcribe(missing)
    assert str(missing) in str(e.value) and "no such file" in str(e.value).lower()


def test_a_file_that_is_not_wav_is_an_engine_error(model, tmp_path):
    mp3 = tmp_path / "song.wav"
    mp3.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"x" * 100)
    with pytest.raises(voxtral.Error, match="MP3"):
        model.transcribe(mp3)


def test_an_empty_path_is_a_value_error(model):
    with pytest.raises(ValueError, match="the file name is empty"):
        model.transcribe("")


@pytest.mark.parametrize(
    "audio, error, message",
    [
        (np.zeros(100, dtype=np.int32), TypeError, "dtype int32"),
        (np.zeros(100, dtype=np.complex64), TypeError, "dtype complex64"),
        (np.zeros(100, dtype=np.uint8), TypeError, "dtype uint8"),
        (np.array(["a", "b"]), TypeError, "dtype <U1"),
        (np.zeros((2, 100), dtype=np.float32), ValueError, "1-D array of mono samples, got shape (2, 100)"),
        (np.zeros((100, 1), dtype=np.int16), ValueError, "got shape (100, 1)"),
        (np.float32(0.5), ValueError, "got shape ()"),
        (b"RIFF....WAVE", TypeError, "expected a numpy array of samples, got bytes"),
        (object(), TypeError, "expected a numpy array of samples (float32 in [-1, 1] or int16), got object"),
        (None, TypeError, "got NoneType"),
    ],
)
def test_audio_that_is_not_mono_samples_is_refused(model, audio, error, message):
    with pytest.raises(error) as e:
        model.transcribe(audio)
    assert message in str(e.value)
    with model.stream() as s:
        with pytest.raises(error) as e:
            s.feed(audio)
        assert message in str(e.value)


@pytest.mark.parametrize("bad, what", [(np.nan, "NaN"), (np.inf, "infinite"), (-np.inf, "infinite")])
def test_a_nan_or_infinite_sample_is_refused_by_its_index(model, bad, what):
    audio, _ = read_wav(sample_path("timer"))
    samples = audio.astype(np.float32) / 32768
    samples[7] = bad
    with pytest.raises(ValueError, match=f"sample 7 of {len(samples)} is {what}"):
        model.transcribe(samples)
    with model.stream(sample_rate=48000) as s:  # checked before resampling: the caller's index
        with pytest.raises(ValueError, match=f"sample 7 of {len(samples)} is {what}"):
            s.feed(samples)
        samples[7] = 0
        s.feed(samples[:8000])  # the stream is still usable
        s.finish()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_int16_values_passed_as_floats_are_refused_saying_what_to_do(model, dtype):
    audio, _ = read_wav(sample_path("timer"))
    at = int(np.argmax(np.abs(audio.astype(np.int32))))
    peak = abs(int(audio[at]))  # 18533 in this recording
    as_floats = audio.astype(dtype)  # the values, not divided by 32768: noise if read as is
    expected = (
        f"samples must be in [-1, 1] (float full scale), got a peak of {peak} at sample {at}; if they are "
        "16-bit PCM values, pass them as an int16 array or divide them by 32768; nothing of this call was taken"
    )
    with pytest.raises(ValueError) as e:
        model.transcribe(as_floats)
    assert str(e.value) == "audio: " + expected
    with model.stream() as s:
        with pytest.raises(ValueError) as e:
            s.feed(as_floats)
        assert str(e.value) == "samples: " + expected
        s.feed(audio)  # the stream is still usable, and the advice works
        s.finish()
        assert "".join(p.text for p in s).strip() == truth("timer")["text"]
    assert model.transcribe(as_floats / 32768).text == truth("timer")["text"]


@pytest.mark.parametrize("peak", [1.0, 1.5, 1.99])
def test_float_audio_a_little_over_full_scale_is_transcribed(model, peak):
    # soundfile/librosa give a loud master's overs and a resampler's ringing as they are.
    audio, _ = read_wav(sample_path("timer"))
    samples = audio.astype(np.float32) * np.float32(peak / np.abs(audio.astype(np.float32)).max())
    assert model.transcribe(samples).text == truth("timer")["text"]


def test_the_float_bound_is_two():
    with voxtral.Model(DEMO, backend=BACKEND, threads=1) as m:
        assert m.transcribe(np.array([0.0, 2.0, -2.0], dtype=np.float32)).text == ""
        with pytest.raises(ValueError, match=r"got a peak of 2.001 at sample 2; if they are 16-bit"):
            m.transcribe(np.array([0.0, 2.0, -2.001], dtype=np.float32))


def test_a_float64_beyond_float32_is_infinite(model):
    with pytest.raises(ValueError, match="sample 2 of 3 is infinite"):
        model.transcribe(np.array([0.0, 0.1, 1e300]))


def test_a_stream_refused_a_sample_goes_on_with_the_rest(model):
    audio, _ = read_wav(sample_path("lights"))
    with model.stream() as s:
        s.feed(audio[:16000])
        with pytest.raises(ValueError):
            s.feed(np.array([np.nan], dtype=np.float32))
        s.feed(audio[16000:])
        s.finish()
        assert "".join(p.text for p in s).strip() == truth("lights")["text"]


@pytest.mark.parametrize("rate", [0, 999, 384001, -16000])
def test_a_sample_rate_out_of_range_is_a_value_error(model, rate):
    with pytest.raises(ValueError, match=f"sample_rate: {rate} Hz is out of range"):
        model.stream(sample_rate=rate)
    with pytest.raises(ValueError, match=f"sample_rate: {rate} Hz is out of range"):
        model.transcribe(np.zeros(10, dtype=np.float32), sample_rate=rate)


def test_a_sample_rate_with_a_path_is_refused(model):
    with pytest.raises(ValueError, match="sample_rate is for arrays"):
        model.transcribe(sample_path("timer"), sample_rate=16000)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"delay_ms": 100}, "delay"),
        ({"delay_ms": -80}, "delay_ms"),
        ({"processing_interval_s": 61.0}, "processing_interval_s"),
        ({"processing_interval_s": float("nan")}, "processing_interval_s"),
    ],
)
def test_stream_options_out_of_range_are_value_errors(model, options, message):
    with pytest.raises(ValueError, match=message):
        model.stream(**options)


def test_audio_after_finish_is_refused(model):
    with model.stream() as s:
        s.feed(np.zeros(1600, dtype=np.int16))
        s.finish()
        with pytest.raises(ValueError, match=r"audio fed after finish\(\)"):
            s.feed(np.zeros(1600, dtype=np.int16))
        s.finish()  # again: nothing more happens
        s.flush()


def test_a_closed_stream_is_refused(model):
    s = model.stream()
    s.close()
    assert s.closed
    for call in (lambda: s.feed(np.zeros(10, dtype=np.float32)), s.flush, s.finish):
        with pytest.raises(ValueError, match="stream: it was closed"):
            call()
    assert list(s) == []
    s.close()  # again: nothing happens


def test_more_streams_than_max_streams_is_a_busy_error():
    with voxtral.Model(DEMO, backend=BACKEND, max_streams=2) as m:
        a, b = m.stream(), m.stream()
        with pytest.raises(voxtral.BusyError, match="all 2 streams of this model are in use") as e:
            m.stream()
        assert "max_streams" in str(e.value)
        # Open streams hold every place: a transcription cannot wait for them.
        with pytest.raises(voxtral.BusyError):
            m.transcribe(sample_path("timer"))
        b.close()
        assert m.transcribe(sample_path("timer")).text == truth("timer")["text"]
        a.close()


def test_a_closed_model_is_refused_and_its_streams_go_on():
    m = voxtral.Model(DEMO, backend=BACKEND)
    s = m.stream()
    m.close()
    assert m.closed
    with pytest.raises(ValueError, match="model: it was closed"):
        m.transcribe(sample_path("timer"))
    with pytest.raises(ValueError, match="model: it was closed"):
        m.stream()
    audio, _ = read_wav(sample_path("timer"))
    s.feed(audio)
    s.finish()
    assert "".join(p.text for p in s).strip() == truth("timer")["text"]
    s.close()


def test_ctrl_c_interrupts_a_long_transcription(model):
    audio, _ = read_wav(sample_path("commands"))
    long = np.tile(audio, 30)  # 8 minutes
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    started = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        model.transcribe(long)
    assert time.monotonic() - started < 2.0
    # Its place went back: the model goes on.
    assert model.transcribe(sample_path("timer")).text == truth("timer")["text"]


@pytest.mark.parametrize(
    "cls, message",
    [
        (voxtral.Transcript, "voxtral.Transcript cannot be created directly; Model.transcribe() gives one"),
        (voxtral.Stream, "voxtral.Stream cannot be created directly; Model.stream() gives one"),
        (voxtral.Segment, "voxtral.Segment cannot be created directly"),
        (voxtral.Word, "voxtral.Word cannot be created directly"),
        (voxtral.Piece, "voxtral.Piece cannot be created directly"),
    ],
)
def test_the_engines_objects_cannot_be_made_without_it(cls, message):
    with pytest.raises(TypeError) as e:
        cls.__new__(cls)
    assert str(e.value).startswith(message)


def test_a_model_made_without_init_is_refused_by_every_method():
    m = voxtral.Model.__new__(voxtral.Model)
    calls = [
        lambda: m.transcribe(np.zeros(10, np.float32)),
        lambda: m.stream(),
        m.close,
        lambda: repr(m),
        lambda: m.backend,
        lambda: m.backend_description,
        lambda: m.closed,
        lambda: m.path,
        lambda: m.sample_rate,
        lambda: m.max_streams,
        lambda: m.__exit__(None, None, None),
    ]
    for call in calls:
        with pytest.raises(TypeError, match=r"made by Model.__new__ without __init__; create it as voxtral.Model\(path\)"):
            call()
    with pytest.raises(TypeError, match="expected a voxtral.Model"):
        voxtral.Model.close(object())


def test_a_model_path_that_is_empty_is_named_path():
    with pytest.raises(ValueError, match="^path: the file name is empty$"):
        voxtral.Model("")


def test_a_nul_byte_in_a_path_is_a_value_error_not_a_shorter_name(model):
    with pytest.raises(ValueError, match="audio: embedded null byte in the file name"):
        model.transcribe(str(sample_path("timer")) + "\0junk")
    with pytest.raises(ValueError, match="path: embedded null byte"):
        voxtral.Model(str(DEMO) + "\0")


def test_a_file_name_that_is_not_utf8_is_read(model, tmp_path):
    # os.listdir gives such a name with surrogate escapes; it is still the file (os.fsencode).
    name = os.fsdecode(b"caf\xe9.wav")
    target = tmp_path / name
    target.write_bytes(sample_path("timer").read_bytes())
    assert model.transcribe(os.path.join(str(tmp_path), name)).text == truth("timer")["text"]
