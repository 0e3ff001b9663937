"""TensorFlow Lite flatbuffers, read through OpenVINO's TFLite frontend (no TensorFlow needed).

The graph shown is OpenVINO's conversion of the model: NHWC layouts appear as Transpose nodes
around convolutions, and fused activations as separate nodes.
"""
from __future__ import annotations

import logging
from pathlib import Path

from converters.errors import ModelLoadError
from converters.formats import Format, Trust, register_format, sha256_of
from converters.formats.openvino_format import graph_from_ov_model, ov_error_summary, reshape_inputs
from converters.graph import ModelGraph, ModelMeta

log = logging.getLogger(__name__)

_IDENTIFIER = b"TFL3"  # flatbuffer file identifier, bytes 4..8


@register_format
class TfliteFormat(Format):
    name = "tflite"
    suffixes = (".tflite",)
    description = "TensorFlow Lite (.tflite)"
    max_file_bytes = 2**31 - 1  # flatbuffers address 32-bit offsets: nothing valid is larger

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return head[4:8] == _IDENTIFIER

    def load(self, path: Path, trust: Trust,
             input_shapes: dict[str, list[int]] | None = None) -> ModelGraph:
        path = Path(path)
        try:
            with open(path, "rb") as f:
                head = f.read(8)
        except OSError as e:
            raise ModelLoadError(f"cannot read {path}: {e.strerror}") from e
        if head[4:8] != _IDENTIFIER:
            # Checked here because OpenVINO would otherwise try every other frontend on it.
            raise ModelLoadError(
                f"{path.name} is not a TensorFlow Lite model: the 'TFL3' identifier is missing "
                "at byte 4 (the file is damaged, or another format with a .tflite name)")

        import openvino as ov

        try:
            model = ov.Core().read_model(str(path))
        except RuntimeError as e:
            raise ModelLoadError(
                f"{path.name} could not be read as a TensorFlow Lite model (truncated or damaged "
                f"file, or an op OpenVINO does not support): {ov_error_summary(e)}") from e
        meta = ModelMeta(
            format=self.name,
            path=str(path),
            file_size=path.stat().st_size,
            sha256=sha256_of([path]),
        )
        reshape_inputs(model, input_shapes, meta)
        return graph_from_ov_model(model, meta)
