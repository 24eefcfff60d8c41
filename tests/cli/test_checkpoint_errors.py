from pathlib import Path

import pytest

from trainonce.cli.checkpoint import CheckpointError, restore


class Boom:
    def load_state_dict(self, s):
        raise RuntimeError("")

def test_restore_with_an_empty_error_message_names_the_exception():
    with pytest.raises(CheckpointError, match="does not fit this run: RuntimeError"):
        restore({"model": {}}, Boom(), None, None, Path("ck.pt"))
