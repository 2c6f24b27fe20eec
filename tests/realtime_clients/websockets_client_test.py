#!/usr/bin/env python3
"""A Python `websockets` client (Debian's python3-websockets) against voxtral-server's
/v1/realtime with the demo model: vLLM's protocol with a declared 24 kHz rate, OpenAI's
transcription session at 48 kHz, and OpenAI's error events. Expected words come from the
samples' scripts (samples/*.json).
  tests/realtime_clients/websockets_client_test.py <voxtral-server> <repository root>"""
import asyncio
import base64
import json
import os
import sys
import traceback

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_process import Server, pcm16, sample_text  # noqa: E402


async def send(ws, event):
    await ws.send(json.dumps(event))


async def append(ws, audio, rate):
    piece = rate // 10 * 2  # 100 ms
    for at in range(0, len(audio), piece):
        await send(ws, {"type": "input_audio_buffer.append", "audio": base64.b64encode(audio[at:at + piece]).decode()})


async def until(ws, kind):
    """The next event of type `kind`; any error event on the way fails."""
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if event["type"] == "error":
            raise AssertionError(f"error event: {event}")
        if event["type"] == kind:
            return event


def equal(actual, expected, what):
    if actual != expected:
        raise AssertionError(f"{what}: got {actual!r}, want {expected!r}")


async def vllm_at_24k(url, root):
    async with websockets.connect(url + "/v1/realtime") as ws:
        await until(ws, "session.created")
        await send(ws, {"type": "session.update", "model": "demo", "sample_rate": 24000})
        await send(ws, {"type": "input_audio_buffer.commit"})
        await append(ws, pcm16(root, "timer", 24000), 24000)
        await send(ws, {"type": "input_audio_buffer.commit", "final": True})
        equal((await until(ws, "transcription.done"))["text"], sample_text(root, "timer"), "transcript")


async def openai_at_48k(url, root):
    async with websockets.connect(url + "/v1/realtime?intent=transcription") as ws:
        await until(ws, "session.created")
        await send(ws, {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": 48000}, "transcription": {"model": "whisper-1"}}}}})
        equal((await until(ws, "session.updated"))["session"]["audio"]["input"]["format"]["rate"], 48000, "rate")
        await append(ws, pcm16(root, "lights", 48000), 48000)
        await send(ws, {"type": "input_audio_buffer.commit"})
        item = (await until(ws, "input_audio_buffer.committed"))["item_id"]
        completed = await until(ws, "conversation.item.input_audio_transcription.completed")
        equal(completed["item_id"], item, "item")
        equal(completed["transcript"], sample_text(root, "lights"), "transcript")


async def openai_errors(url, root):
    async with websockets.connect(url + "/v1/realtime?intent=transcription") as ws:
        await until(ws, "session.created")
        await send(ws, {"type": "session.update", "event_id": "evt_1", "session": {
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 1000}}}}})
        event = json.loads(await asyncio.wait_for(ws.recv(), 60))
        equal(event["type"], "error", "type")
        error = event["error"]
        equal((error["type"], error["code"], error["param"], error["event_id"]),
              ("invalid_request_error", "invalid_value", "session.audio.input.format.rate", "evt_1"), "error")
        if "1000 Hz" not in error["message"]:
            raise AssertionError(f"the message does not name the rate: {error['message']}")


async def main(binary, root):
    results = []
    with Server(binary, root) as server:
        url = "ws://" + server.authority
        for test in (vllm_at_24k, openai_at_48k, openai_errors):
            try:
                await test(url, root)
                results.append(True)
                print(f"ok {test.__name__}")
            except Exception:  # noqa: BLE001 (every failure is reported, the others still run)
                results.append(False)
                print(f"FAILED {test.__name__}\n{traceback.format_exc()}", file=sys.stderr)
    print(f"{results.count(True)} passed, {results.count(False)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))
