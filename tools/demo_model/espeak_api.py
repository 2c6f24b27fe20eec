"""Connected speech from libespeak-ng through ctypes, with each word's first and last sample.

espeak-ng speaks a whole phrase at once (coarticulation, phrase intonation, no pauses between
words) and reports, in its synthesis callback, events that carry the exact output sample at which
they happen (espeak_EVENT.sample, counted at the synthesizer's 22050 Hz):
  - a WORD event where a word begins (text_position: its first character, 1-based); for a word
    that starts with a plosive it comes before the closure, the PHONEME event at the burst;
  - a PHONEME event (id.string = the phoneme's mnemonic) where each phoneme begins; pauses are
    phonemes whose name starts with "_";
  - an END event after the last sample.
A word spans from its WORD event to the next WORD event, to the first pause phoneme after its
own phonemes, or to END, whichever comes first.

espeak-ng joins some word pairs into one phonological word ("on the", "has not"): one WORD event
then covers both, and the phonemes of the pair follow one another unchanged. Such a group is
split at the phoneme where the later word starts, counting each word's phonemes as espeak-ng
says it alone in the same voice (the counts are checked to add up). check_alignment.py
measures how well the spans match the audio.

The API (speak_lib.h of espeak-ng 1.51) is used in AUDIO_OUTPUT_SYNCHRONOUS mode: espeak_Synth
returns once the phrase is spoken, and all audio and events have reached the callback. The data
path comes from ESPEAK_DATA_PATH.

The library keeps state from one phrase to the next (the same call twice in a row gives audio
a few samples apart, and events of an earlier phrase can show up in a later one), and it cannot
be initialised a second time in a process. So each process initialises it once and speaks every
phrase in a forked child that has never spoken: the output is a function of the arguments only,
as with one espeak-ng command per phrase.
"""
import ctypes
import os
import pickle
import re

import numpy as np

SOURCE_RATE = 22050
AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
INITIALIZE_DONT_EXIT = 0x8000
EVENT_LIST_TERMINATED, EVENT_WORD, EVENT_END, EVENT_PHONEME = 0, 1, 5, 7
PARAM_RATE, PARAM_PITCH, PARAM_RANGE, PARAM_WORDGAP = 1, 3, 4, 7


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class Synth:
    """One libespeak-ng per process (the library holds global state)."""

    _instance = None

    @classmethod
    def get(cls):
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def __init__(self):
        self.lib = ctypes.CDLL("libespeak-ng.so.1")
        rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None,
                                          INITIALIZE_PHONEME_EVENTS | INITIALIZE_DONT_EXIT)
        if rate != SOURCE_RATE:
            raise RuntimeError(f"libespeak-ng initialisation failed or runs at {rate} Hz (want {SOURCE_RATE});"
                               " is ESPEAK_DATA_PATH right?")
        self.chunks, self.events, self._counts = [], [], {}
        self._callback = _CALLBACK(self._collect)  # kept referenced: the library calls it later
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n, events):
        if n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            e = events[i]
            name = bytes(e.id.string).split(b"\0")[0].decode("ascii", "replace") if e.type == EVENT_PHONEME else ""
            self.events.append((e.type, e.sample, e.text_position, name))
            i += 1
        return 0

    def speak(self, text, voice, rate, pitch, pitch_range=50, word_gap=0):
        """int16 audio at SOURCE_RATE and the event list [(type, sample, text position, phoneme)]."""
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            try:
                result = (True, self._speak(text, voice, rate, pitch, pitch_range, word_gap))
            except Exception as e:  # noqa: BLE001  (handed to the parent, which raises it)
                result = (False, e)
            with os.fdopen(write_end, "wb") as out:
                pickle.dump(result, out)
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as inp:
            data = inp.read()
        _, status = os.waitpid(pid, 0)
        if status != 0 or not data:
            raise RuntimeError(f"espeak-ng child failed (status {status}) on {text!r} in {voice}")
        ok, result = pickle.loads(data)
        if not ok:
            raise result
        return result

    def phoneme_count(self, word, voice, rate):
        key = (word, voice, rate)
        if key not in self._counts:
            self._counts[key] = len(phonemes(self.speak(word, voice, rate, 50)[1]))
        return self._counts[key]

    def speak_words(self, words, voice, rate, pitch, pitch_range=50):
        """int16 audio at SOURCE_RATE and each word's (start, end) sample."""
        audio, events = self.speak(" ".join(words), voice, rate, pitch, pitch_range)
        return audio, word_spans(events, words, len(audio), lambda w: self.phoneme_count(w, voice, rate))

    def _speak(self, text, voice, rate, pitch, pitch_range, word_gap):
        # "en-gb" is a language code, not a voice file name: its voice is gmw/en.
        name = re.sub(r"^en-gb(\+|$)", r"en\1", voice)
        if self.lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        for param, value in ((PARAM_RATE, rate), (PARAM_PITCH, pitch), (PARAM_RANGE, pitch_range),
                             (PARAM_WORDGAP, word_gap)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        self.chunks, self.events = [], []
        data = text.encode()
        if self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 0, None, None) != 0:
            raise RuntimeError(f"espeak_Synth failed on {text!r}")
        audio = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
        return audio, self.events


