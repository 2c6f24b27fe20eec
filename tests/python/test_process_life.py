"""The package at a process's edges: the interpreter exiting while daemon threads are inside
the engine, signal handlers calling into the stream they interrupted, a model used after
fork(). Each case runs in a child python with a time limit: the old faults were crashes
(SIGSEGV/SIGABRT at exit) and hangs, which no in-process test survives. The work the signals
and exits must meet is long (the demo model got through 196 s of speech in under 1.3 s on
2 cores): many minutes of audio, so that it is still running when they come."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import BACKEND, SOURCE

PRELUDE = f"""
import os, signal, sys, threading, time, wave
import numpy as np
import voxtral
with wave.open({str(SOURCE / "samples" / "commands.wav")!r}) as w:
    speech = np.frombuffer(w.readframes(w.getnframes()), np.int16)
model = voxtral.Model({str(SOURCE / "models" / "demo")!r}, backend={BACKEND!r})
"""


def run_child(body: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    script = PRELUDE + textwrap.dedent(body)
    try:
        result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the child hung (over {timeout} s); its output: {e.stdout!r} {e.stderr!r}")
    assert result.returncode >= 0, f"killed by signal {-result.returncode}: {result.stderr[-2000:]}"
    return result


@pytest.mark.parametrize("call", ["transcribe", "feed"])
def test_the_interpreter_exits_cleanly_while_a_daemon_thread_waits_in_the_engine(call):
    for _ in range(3):  # the crash came 2 or 3 times in 3
        result = run_child(
            """
            if sys.argv[1] == "transcribe":
                work = lambda: model.transcribe(np.tile(speech, 60))
            else:
                stream = model.stream()
                work = lambda: stream.feed(np.tile(speech, 60))
            threading.Thread(target=work, daemon=True).start()
            time.sleep(1.0)
            print("main exits", flush=True)
            """,
            call,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout == "main exits\n"
        assert result.stderr == ""


def test_ctrl_c_in_main_while_a_daemon_worker_transcribes_exits_cleanly():
    result = run_child(
        """
        threading.Thread(target=lambda: [model.transcribe(np.tile(speech, 5)) for _ in range(5)], daemon=True).start()
        threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        try:
            while True:
                time.sleep(0.1)
        except KeyboardInterrupt:
            print("Ctrl-C: exiting", flush=True)
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "Ctrl-C: exiting\n"


@pytest.mark.parametrize("call", ["finish", "flush"])
def test_a_signal_handler_calling_into_the_stream_it_interrupted_is_refused(call):
    result = run_child(
        """
        stream = model.stream()
        def on_sigint(sig, frame):
            getattr(stream, sys.argv[1])()
        signal.signal(signal.SIGINT, on_sigint)
        threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        try:
            stream.feed(np.tile(speech, 40))
        except voxtral.Error as e:
            print(e, flush=True)
        stream.feed(speech)  # the stream goes on
        stream.finish()
        print("words:", len("".join(p.text for p in stream).split()) > 0)
        """,
        call,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(
        f"stream.{call}() called from inside this stream's feed() (a signal handler?): "
    ), result.stdout
    assert f"call {call}() once feed() has returned" in result.stdout
    assert result.stdout.endswith("words: True\n")


def test_ctrl_c_interrupts_a_call_waiting_for_another_threads_call_on_the_stream():
    result = run_child(
        """
        stream = model.stream()
        worker = threading.Thread(target=lambda: stream.feed(np.tile(speech, 120)), daemon=True)
        worker.start()
        time.sleep(0.3)
        threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        start = time.monotonic()
        try:
            stream.flush()
            print("flush returned")
        except KeyboardInterrupt:
            print("interrupted within 3 s:", time.monotonic() - start < 3.0)
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "interrupted within 3 s: True\n"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_a_model_used_after_fork_is_an_error_naming_the_cure():
    result = run_child(
        """
        stream = model.stream()
        pid = os.fork()
        if pid == 0:
            for call in (lambda: model.transcribe(speech), lambda: model.stream(), lambda: stream.feed(speech)):
                try:
                    call()
                    print("no error")
                except voxtral.Error as e:
                    print(str(e).replace(str(os.getpid()), "CHILD").replace(str(os.getppid()), "PARENT"))
            sys.stdout.flush()
            sys.exit(0)  # a normal exit: the inherited model and stream are let go in the child
        _, status = os.waitpid(pid, 0)
        print("child status", status)
        print("parent still works:", len(model.transcribe(speech).text) > 0)
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    model_error = (
        "model: this Model was created in process PARENT; this is process CHILD (after fork()), where its engine "
        "does not run. Create a new Model in the child (multiprocessing: use the 'spawn' start method, or load "
        "the model in each worker)"
    )
    assert lines[:3] == [model_error] * 3
    assert lines[3:] == ["child status 0", "parent still works: True"]
