"""docs/integrations.md shows the exact code the integration tests run."""

import re
from pathlib import Path

import pytest

HERE = Path(__file__).parent
DOC = HERE.parents[1] / "docs" / "integrations.md"


@pytest.mark.parametrize(("test", "tag"), [("test_transformers_trainer.py", "transformers"),
                                           ("test_lightning.py", "lightning"),
                                           ("test_ultralytics_trainer.py", "ultralytics")])
def test_docs_show_the_tested_code(test, tag):
    src = (HERE / test).read_text()
    block = re.search(rf"    # --- docs: {tag} ---\n(.*?)    # --- end docs ---\n", src, re.S)
    code = "\n".join(line[4:] for line in block.group(1).splitlines())
    assert f"```python\n{code}\n```" in DOC.read_text()
