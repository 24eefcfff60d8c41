"""``trainonce analyze``: summary on stdout and a self-contained dependency graph file."""

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
