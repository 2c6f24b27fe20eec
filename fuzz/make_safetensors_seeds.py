#!/usr/bin/env python3
"""Writes small valid safetensors files as seeds for fuzz_safetensors.

The format is written by hand (8-byte little-endian header length, JSON header padded with
spaces to 8 bytes, then the data) so no numpy or torch is needed.
Usage: python3 fuzz/make_safetensors_seeds.py [output_dir]
"""
import json
import os
import struct
import sys

DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, payload bytes or None for a counting pattern)."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name, dtype, shape, payload in tensors:
        count = 1
        for dim in shape:
            count *= dim
        nbytes = count * DTYPE_SIZES[dtype]
        if payload is None:
            payload = bytes(i % 251 for i in range(nbytes))
        assert len(payload) == nbytes
        # Keep every tensor aligned to 8 bytes, as the loader requires alignment to the dtype.
        data += b"\0" * (-len(data) % 8)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + nbytes]}
        data += payload
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text + data


SEEDS = {
    "empty_header": safetensors([]),
    "one_f32": safetensors([("w", "F32", [2, 3], struct.pack("<6f", 1, 2, 3, 4, 5, 6))]),
    "model_like": safetensors(
        [("layers.0.attention.wq.weight", "BF16", [4, 4], None),
         ("layers.0.attention_norm.weight", "BF16", [4], None),
         ("norm.weight", "BF16", [4], None)],
        metadata={"format": "pt"}),
    "every_dtype": safetensors([(f"t_{d.lower()}", d, [3], None) for d in DTYPE_SIZES]),
    "edge_shapes": safetensors(
        [("scalar", "I64", [], None), ("empty", "F32", [0, 7], None),
         ("ids", "I32", [5], struct.pack("<5i", 1, 32, 32, 1439, 2)),
         ("deep", "U8", [1, 1, 1, 1, 1, 1, 1, 2], None)]),
}


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "seeds",
                                                                    "fuzz_safetensors")
    os.makedirs(out_dir, exist_ok=True)
    for name, blob in SEEDS.items():
        with open(os.path.join(out_dir, name + ".safetensors"), "wb") as f:
            f.write(blob)


if __name__ == "__main__":
    main()
