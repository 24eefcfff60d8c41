"""``trainonce analyze``: summary on stdout and a self-contained dependency graph file."""

import xml.etree.ElementTree as ET

from trainonce.cli.main import main


def test_analyze_html_and_svg(tmp_path, capsys):
    html = tmp_path / "g.html"
    assert main(["analyze", "resnet8", "--graph", str(html)]) == 0
    out = capsys.readouterr().out
    assert "prunable" in out and str(html) in out
    page = html.read_text()
    assert "<svg" in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "conv2d" in page and "layer1" in page
    svg = tmp_path / "g.svg"
    assert main(["analyze", "resnet8", "--graph", str(svg)]) == 0
    assert svg.read_text().startswith("<svg")


def test_analyze_prints_the_input_shape_it_assumed(tmp_path, capsys):
    """The example's shape fixes what the analysis sees, so analyze says which one it used:
    the model's usual input when --input-shape is not given, else the one given."""
    assert main(["analyze", "resnet8", "--graph", str(tmp_path / "a.svg")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == ("input shape: 1x1x28x28 "
                     "(batch 1; the model's default; set another with --input-shape C,H,W)")
    argv = ["analyze", "resnet8", "--input-shape", "1,16,16", "--graph", str(tmp_path / "b.svg")]
    assert main(argv) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == "input shape: 1x1x16x16 (batch 1; from --input-shape)"


def _boxes(svg_path):
    """(attributes, rect, texts) of every node box of a graph SVG."""
    ns = {"s": "http://www.w3.org/2000/svg"}
    root = ET.parse(svg_path).getroot()
    out = []
    for g in root.iter("{http://www.w3.org/2000/svg}g"):
        rect = g.find("s:rect", ns)
        texts = [t.text or "" for t in g.findall("s:text", ns)]
        out.append((g.attrib, {k: rect.get(k) for k in rect.keys()}, texts))
    return root, out


def test_graph_draws_groups_channels_and_columns(tmp_path, capsys):
    """ConvNeXt's layout (2-2-6-2 blocks): unprunable groups grey and dashed as the legend says,
    one colour per prunable group, channel counts on nodes, no overlapping boxes, and the long
    graph split into columns instead of one tall strip."""
    svg = tmp_path / "convnext.svg"
    argv = ["analyze", "factories:convnext_like", "--input-shape", "3,64,64", "--graph", str(svg)]
    assert main(argv) == 0
    capsys.readouterr()
    root, boxes = _boxes(svg)
    nodes = [(a, r, t) for a, r, t in boxes if a.get("class") == "node"]
    assert len(nodes) > 80
    fill_of_group: dict[str, str] = {}
    for attrs, rect, texts in nodes:
        if attrs.get("data-prunable") == "false":
            assert rect["fill"] == "#bbbbbb" and rect.get("stroke-dasharray")
        elif attrs.get("data-prunable") == "true":
            assert rect["fill"] not in ("#bbbbbb", "white") and not rect.get("stroke-dasharray")
            assert fill_of_group.setdefault(attrs["data-group"], rect["fill"]) == rect["fill"]
        else:
            assert rect["fill"] == "white"
        if "data-channels" in attrs:
            assert texts[1].endswith(f"· {attrs['data-channels']}")
    assert len(fill_of_group) == 12  # the 12 blocks' MLP widths
    assert len(set(fill_of_group.values())) == 12  # distinct colours
    unprunable = [a for a, _, _ in nodes if a.get("data-prunable") == "false"]
    assert any(a["data-op"] == "layer_norm" for a in unprunable)
    mlp = [(a, t) for a, _, t in nodes if a.get("data-op") == "linear" and ".pwconv1" in t[0]]
    assert {int(a["data-channels"]) for a, _ in mlp} == {32, 64, 96, 128}  # 4 x dims
    assert not any(a["data-op"] == "permute" for a, _, _ in nodes)  # shape-only ops left out
    rects = [tuple(float(r[k]) for k in ("x", "y", "width", "height")) for _, r, _ in boxes]
    for i, (x, y, w, h) in enumerate(rects):
        for x2, y2, w2, h2 in rects[i + 1:]:
            assert x + w <= x2 or x2 + w2 <= x or y + h <= y2 or y2 + h2 <= y, "boxes overlap"
    width, height = float(root.get("width")), float(root.get("height"))
    assert all(x >= 0 and x + w <= width and y + h <= height for x, y, w, h in rects)
    ghosts = [a for a, _, _ in boxes if a.get("class") == "ghost"]
    assert ghosts and height < 2000 and width > 2 * 184  # columns side by side


def test_graph_is_the_analysis_trace(tmp_path, monkeypatch):
    """The drawing reuses the graph the analysis traced (no second torch.export), and the input
    box keeps the name of the model's own forward argument."""
    import torch

    import trainonce
    from trainonce.report.graph import write_graph
    from trainonce.zoo import build_model

    built = build_model("resnet8", 10, 1)
    model, example = built.model.eval(), (torch.randn(1, *built.default_input_shape),)
    space = trainonce.analyze(model, example)

    def exported_again(*args, **kwargs):
        raise AssertionError("torch.export called again")

    monkeypatch.setattr(torch.export, "export", exported_again)
    svg = write_graph(space, model, example, tmp_path / "g.svg")
    _, boxes = _boxes(svg)
    assert [t[0] for a, _, t in boxes if a.get("data-op") == "input"] == ["x"]
    assert any(a.get("data-op") == "conv2d" for a, _, _ in boxes)
