"""Audio read from a FIFO (a pipe by name: `mkfifo`, a shell's <(...)) while signals arrive.
A signal whose Python handler returns is no failure: the open or read goes on, as Python's own
I/O does (PEP 475). One whose handler raises, Ctrl-C's KeyboardInterrupt, ends the wait with
that exception, and the model stays usable."""

import contextlib
import errno
import os
import signal
import threading
import time

import pytest

from conftest import sample_path, truth

MAIN = threading.main_thread().ident


def open_for_writing(fifo, within_s=10.0):
    """The FIFO's writing end, once a reader has it open (never blocks: a reader that gave up
    must not hang the test)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
            continue
        os.set_blocking(fd, True)
        return fd


@contextlib.contextmanager
def in_background(work):
    """Runs `work` in a thread for the block, then waits for it (so that no signal it sends
    outlives the test's handlers) and re-raises what it raised."""
    failure = []

    def run():
        try:
            work()
        except BaseException as e:  # noqa: BLE001 - handed to the test's thread
            failure.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(timeout=20)
        assert not thread.is_alive()
    if failure:
        raise failure[0]


@pytest.fixture
def usr1_handled():
    """SIGUSR1 with a handler that notes it and returns."""
    seen = []
    old = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    yield seen
    signal.signal(signal.SIGUSR1, old)


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "audio.wav"
    os.mkfifo(path)
    return path


def test_a_signal_during_a_fifo_read_is_no_failure(model, fifo, usr1_handled):
    data = sample_path("timer").read_bytes()

    def writer():
        fd = open_for_writing(fifo)
        try:
            os.write(fd, data[:4000])
            for _ in range(2):  # the reader now waits in read() for the rest
                time.sleep(0.3)
                signal.pthread_kill(MAIN, signal.SIGUSR1)
            time.sleep(0.3)
            os.write(fd, data[4000:])
        finally:
            os.close(fd)

    with in_background(writer):
        assert model.transcribe(fifo).text == truth("timer")["text"]
    assert usr1_handled == [signal.SIGUSR1] * 2


def test_a_signal_while_a_fifo_waits_for_its_writer_is_no_failure(model, fifo, usr1_handled):
    def writer():
        time.sleep(0.3)  # the reader now waits in open() for a writer
        signal.pthread_kill(MAIN, signal.SIGUSR1)
        time.sleep(0.3)
        fd = open_for_writing(fifo)
        try:
            os.write(fd, sample_path("timer").read_bytes())
        finally:
            os.close(fd)

    with in_background(writer):
        assert model.transcribe(fifo).text == truth("timer")["text"]
    assert usr1_handled == [signal.SIGUSR1]


@pytest.mark.parametrize("waiting_in", ["read", "open"])
def test_ctrl_c_ends_a_fifo_wait_with_keyboard_interrupt(model, fifo, waiting_in):
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    interrupted = threading.Event()

    def writer():
        if waiting_in == "open":
            time.sleep(0.3)
            signal.pthread_kill(MAIN, signal.SIGINT)
            return
        fd = open_for_writing(fifo)
        try:
            os.write(fd, sample_path("timer").read_bytes()[:4000])
            time.sleep(0.3)
            signal.pthread_kill(MAIN, signal.SIGINT)
            interrupted.wait(10)  # the writing end stays open: only Ctrl-C ends the read
        finally:
            os.close(fd)

    with in_background(writer):
        started = time.monotonic()
        try:
            with pytest.raises(KeyboardInterrupt):
                model.transcribe(fifo)
        finally:
            interrupted.set()
        assert time.monotonic() - started < 2.0
    assert model.transcribe(sample_path("timer")).text == truth("timer")["text"]
