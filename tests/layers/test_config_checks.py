"""The shared config value checks: each accepts valid values and names the field and class when refusing."""

import re
from dataclasses import dataclass, field

import pytest

from vlzoo.layers.config_checks import (
    require_divisible,
    require_finite,
    require_int_lists,
    require_non_negative,
    require_non_negative_floats,
    require_one_of,
    require_positive,
    require_positive_floats,
    require_probabilities,
)


@dataclass
class TowerConfig:
    width: object = 64
    heads: object = 4
    eps: object = 1e-5
    dropout: object = 0.0
    strides: object = field(default_factory=lambda: [2, 1])
    kind: object = "patch"


CASES = [
    (lambda c: require_positive(c, "width"), "width", [1, 64], [0, -3, 2.0, True, "64", None]),
    (lambda c: require_non_negative(c, "width"), "width", [0, 5], [-1, 0.5, False]),
    (lambda c: require_finite(c, "eps"), "eps", [0.0, -2, 1e-12], [float("inf"), float("nan"), "1", True]),
    (lambda c: require_positive_floats(c, "eps"), "eps", [1e-12, 3], [0.0, -1e-5, float("inf"), None]),
    (lambda c: require_non_negative_floats(c, "eps"), "eps", [0.0, 0.02], [-0.02, float("nan")]),
    (lambda c: require_probabilities(c, "dropout"), "dropout", [0.0, 0.5], [1.0, -0.1, 2]),
    (lambda c: require_int_lists(c, "strides", minimum=1), "strides", [[], (2, 2), [1]], [[0], [2.0], "22", None]),
    (lambda c: require_one_of(c, "kind", ("patch", "conv")), "kind", ["conv"], ["resnet", None]),
]


@pytest.mark.parametrize(
    ("check", "name", "valid", "invalid"), CASES, ids=[case[1] + str(i) for i, case in enumerate(CASES)]
)
def test_checks_accept_valid_and_name_invalid_values(check, name: str, valid: list, invalid: list):
    for value in valid:
        check(TowerConfig(**{name: value}))
    for value in invalid:
        with pytest.raises(ValueError, match=rf"TowerConfig\.{name} must be .*, got {re.escape(repr(value))}$"):
            check(TowerConfig(**{name: value}))


def test_divisible():
    require_divisible(TowerConfig(width=64, heads=4), "width", "heads")
    with pytest.raises(ValueError, match=r"TowerConfig\.width \(64\) must be a multiple of TowerConfig\.heads \(6\)"):
        require_divisible(TowerConfig(width=64, heads=6), "width", "heads")
