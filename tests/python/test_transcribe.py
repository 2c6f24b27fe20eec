"""Model.transcribe on the demo model: the words espeak-ng spoke, from a path or an array at
any rate, with word times against the true ones (README "Timestamps": median |error| <= 80 ms,
95th percentile <= 200 ms) and segments where the speaker paused."""

import numpy as np
import pytest

from conftest import SAMPLES, read_wav, sample_path, sox_resampled, truth


def matched_errors(true_words, got_words):
    """|start| and |end| errors of the reported words matched to the true ones, in order."""
    assert [w.text for w in got_words] == [w[0] for w in true_words]
    starts = [abs(g.start - t[1]) for g, t in zip(got_words, true_words)]
    ends = [abs(g.end - t[2]) for g, t in zip(got_words, true_words)]
    return starts, ends


@pytest.mark.parametrize("name", SAMPLES)
def test_a_path_gives_the_spoken_text(model, name):
    t = model.transcribe(sample_path(name))
    assert t.text == truth(name)["text"]
    assert str(t) == t.text
    assert " ".join(w.text for w in t.words) == t.text


def test_word_times_match_the_speech(model):
    starts, ends = [], []
    for name in SAMPLES:
        t = model.transcribe(str(sample_path(name)))
        s, e = matched_errors(truth(name)["words"], t.words)
        starts += s
        ends += e
        for w in t.words:
            assert 0 <= w.start <= w.end <= t.duration, (name, w)
    for errors in (starts, ends):
        assert np.median(errors) <= 0.080
        assert np.quantile(errors, 0.95, method="inverted_cdf") <= 0.200


@pytest.mark.parametrize("name", ["numbers", "commands"])
def test_segments_break_where_the_speaker_paused(model, name):
    words = truth(name)["words"]
    expected = [[words[0][0]]]
    for before, after in zip(words, words[1:]):
        if after[1] - before[2] > 0.4:  # a pause: the segmenter's rule, on the true times
            expected.append([])
        expected[-1].append(after[0])
    t = model.transcribe(sample_path(name))
    assert [s.text for s in t.segments] == [" ".join(e) for e in expected]
    for s in t.segments:
        assert s.start <= s.words[0].start and s.end >= s.words[-1].end
    assert [w.text for s in t.segments for w in s.words] == [w.text for w in t.words]


def test_duration_is_the_audio_length(model):
    audio, rate = read_wav(sample_path("commands"))
    assert model.transcribe(sample_path("commands")).duration == pytest.approx(len(audio) / rate, abs=1e-3)


@pytest.mark.parametrize("dtype", ["int16", "float32", "float64"])
def test_an_array_gives_the_spoken_text(model, dtype):
    audio, rate = read_wav(sample_path("lights"))
    samples = audio if dtype == "int16" else audio.astype(dtype) / 32768
    assert model.transcribe(samples, sample_rate=rate).text == truth("lights")["text"]
    assert model.transcribe(samples).text == truth("lights")["text"]  # the model's rate by default


def test_a_strided_array_is_read_as_its_elements(model):
    audio, _ = read_wav(sample_path("timer"))
    interleaved = np.stack([audio, np.zeros_like(audio)], axis=1).reshape(-1)
    assert model.transcribe(interleaved[::2]).text == truth("timer")["text"]


def test_a_list_of_floats_is_an_array(model):
    audio, _ = read_wav(sample_path("timer"))
    assert model.transcribe((audio / 32768).tolist()).text == truth("timer")["text"]


# (8 kHz telephone audio loses what the demo model, trained on full-band speech, listens to.)
@pytest.mark.parametrize("rate", [22050, 24000, 44100, 48000])
def test_an_array_at_another_rate_is_resampled(model, rate, tmp_path):
    audio = sox_resampled("commands", rate, tmp_path)
    t = model.transcribe(audio, sample_rate=rate)
    assert t.text == truth("commands")["text"]
    assert t.duration == pytest.approx(len(audio) / rate, abs=0.01)


def test_a_file_at_another_rate_is_resampled(model, tmp_path):
    sox_resampled("numbers", 44100, tmp_path)
    assert model.transcribe(tmp_path / "numbers-44100.wav").text == truth("numbers")["text"]


def test_an_empty_array_has_no_text(model):
    t = model.transcribe(np.zeros(0, dtype=np.float32))
    assert (t.text, t.words, t.segments) == ("", [], [])


def test_silence_has_no_text(model):
    t = model.transcribe(np.zeros(32000, dtype=np.float32))
    assert t.text == "" and t.words == []


def test_the_delay_option_is_honoured(model):
    # The demo model is trained at 480 ms; other delays are still accepted and transcribe.
    for delay in (480, 960):
        assert model.transcribe(sample_path("timer"), delay_ms=delay).text == truth("timer")["text"]
