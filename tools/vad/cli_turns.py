"""The turns `voxtral --vad --debug` detects in a WAV file, shared by the VAD measurement scripts."""
import re
import subprocess


def detect(cli, model, wav):
    """[[start, end or None], ...] in seconds, from the CLI's "speech starts/ends at" lines."""
    out = subprocess.run([cli, "-d", model, "-i", wav, "--vad", "--debug", "--silent"], capture_output=True,
                         text=True, check=True).stderr
    turns = []
    for kind, t in re.findall(r"speech (starts|ends) at ([0-9.]+) s", out):
        if kind == "starts":
            turns.append([float(t), None])
        else:
            turns[-1][1] = float(t)
    return turns
