"""The self-contained ``report.html``: a jinja2 template (jinja2 is a requirement of torch, so no
new dependency) with every plot embedded as a base64 PNG; no file or network reference.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import atomic_write
from .layer_rows import LayerRow
from .tables import LAYER_HEADER, Comparison, comparison_rows, layer_table

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ r.title }}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:62rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:1rem 0} caption{text-align:left;color:#555}
th,td{border-bottom:1px solid #ddd;padding:.3rem .7rem;text-align:right}
th:first-child,td.l{text-align:left} th{font-weight:600}
tr.cut td{background:#fff4e5} figure{margin:1.5rem 0} img{max-width:100%}
figcaption,.small{color:#555;font-size:.9rem} code,pre{background:#f5f5f5;padding:.1rem .3rem}
pre{padding:.6rem;overflow-x:auto;white-space:pre-wrap}
</style></head><body>
<h1>{{ r.title }}</h1>
{% if r.command %}<pre>{{ r.command }}</pre>{% endif %}
<h2>Dense vs slim</h2>
<p>{{ r.accuracy_note }} Parameters and FLOPs: the dense architecture vs the slim model.
Latency: <code>torch.utils.benchmark</code>, dense and slim timed in the same process in
alternating rounds; median ± half the interquartile range of the timed blocks.</p>
<table><tr><th></th><th>dense</th><th>slim</th><th>change</th></tr>
{% for a, b, s, c in rows %}<tr><td class="l">{{ a }}</td><td>{{ b }}</td><td>{{ s }}</td>
<td>{{ c }}</td></tr>
{% endfor %}</table>
<ul>{% for n in r.notes %}<li>{{ n }}</li>{% endfor %}</ul>
{% if layers %}<h2>Per layer</h2>
<p class="small">One row per prunable group, the most-cut first (highlighted: half or more
removed). FLOPs and params kept: of the ops and parameters its channels touch.</p>
<table><tr>{% for h in layer_header %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row, cut in layers %}<tr{% if cut %} class="cut"{% endif %}>
<td class="l">{{ row[0] }}</td><td class="l small">{{ row[1] }}</td><td class="l">{{ row[2] }}</td>
<td>{{ row[3] }}</td><td>{{ row[4] }}</td><td>{{ row[5] }}</td></tr>
{% endfor %}</table>{% endif %}
<h2>Plots</h2>
{% for cap, name, src in plots %}<figure><img src="{{ src }}" alt="{{ cap }}">
<figcaption>{{ cap }} (also <code>{{ name }}</code>)</figcaption></figure>
{% endfor %}
<h2>Run</h2>
<table>{% for k, v in r.facts.items() %}<tr><td class="l">{{ k }}</td><td class="l">{{ v }}</td>
</tr>{% endfor %}</table>
<h2>Settings</h2>
<table>{% for k, v in r.settings.items() %}<tr><td class="l">{{ k }}</td><td class="l">{{ v }}</td>
</tr>{% endfor %}</table>
</body></html>
"""


@dataclass
class Report:
    """Everything the page shows. ``plots``: caption -> PNG file (embedded; its path relative
    to ``base`` is named in the caption); ``facts``: training time, files, versions ..."""

    title: str
    comparison: Comparison
    layers: list[LayerRow] = field(default_factory=list)
    plots: dict[str, Path] = field(default_factory=dict)
    base: Path | None = None
    command: str = ""
    facts: dict[str, str] = field(default_factory=dict)
    settings: dict[str, object] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def accuracy_note(self) -> str:
        if self.comparison.accuracy[0] is None:
            return ("No dense baseline was trained (--dense-baseline trains one with the same "
                    "recipe), so there is no accuracy to compare the slim model with.")
        return ("Test accuracy: a dense model trained from the same initial weights with the "
                "same recipe (plain torch optimizer, no pruning) vs the slim model.")


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii")


def render(report: Report) -> str:
    from ..data.optional import require

    jinja2 = require("jinja2", "the HTML report")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    plots = []
    for cap, png in report.plots.items():
        name = Path(png).relative_to(report.base) if report.base else Path(png).name
        plots.append((cap, str(name), data_uri(png)))
    layers = [(row, r.kept_share <= 0.5) for r, row in
              zip(report.layers, layer_table(report.layers))]
    return env.from_string(_TEMPLATE).render(
        r=report, rows=comparison_rows(report.comparison), layers=layers,
        layer_header=LAYER_HEADER, plots=plots)


def write_report(path: Path, report: Report) -> Path:
    """Write ``report`` as one self-contained HTML file (atomically)."""
    text = render(report)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
