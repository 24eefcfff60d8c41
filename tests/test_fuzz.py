"""No silent failures: a random architecture is either refused at analyze time with a clear
error, or every random zeroing of its groups gives a slim model equal to the zeroed model."""

import fuzz_models as FM
import pytest
from hypothesis import HealthCheck, Phase, given, settings

FAMILIES = FM.family_specs()


def _assert_refused_or_exact(spec: FM.Spec, **kw) -> None:
    out = FM.check_spec(spec, **kw)
    assert out.kind in ("ok", "refused"), f"{out.signature}\n  {out.detail}\n  {spec!r}"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_family_alone(name):
    _assert_refused_or_exact(FAMILIES[name], sparsities=(0.5,), seeds=(0,))


@pytest.mark.slow
@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          phases=(Phase.explicit, Phase.generate), report_multiple_bugs=False,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=FM.specs(max_blocks=5))
def test_random_architectures(spec):
    _assert_refused_or_exact(spec, sparsities=(0.3, 0.7), seeds=(0,))
