# Types of the binary module voxtral._voxtral (src/python/module.cc), re-exported by voxtral.
# tests/python/test_stubs.py checks that these names and parameters match the module.
import os
from types import TracebackType
from typing import Iterator, Literal, Optional, Union

import numpy as np
import numpy.typing as npt

__version__: str

AudioArray = Union[npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.int16]]
PathLike = Union[str, "os.PathLike[str]"]

class Error(RuntimeError):
    """The engine could not do what was asked; the message is the engine's."""

class BusyError(Error):
    """Every stream of the model is in use, or its K/V cache is full: try again later."""

class Word:
    @property
    def text(self) -> str: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...

class Segment:
    @property
    def text(self) -> str: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def words(self) -> list[Word]: ...

class Transcript:
    @property
    def text(self) -> str: ...
    @property
    def segments(self) -> list[Segment]: ...
    @property
    def words(self) -> list[Word]: ...
    @property
    def duration(self) -> float: ...

class Piece:
    @property
    def text(self) -> str: ...
    @property
    def token_id(self) -> int: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def time(self) -> float: ...
    @property
    def audio_end(self) -> float: ...

class Stream:
    def feed(self, samples: AudioArray) -> None: ...
    def flush(self) -> None: ...
    def finish(self) -> None: ...
    def close(self) -> None: ...
    @property
    def finished(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    @property
    def sample_rate(self) -> int: ...
    def __iter__(self) -> Iterator[Piece]: ...
    def __next__(self) -> Piece: ...
    def __enter__(self) -> Stream: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None: ...

class Model:
    def __init__(
        self,
        path: PathLike,
        *,
        backend: Literal["auto", "cpu", "cuda"] = "auto",
        weights: Literal["auto", "bf16", "fp16", "q8", "q4"] = "auto",
        precision: Literal["auto", "exact", "fast"] = "auto",
        threads: int = 0,
        kv_cache: Literal["auto", "f32", "bf16"] = "auto",
        max_streams: int = 0,
        kv_cache_mb: int = 0,
    ) -> None: ...
    def transcribe(
        self,
        audio: Union[PathLike, AudioArray],
        *,
        sample_rate: Optional[int] = None,
        delay_ms: int = 0,
        continuous: bool = True,
    ) -> Transcript: ...
    def stream(
        self,
        *,
        sample_rate: int = 16000,
        delay_ms: int = 0,
        processing_interval_s: float = 0.0,
        continuous: bool = True,
    ) -> Stream: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def path(self) -> str: ...
    @property
    def backend(self) -> str: ...
    @property
    def sample_rate(self) -> int: ...
    @property
    def max_streams(self) -> int: ...
    def __enter__(self) -> Model: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None: ...
