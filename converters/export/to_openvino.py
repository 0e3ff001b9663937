"""ONNX / TFLite / PyTorch -> OpenVINO IR (.xml graph + .bin weights).

openvino.convert_model reads ONNX and TFLite files itself; PyTorch sources are loaded with the
same safety checks as when opening them (converters.export.to_onnx.load_torch_source) and
handed over as an ExportedProgram or a ScriptModule with example inputs. The IR is written in
FP32: making it FP16 is the fp16 pass's job, so compress_to_fp16 is off here.

The two files appear under their final names in one step each (.bin first, then .xml, so a
reader that finds the .xml finds its weights). openvino is imported inside functions only.
"""
from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Any

from converters.export import register_conversion
from converters.export.to_onnx import (
    TorchSource,
    count_outputs,
    load_torch_source,
    move_into_place,
    output_names,
    stem_of,
    staging_dir,
)
from converters.formats.openvino_format import ov_error_summary
from converters.passes import ModelFile, PassContext, PassError, PassResult

logger = logging.getLogger(__name__)

# How OpenVINO's frontends list the ops they could not convert (the same wording the
# openvino backend parses when reading a model).
_MISSING_OPS = re.compile(r"(?:No conversion rule found for operations|OpenVINO does not "
                          r"support the following \w+ operations)\s*:\s*([^\n]+)")
_FAILED_OPS = re.compile(r"Conversion is failed for\s*:\s*([^\n]+)")


@register_conversion("onnx", "openvino")
def onnx_to_openvino(model: ModelFile, ctx: PassContext) -> PassResult:
    """ONNX -> IR; OpenVINO keeps the ONNX input/output names and shapes."""
    return _file_to_openvino(model, ctx)


@register_conversion("tflite", "openvino")
def tflite_to_openvino(model: ModelFile, ctx: PassContext) -> PassResult:
    """TFLite -> IR through OpenVINO's TFLite frontend (no TensorFlow needed); NHWC stays."""
    return _file_to_openvino(model, ctx)


@register_conversion("torch", "openvino")
def torch_to_openvino(model: ModelFile, ctx: PassContext, dynamic_batch: bool = True
                      ) -> PassResult:
    """.pt2 / TorchScript -> IR directly, with torch's input names and a dynamic batch."""
    ctx.check_cancelled()
    ctx.progress(0.0, f"loading {model.path.name}")
    source = load_torch_source(Path(model.path))
    ctx.check_cancelled()
    ctx.progress(0.2, "converting with OpenVINO")
    args, kwargs = _torch_convert_args(source)
    ov_model = _convert(model.path.name, args, kwargs)
    messages = _fix_torch_io(ov_model, source, dynamic_batch)
    return _save(ov_model, model, ctx, {"source_kind": source.kind, "notes": source.notes},
                 messages)


def _file_to_openvino(model: ModelFile, ctx: PassContext) -> PassResult:
    ctx.check_cancelled()
    ctx.progress(0.0, f"converting {model.path.name} with OpenVINO")
    ov_model = _convert(model.path.name, (str(model.path),), {})
    return _save(ov_model, model, ctx, {}, [])


def _torch_convert_args(source: TorchSource) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if source.kind == "export":
        return (source.model,), {}
    example = source.example[0] if len(source.example) == 1 else source.example
    return (source.model,), {"example_input": example}


