"""Runs llama.cpp's `convert_llama_ggml_to_gguf.py` (path, then its arguments) as is, with one
adaptation to the `gguf` package it ships beside.

The converter hands `GGUFWriter.add_tensor` each tensor as raw bytes (a uint8 array) with its shape
in elements, from before gguf-py took a raw tensor's shape in bytes (`quant_shape_from_byte_shape`):
with gguf 0.19 every tensor's header shape comes out divided by its bytes per element, and llama.cpp
refuses the file ("tensor ... has offset X, expected Y"). The element shape is turned into the byte
shape gguf expects, so the header is right again. Started as a script: imports nothing of Hearth's.
"""

from __future__ import annotations

import runpy
import sys

import gguf
import numpy as np
from gguf.quants import quant_shape_to_byte_shape

_add_tensor = gguf.GGUFWriter.add_tensor


def add_tensor(self, name, tensor, raw_shape=None, raw_dtype=None, tensor_endianess=None):
    if raw_dtype is not None and raw_shape is not None and tensor.dtype == np.uint8:
        raw_shape = quant_shape_to_byte_shape(raw_shape, raw_dtype)
    return _add_tensor(self, name, tensor, raw_shape, raw_dtype, tensor_endianess)


if __name__ == "__main__":
    gguf.GGUFWriter.add_tensor = add_tensor
    script, *arguments = sys.argv[1:]
    sys.argv = [script, *arguments]
    runpy.run_path(script, run_name="__main__")
