"""voxtral-server on a free loopback port for the Python client tests, and the samples' audio."""
import ctypes
import json
import os
import re
import signal
import subprocess
import time


def _end_with_parent():
    """In the child: SIGTERM when the test process dies (a CTest timeout kills it without
    cleanup), so no server outlives its test (Linux prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


class Server:
    """voxtral-server -d models/demo --port 0 [extra args], stopped on exit from the with-block."""

    def __init__(self, binary, root, *extra):
        self.process = subprocess.Popen([binary, "-d", os.path.join(root, "models", "demo"), "--port", "0", *extra],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                        preexec_fn=_end_with_parent)
        log, deadline = "", time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            log += line
            found = re.search(r"listening on http://([^/\s]+)/", line)
            if found:
                self.authority = found.group(1)
                return
        self.process.kill()
        raise RuntimeError(f"voxtral-server did not start: {log}")

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def pcm16(root, name, rate, silence=0.0):
    """16-bit little-endian PCM of samples/<name>.wav at `rate` (sox resamples), then `silence` s of zeros."""
    audio = subprocess.run(["sox", os.path.join(root, "samples", name + ".wav"), "-t", "raw", "-r", str(rate), "-e",
                            "signed", "-b", "16", "-c", "1", "-L", "-"], check=True, capture_output=True).stdout
    return audio + bytes(2 * round(silence * rate))


def sample_text(root, name):
    with open(os.path.join(root, "samples", name + ".json")) as f:
        return json.load(f)["text"]
