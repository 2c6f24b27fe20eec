"""Voxtral Realtime speech-to-text on the CPU or an NVIDIA GPU, from the voxtral C++ engine.

    import voxtral
    model = voxtral.Model("models/demo")
    print(model.transcribe("samples/timer.wav").text)

Model.transcribe() takes a path or a numpy array and returns a Transcript (text, segments,
words with times in seconds); Model.stream() returns a Stream to feed live audio to, whose
iteration gives the new text. Errors: voxtral.Error (the engine's message), voxtral.BusyError,
ValueError and TypeError for wrong arguments.
"""

from ._voxtral import (
    BusyError,
    Error,
    Model,
    Piece,
    Segment,
    Stream,
    Transcript,
    Word,
    __version__,
)

__all__ = ["BusyError", "Error", "Model", "Piece", "Segment", "Stream", "Transcript", "Word", "__version__"]