def _convert(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """openvino.convert_model, turning a refusal into a PassError naming the ops at fault."""
    import openvino as ov

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch tracing / pytree deprecation noise
            return ov.convert_model(*args, **kwargs)
    except Exception as e:  # OpConversionFailure is not a RuntimeError; torch errors vary
        logger.debug("convert_model failed on %s", name, exc_info=True)
        raise PassError(refusal_message(name, e)) from e


def refusal_message(name: str, err: Exception) -> str:
    """One sentence naming the ops OpenVINO could not convert, plus its own reason."""
    text = str(err)
    missing = _ops(_MISSING_OPS, text)
    failed = _ops(_FAILED_OPS, text)
    if missing:
        msg = (f"OpenVINO cannot convert {name}: it has no conversion for the "
               f"operation{'s' if len(missing) > 1 else ''} {', '.join(missing)} (a custom or "
               "newer op; it needs an OpenVINO extension, or keep the model in another format)")
        return msg + (f"; conversion also failed for {', '.join(failed)}" if failed else "")
    if failed:
        return (f"OpenVINO cannot convert {name}: converting the "
                f"operation{'s' if len(failed) > 1 else ''} {', '.join(failed)} failed "
                f"({ov_error_summary(err)})")
    return f"OpenVINO cannot convert {name}: {ov_error_summary(err)}"


def _ops(pattern: re.Pattern[str], text: str) -> list[str]:
    ops: list[str] = []
    for m in pattern.finditer(text):
        ops += [op.strip() for op in m.group(1).split(",") if op.strip()]
    return list(dict.fromkeys(ops))


def _fix_torch_io(ov_model: Any, source: TorchSource, dynamic_batch: bool) -> list[str]:
    """Torch's argument names on the inputs, known shapes (batch dynamic), named outputs.

    OpenVINO's PyTorch frontend leaves inputs fully dynamic ([?,?,?,?]) and names TorchScript
    inputs "x.1"; the ONNX export names them after the arguments, and so do we here.
    """
    import openvino as ov

    messages: list[str] = []
    if dynamic_batch and source.kind == "export" and not source.dynamic_batch:
        messages.append("the torch.export program has a fixed batch size, so the IR keeps it: "
                        "export the program with dynamic_shapes for a dynamic batch")
    shapes = _input_shapes(source, dynamic_batch)
    if len(ov_model.inputs) == len(source.input_names):
        new_shapes = {}
        for port, name, shape in zip(ov_model.inputs, source.input_names, shapes):
            port.get_tensor().set_names({name})
            if shape is not None:
                new_shapes[port] = ov.PartialShape(shape)
        try:
            if new_shapes:
                ov_model.reshape(new_shapes)
        except Exception as e:  # a graph that only works at the traced shape
            logger.debug("reshape failed", exc_info=True)
            messages.append(f"the IR keeps OpenVINO's input shapes: setting "
                            f"{[str(s) for s in new_shapes.values()]} failed "
                            f"({ov_error_summary(e)})")
    else:
        messages.append("OpenVINO's inputs do not match the torch arguments one to one; their "
                        "names and shapes are left as OpenVINO made them")
    if len(ov_model.outputs) == count_outputs(source):
        for port, name in zip(ov_model.outputs, output_names(len(ov_model.outputs))):
            port.get_tensor().set_names({name})
    return messages


def _input_shapes(source: TorchSource, dynamic_batch: bool) -> list[list[int] | None]:
    """Each input's shape with -1 for dynamic sizes; None where unknown."""
    if source.kind == "torchscript":
        shapes = [list(t.shape) for t in source.example]
        dynamic = dynamic_batch
    else:
        user = set(source.model.graph_signature.user_inputs)
        shapes = []
        for node in source.model.graph.nodes:
            if node.op == "placeholder" and node.name in user:
                val = node.meta.get("val")
                shape = getattr(val, "shape", None)
                shapes.append(None if shape is None else
                              [d if isinstance(d, int) else -1 for d in shape])
        dynamic = dynamic_batch and source.dynamic_batch
    if dynamic:
        shapes = [[-1, *s[1:]] if s else s for s in shapes]
    return shapes


def _save(ov_model: Any, model: ModelFile, ctx: PassContext, details: dict[str, Any],
          messages: list[str]) -> PassResult:
    """save_model into a staging folder, then .bin and .xml into place."""
    import openvino as ov

    ctx.check_cancelled()
    ctx.progress(0.8, "saving the IR")
    final = ctx.output_path(stem_of(Path(model.path)), ".xml")
    with staging_dir(ctx.work_dir) as tmp:
        xml = tmp / final.name
        # FP32 on purpose: FP16 compression is the fp16 pass's decision, not the converter's.
        ov.save_model(ov_model, str(xml), compress_to_fp16=False)
        ctx.check_cancelled()
        move_into_place([xml.with_suffix(".bin"), xml], final.parent)
    ctx.progress(1.0, f"wrote {final.name}")
    details = {**details, "inputs": [_port(p) for p in ov_model.inputs],
               "outputs": [_port(p) for p in ov_model.outputs], "compress_to_fp16": False}
    logger.info("converted %s to %s", model.path.name, final.name)
    return PassResult(output=ModelFile(final, "openvino"), changed=True, details=details,
                      messages=messages)


def _port(port: Any) -> dict[str, Any]:
    names = sorted(port.get_names())
    return {"name": names[0] if names else "", "shape": str(port.get_partial_shape())}