def phonemes(events):
    """Non-pause phonemes in the order spoken: [(sample, name)]."""
    return [(sample, name) for kind, sample, _, name in events if kind == EVENT_PHONEME and not name.startswith("_")]


def word_spans(events, words, n_samples, phoneme_count):
    """[(start, end)] per word in SOURCE_RATE samples, from the synthesizer's events for the text
    " ".join(words) (see the module docstring). phoneme_count(word): how many phonemes espeak-ng
    says for the word alone in this voice, used only where words were joined. Raises ValueError
    when the events cannot be matched to the words."""
    groups, current = [], None  # [start, end or None, [(sample, phoneme)]] per WORD event
    for kind, sample, _, name in events:
        if kind == EVENT_WORD:
            if current is not None and current[1] is None:
                current[1] = sample
            current = [sample, None, []]
            groups.append(current)
        elif kind == EVENT_PHONEME and current is not None:
            if not name.startswith("_"):
                current[2].append((sample, name))
            elif current[2] and current[1] is None:
                current[1] = sample
        elif kind == EVENT_END and current is not None and current[1] is None:
            current[1] = sample
    if not groups or any(g[1] is None or not g[2] for g in groups):
        raise ValueError(f"events do not cover {' '.join(words)!r}")
    sizes = [1] * len(groups) if len(groups) == len(words) else _joined(groups, words, phoneme_count)
    spans, first = [], 0
    for (start, end, phones), size in zip(groups, sizes):
        k = 0
        for w in words[first:first + size - 1]:
            k += phoneme_count(w)
            spans.append((start, phones[k][0]))
            start = phones[k][0]
        spans.append((start, min(end, n_samples)))
        first += size
    if any(e <= s for s, e in spans) or any(b[0] < a[1] for a, b in zip(spans, spans[1:])):
        raise ValueError(f"word spans out of order: {spans}")
    return spans


def _joined(groups, words, phoneme_count):
    """Words per WORD event when espeak-ng joined some: the only split of the words into
    consecutive runs (one run per event, at most 3 words) in which every run of several words
    has exactly their phonemes-alone count of phonemes."""
    def splits(g, w):
        if g == len(groups):
            return [[]] if w == len(words) else []
        found = []
        for size in (1, 2, 3):
            if w + size > len(words):
                break
            if size > 1 and sum(phoneme_count(x) for x in words[w:w + size]) != len(groups[g][2]):
                continue
            found += [[size] + rest for rest in splits(g + 1, w + size)]
        return found

    found = splits(0, 0)
    if len(found) != 1:
        raise ValueError(f"{len(groups)} word events for {len(words)} words {words}: {len(found)} matching splits")
    return found[0]
