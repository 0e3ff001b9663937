"""The `inspect` summary of one model: what `modeldeck inspect --json` prints and what the worker
sends the GUI. Engine code, so the worker computes it without importing the CLI."""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def inspect_summary(path: str, *, trust_pickle: bool = False, layers: bool = False,
                    graph: bool = False, shapes: dict[str, list[int]] | None = None,
                    inputs: str | None = None) -> dict[str, Any]:
    """Parse `path` and count it at its workload's sizes (see converters/workload.py).

    Parses an untrusted file: call it in a worker process (app.jobs.worker), never in a front end.
    """
    from converters.analysis import analyze
    from converters.formats import Trust, open_model

    trust = Trust(allow_pickle=trust_pickle)
    declared = open_model(path, trust)
    workload, model = _at_workload(declared, path, trust, shapes, inputs)
    a = analyze(model, keep_nodes=layers)
    g = declared.graph

    def io(names: list[str]) -> list[dict[str, Any]]:
        out = []
        for name in names:
            t = g.tensors.get(name)
            out.append({"name": name, "dtype": t.dtype if t else None,
                        "shape": t.shape if t else None})
        return out

    summary: dict[str, Any] = {
        "path": model.meta.path, "format": model.meta.format, "producer": model.meta.producer,
        "opset": model.meta.opset, "file_size": model.meta.file_size, "sha256": model.meta.sha256,
        "nodes": a.node_count, "params": a.params, "param_bytes": a.param_bytes,
        "weight_bytes": a.weight_bytes, "macs": a.macs, "flops": a.flops,
        "activation_bytes_peak": a.activation_bytes_peak,
        "inputs": io(g.inputs), "outputs": io(g.outputs), "ops": a.ops,
        "uncounted_ops": a.uncounted, "assumed_dims": a.assumed_dims, "notes": model.meta.notes,
        "workload": workload.to_dict() if workload is not None else None,
    }
    if layers:
        by_id = {item.node.id: item for item in model.walk()}
        rows = []
        for c in a.nodes:
            item = by_id[c.node_id]
            n = item.node
            outs = [item.tensor(o) for o in n.outputs]
            rows.append({"id": n.id, "name": n.name, "op_type": n.op_type, "domain": n.domain,
                         "scope": n.scope, "depth": item.depth, "params": c.params,
                         "macs": c.macs, "flops": c.flops, "note": c.note,
                         "output_shapes": [t.shape if t else None for t in outs]})
        summary["layers"] = rows
    if graph:  # the whole ModelGraph, for the GUI: parsed once, here
        summary["graph"] = model.to_dict()
    return summary


def _at_workload(declared: Any, path: str, trust: Any, shapes: dict[str, list[int]] | None,
                 inputs: str | None) -> tuple[Any, Any]:
    """(workload, graph at its sizes). A model whose sizes cannot be decided is still shown,
    at its declared sizes, with a note; sizes the user gave that do not fit are an error."""
    from converters.errors import ModelDeckError
    from converters.formats import open_model
    from converters.workload import make_dry_check, read_npz, resolve_workload

    try:
        data = read_npz(inputs, declared.graph.inputs) if inputs else None
        workload = resolve_workload(declared, None, shapes, data,
                                    dry_check=make_dry_check(path, declared.meta.format))
    except ModelDeckError as e:
        if shapes or inputs:
            raise
        declared.meta.notes.append(f"counted at the declared sizes: {e}")
        return None, declared
    same = all(declared.graph.tensors[n].shape == workload.get(n).shape
               if n in declared.graph.tensors and workload.get(n) is not None else True
               for n in declared.graph.inputs)
    model = declared
    if not same and declared.meta.format != "torch":
        try:
            model = open_model(path, trust, input_shapes=workload.shapes())
        except ModelDeckError as e:
            declared.meta.notes.append(f"counted at the declared sizes: {e}")
    model.meta.notes.extend(workload.notes)
    return workload, model

