"""The slim traced program keeps the model's interface: `SlimProgram` wraps the fx program so it
returns the model's own output structure (a tensor, a tuple, a dict or a `ModelOutput`), using
the `OutputTemplate` recorded when the model was traced.
"""

from __future__ import annotations

import warnings

from torch import fx, nn

from ..trace import OutputTemplate


class SlimProgram(nn.Module):
    """A slim traced program (`torch.fx.GraphModule`) that returns what the model returned
    (the flat tuple of its tensors when the structure is unknown: ``template`` None).

    BatchNorm and Dropout run as traced (eval mode): a forward in train mode warns once if the
    model has layers whose training behaviour differs, since the program cannot switch them."""

    def __init__(self, program: fx.GraphModule, template: OutputTemplate | None,
                 mode_dependent: list[str] | None = None) -> None:
        super().__init__()
        self.program = program
        self.template = template
        self.mode_dependent = list(mode_dependent or [])
        self._warned = False

    def forward(self, *args, **kwargs):
        if self.training and self.mode_dependent and not self._warned:
            self._warned = True
            warnings.warn(
                "trainonce: this slim model is a traced program that runs "
                f"{', '.join(self.mode_dependent[:3])} in eval mode even in train() (fine-tune "
                "the eager model, or treat this one as inference-only)", stacklevel=2)
        out = self.program(*args, **kwargs)
        return out if self.template is None else self.template.rebuild(out)


def mode_dependent_layers(model: nn.Module) -> list[str]:
    """Names of the layers whose forward differs between train and eval mode."""
    kinds = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.Dropout,
             nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
    return [f"{n} ({type(m).__name__})" for n, m in model.named_modules() if isinstance(m, kinds)]
