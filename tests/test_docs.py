"""The docs say what the code does: docs/cli.md lists every CLI flag argparse has, the optimizer
docs name every registered optimizer, and every install line installs from a checkout, pinned."""

import argparse
import re
from pathlib import Path

import pytest

from trainonce.cli.main import build_parser
from trainonce.optim import OPTIMIZERS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _section(text: str, command: str) -> str:
    """docs/cli.md's section of ``trainonce COMMAND``, up to the next ``## `` heading."""
    match = re.search(rf"^## `trainonce {command}\b.*?$(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"docs/cli.md has no section for 'trainonce {command}'"
    return match.group(1)


@pytest.mark.parametrize("command", ["run", "analyze", "export"])
def test_cli_docs_table_lists_every_flag(command):
    section = _section((DOCS / "cli.md").read_text(), command)
    rows = "\n".join(line for line in section.splitlines() if line.startswith("| `"))
    flags = [s for a in _subcommands()[command]._actions for s in a.option_strings
             if s.startswith("--") and s != "--help"]
    assert flags
    missing = [f for f in flags if not re.search(rf"`{re.escape(f)}\b", rows)]
    assert not missing, f"docs/cli.md's `trainonce {command}` table lacks {missing}"


def test_cli_docs_name_every_optimizer():
    run = _section((DOCS / "cli.md").read_text(), "run")
    row = next(line for line in run.splitlines() if line.startswith("| `--optimizer`"))
    missing = [name for name in OPTIMIZERS if f"`{name}`" not in row]
    assert not missing, f"docs/cli.md's --optimizer row lacks {missing}"
    choices = next(a for a in _subcommands()["run"]._actions if "--optimizer" in a.option_strings)
    assert set(choices.choices) == set(OPTIMIZERS)


def test_optimizer_docs_count_and_name_every_optimizer():
    text = (DOCS / "optimizers.md").read_text()
    intro = text.split("\n## ")[0]
    words = {4: "Four", 5: "Five", 6: "Six", 7: "Seven", 8: "Eight"}
    assert f"{words[len(OPTIMIZERS)]} optimizers" in intro
    missing = [cls.__name__ for cls in OPTIMIZERS.values() if f"`{cls.__name__}`" not in intro]
    assert not missing, f"docs/optimizers.md's opening lacks {missing}"
    names = re.search(r"`trainonce\.optim\.OPTIMIZERS` maps the CLI's names to the classes "
                      r"\((.*?)\)", text, re.S).group(1)
    assert set(re.findall(r"`([a-z0-9-]+)`", names)) == set(OPTIMIZERS)


def _docs() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md")), ROOT / "examples" / "README.md"]


@pytest.mark.parametrize("doc", _docs(), ids=lambda p: p.name)
def test_install_lines_use_a_checkout_and_pin_torch(doc):
    """trainonce is not on PyPI: no line may read as `pip install trainonce[...]` from it, and
    every install command pins torch (constraints.txt or torch==2.13.0)."""
    for line in doc.read_text().splitlines():
        for cmd in re.findall(r"pip install [^`\n#]*", line):
            from_index = re.match(r"pip install '?trainonce(\[[^]]*\])?'?(?!\s*@)(\s|$)", cmd)
            assert not from_index, f"{doc.name}: {line}"
            assert "-c constraints.txt" in cmd or "torch==2.13.0" in cmd, f"{doc.name}: {line}"
