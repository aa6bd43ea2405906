"""Collects (family, config name, model class) cases from the registry and each family's `FamilyTester`."""

import importlib
from dataclasses import dataclass

from vlzoo.registry import Family, families

from .family_tester import FamilyTester


@dataclass(frozen=True)
class Case:
    family: Family
    config_name: str
    model_class: type
    tester: FamilyTester

    @property
    def id(self) -> str:
        return f"{self.config_name}-{self.model_class.__name__}"

    def config(self, **overrides):
        return self.tester.configs[self.config_name](**overrides)

    def inputs(self, config, batch: int = 3) -> dict:
        return self.tester.inputs(self.model_class, config, batch)

    def labels(self, config, batch: int = 3) -> dict:
        return self.tester.labels(self.model_class, config, batch)

    def main_output(self, outputs):
        return self.tester.main_output(self.model_class, outputs)

    def tower_outputs(self, config, outputs) -> dict:
        return self.tester.tower_outputs(self.model_class, config, outputs)


def tester_for(family: Family) -> FamilyTester:
    """Every family must ship `tests/models/<key>/tester.py` with a `TESTER`; a missing one fails the harness."""
    module = importlib.import_module(f"tests.models.{family.key}.tester")
    tester = getattr(module, "TESTER", None)
    if not isinstance(tester, FamilyTester) or tester.family_key != family.key:
        raise TypeError(
            f"tests/models/{family.key}/tester.py must define TESTER, a FamilyTester with family_key "
            f"{family.key!r}; got {tester!r}"
        )
    return tester


def cases() -> list[Case]:
    found = []
    for family in families():
        tester = tester_for(family)
        for config_name in tester.configs:
            for model_class in family.model_classes:
                found.append(Case(family, config_name, model_class, tester))
    return found


def base_cases() -> list[Case]:
    """One case per (family, config) with the family's base class (its AutoModel, else its default head)."""
    return [c for c in cases() if c.model_class is base_class(c.family)]


def base_class(family: Family) -> type:
    return family.auto_models.get("AutoModel") or family.heads[family.default_task]
