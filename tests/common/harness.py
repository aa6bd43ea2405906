"""Collects (family, config name, model class) cases from the registry and each family's tester module."""

import importlib
from dataclasses import dataclass
from types import ModuleType

from vlzoo.registry import Family, families


@dataclass(frozen=True)
class Case:
    family: Family
    config_name: str
    model_class: type
    tester: ModuleType

    @property
    def id(self) -> str:
        return f"{self.config_name}-{self.model_class.__name__}"

    def config(self, **overrides):
        return self.tester.CONFIGS[self.config_name](**overrides)

    def inputs(self, config, batch: int = 3):
        return self.tester.inputs_for(self.model_class, config, batch)


def tester_for(family: Family) -> ModuleType:
    """Every family must ship `tests/models/<key>/tester.py`; a missing one fails the harness."""
    return importlib.import_module(f"tests.models.{family.key}.tester")


def cases() -> list[Case]:
    found = []
    for family in families():
        tester = tester_for(family)
        for config_name in tester.CONFIGS:
            for model_class in family.model_classes:
                found.append(Case(family, config_name, model_class, tester))
    return found


def base_cases() -> list[Case]:
    """One case per (family, config) with the family's AutoModel class."""
    return [c for c in cases() if c.model_class is c.family.auto_models["AutoModel"]]
