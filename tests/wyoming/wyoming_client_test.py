#!/usr/bin/env python3
"""A Wyoming client written from the protocol's description (Python's standard library only)
against a real voxtral-server --wyoming with the demo model: the service description, a
transcription of every sample with its streamed text, data given in the header or in its own
section, and a refused stream. Expected texts are the samples' scripts (samples/*.json).

    wyoming_client_test.py VOXTRAL_SERVER REPOSITORY_ROOT
"""
import json
import pathlib
import signal
import socket
import subprocess
import sys
import wave

TIMEOUT = 60  # seconds for any one read


def event_bytes(event_type, data=None, payload=b"", data_in_header=False):
    """One event: a JSON header line, then data_length bytes of JSON, then the payload."""
    header = {"type": event_type}
    data_bytes = b""
    if data and data_in_header:
        header["data"] = data
    elif data:
        data_bytes = json.dumps(data).encode()
        header["data_length"] = len(data_bytes)
    if payload:
        header["payload_length"] = len(payload)
    return json.dumps(header).encode() + b"\n" + data_bytes + payload


class Connection:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buffer = b""

    def send(self, event_type, data=None, payload=b"", data_in_header=False):
        self.sock.sendall(event_bytes(event_type, data, payload, data_in_header))

    def _fill(self):
        more = self.sock.recv(65536)
        if not more:
            return False
        self.buffer += more
        return True

    def read(self):
        """The next event as (type, data, payload), or None when the server closed."""
        while b"\n" not in self.buffer:
            if not self._fill():
                return None
        line, self.buffer = self.buffer.split(b"\n", 1)
        header = json.loads(line)
        data = header.get("data") or {}
        data_length = header.get("data_length") or 0
        payload_length = header.get("payload_length") or 0
        while len(self.buffer) < data_length + payload_length:
            if not self._fill():
                return None
        if data_length:
            data.update(json.loads(self.buffer[:data_length]))
        payload = self.buffer[data_length:data_length + payload_length]
        self.buffer = self.buffer[data_length + payload_length:]
        return header["type"], data, payload

    def close(self):
        self.sock.close()


failures = []


def check(condition, what):
    print(("ok    " if condition else "FAIL  ") + what)
    if not condition:
        failures.append(what)


def start_server(server, root):
    process = subprocess.Popen(
        [server, "-d", str(root / "models/demo"), "--port", "0", "--wyoming", "0"],
        stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        sys.stderr.write(line)
        if "Wyoming protocol on tcp://" in line:
            return process, int(line.rsplit(":", 1)[1])
    raise SystemExit("the server ended before it listened: exit %s" % process.wait())


def describe(port):
    c = Connection(port)
    c.send("describe")
    event_type, info, _ = c.read()
    c.close()
    check(event_type == "info", "describe is answered with info")
    programs = info.get("asr", [])
    check(len(programs) == 1 and programs[0]["installed"], "one installed asr program")
    program = programs[0]
    check(program.get("supports_transcript_streaming") is True, "it streams transcripts")
    models = program.get("models", [])
    check(len(models) == 1 and models[0]["name"] == "demo", "its model is named demo")
    check("en" in models[0]["languages"], "English is among its languages")
    for artifact in (program, models[0]):
        attribution = artifact.get("attribution", {})
        check(isinstance(attribution.get("name"), str) and isinstance(attribution.get("url"), str),
              "%s has an attribution" % artifact["name"])


def transcribe(port, wav_path, data_in_header):
    """Sends the file as Home Assistant does (1024 frames a chunk); returns the events."""
    with wave.open(str(wav_path), "rb") as wav:
        audio_format = {"rate": wav.getframerate(), "width": wav.getsampwidth(), "channels": wav.getnchannels()}
        c = Connection(port)
        c.send("transcribe", {"language": "en"}, data_in_header=data_in_header)
        c.send("audio-start", audio_format, data_in_header=data_in_header)
        while True:
            frames = wav.readframes(1024)
            if not frames:
                break
            c.send("audio-chunk", audio_format, frames, data_in_header=data_in_header)
    c.send("audio-stop")
    events = []
    while True:
        event = c.read()
        if event is None:
            break
        events.append(event)
        if event[0] in ("transcript-stop", "error"):
            break
    c.close()
    return events


def transcriptions(port, root):
    for number, wav_path in enumerate(sorted((root / "samples").glob("*.wav"))):
        expected = json.loads(wav_path.with_suffix(".json").read_text())["text"]
        events = transcribe(port, wav_path, data_in_header=number % 2 == 1)
        types = [e[0] for e in events]
        texts = [e[1]["text"] for e in events if e[0] == "transcript"]
        chunks = "".join(e[1]["text"] for e in events if e[0] == "transcript-chunk")
        name = wav_path.name
        check(texts == [expected], "%s: transcript %r (want %r)" % (name, texts, expected))
        check(chunks == expected, "%s: its transcript-chunk texts join to the transcript" % name)
        check(types[:1] == ["transcript-start"] and types[-2:] == ["transcript", "transcript-stop"],
              "%s: transcript-start first, transcript then transcript-stop last" % name)


def refused_stream(port):
    c = Connection(port)
    c.send("audio-chunk", {"rate": 16000, "width": 2, "channels": 1}, b"\0" * 3200)
    event = c.read()
    check(event is not None and event[0] == "error" and event[1].get("code") == "audio_not_started"
          and event[1].get("text"), "audio-chunk before audio-start: an error event with text and code")
    check(c.read() is None, "... then the server closes the connection")
    c.close()


def main():
    server, root = sys.argv[1], pathlib.Path(sys.argv[2])
    process, port = start_server(server, root)
    try:
        describe(port)
        transcriptions(port, root)
        refused_stream(port)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            status = "killed"
    check(status == 0, "the server stops on SIGTERM with status 0 (got %s)" % status)
    print("%d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
