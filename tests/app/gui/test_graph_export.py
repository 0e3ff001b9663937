"""Headless graph export: `modeldeck graph MODEL -o out.svg|png [--expand all|N]`."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from app.cli import main
from tests.conftest import light_model

SVG = "{http://www.w3.org/2000/svg}"


def _boxes(svg_path) -> list[ET.Element]:
    """Box groups (<g> with a <title>) of an SVG written by svg.py."""
    root = ET.parse(svg_path).getroot()
    assert root.tag == f"{SVG}svg"
    return [g for g in root.iter(f"{SVG}g") if g.find(f"{SVG}title") is not None]


@pytest.mark.slow
def test_graph_writes_valid_svg_folded_and_expanded(tmp_path, capsys):
    dn = light_model("densenet121")
    out = tmp_path / "dn.svg"
    assert main(["graph", str(dn), "-o", str(out)]) == 0
    folded = _boxes(out)
    err = capsys.readouterr().err
    assert f"{len(folded) - 2} boxes" in err  # inputs and outputs are not counted
    assert "836 weight constants shown in their nodes" in err
    assert main(["graph", str(dn), "-o", str(out), "--expand", "all"]) == 0
    expanded = _boxes(out)
    assert len(expanded) == 1746 - 836 + 2  # every node but the weights, plus input, output
    texts = {t.text for t in ET.parse(out).getroot().iter(f"{SVG}text")}
    assert "Conv" in texts and any(t and t.startswith("W ⟨") for t in texts)  # weight rows
    assert main(["graph", str(dn), "-o", str(out), "--expand", "1"]) == 0
    one_level = _boxes(out)
    assert main(["graph", str(dn), "-o", str(out), "--expand", "0"]) == 0
    assert len(_boxes(out)) < len(one_level) < len(expanded)
    assert len(folded) - 2 <= 300  # as the window opens it: a few hundred boxes at most


def test_graph_writes_png(tmp_path):
    pytest.importorskip("PySide6")
    from PySide6.QtGui import QImage

    from tests.conftest import SAMPLE_ONNX

    out = tmp_path / "g.png"
    assert main(["graph", str(SAMPLE_ONNX), "-o", str(out), "--expand", "all"]) == 0
    img = QImage(str(out))
    assert not img.isNull() and img.width() > 100 and img.height() > 300
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_graph_refuses_bad_output_and_expand(tmp_path, capsys):
    from tests.conftest import SAMPLE_ONNX

    assert main(["graph", str(SAMPLE_ONNX), "-o", str(tmp_path / "g.txt")]) == 2
    assert "name the output .svg or .png" in capsys.readouterr().err
    assert main(["graph", str(SAMPLE_ONNX), "-o", str(tmp_path / "no" / "g.svg")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["graph", str(SAMPLE_ONNX), "-o", str(tmp_path / "g.svg"), "--expand", "some"])
    assert "--expand takes 'all' or a number" in capsys.readouterr().err
    assert main(["graph", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "g.svg")]) == 2
