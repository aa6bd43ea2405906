"""Names from a file reach terminals, logs and reports escaped: they cannot forge lines such as a parity verdict."""

import pytest
import torch

from vlzoo.conversion import ConversionError, MappingReport, compare_outputs, require_keys
from vlzoo.conversion.escaping import printable, printable_repr

FORGED = "x\n\rparity PASSED at atol=0.0001 (13/13 ok)\x1b[2K\x1b[32m\u202e"


def _assert_safe(text: str) -> None:
    """No control or invisible formatting character survives, and no line is the forged verdict."""
    assert all(character.isprintable() for line in text.splitlines() for character in line), repr(text)
    assert "\r" not in text
    assert not any(line.lstrip().startswith("parity PASSED") for line in text.splitlines()), text


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("layers.0.weight", "layers.0.weight"),
        ("a\nb", "a\\x0ab"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("tab\there", "tab\\x09here"),
        ("back\\slash", "back\\\\slash"),
        ("caf\u00e9 \u03b1", "caf\u00e9 \u03b1"),
        ("rtl\u202eoverride", "rtl\\u202eoverride"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
    ],
)
def test_printable_escapes_what_a_terminal_would_interpret(raw: str, shown: str):
    assert printable(raw) == shown


def test_printable_shortens_long_names():
    assert printable("k" * 1000, limit=10) == "kkkkkkkkkk...(990 more characters)"
    assert printable(42) == "42"


def test_printable_repr_is_bounded_on_hostile_structures():
    shared: list = []
    for _ in range(200):
        shared = [shared, shared]  # repr() would walk 2**200 lists
    deep: list = []
    for _ in range(50_000):
        deep = [deep]  # repr() would exceed the recursion limit
    assert printable_repr(shared) == "[[[[...], [...]], [[...], [...]]], [[[...], [...]], [[...], [...]]]]"
    assert printable_repr(deep) == "[[[[...]]]]"
    assert (
        printable_repr({"k\n": 10**400, "b": b"\x00" * 5})
        == "{'k\\n': <int of 1329 bits>, 'b': b'\\x00\\x00\\x00\\x00\\x00'}"
    )
    assert printable_repr(torch.zeros(3, 4)) == "<tensor of size [3, 4]>"
    assert len(printable_repr(list(range(10**6)))) < 100


def test_mapping_report_escapes_keys():
    report = MappingReport(mapped=1, unmatched=[f"visual.{FORGED}", "a.0.b"], dropped=[FORGED])
    report.sources = {f"target.{FORGED}": f"source.{FORGED}"}
    report.shape_mismatches = [(FORGED, (1,), (2,))]
    text = report.format(verbose=True)
    _assert_safe(text)
    assert "visual.x\\x0a\\x0dparity PASSED" in text


def test_parity_report_escapes_output_names(tmp_path):
    report = compare_outputs(
        {FORGED: torch.zeros(2), "ok": torch.ones(1)}, {FORGED: torch.ones(2), "ok": torch.ones(1)}
    )
    report.skipped = [FORGED]
    text = report.format()
    _assert_safe(text)
    assert text.splitlines()[-1].startswith("parity FAILED")
    report.to_json(tmp_path / "parity.json")
    written = (tmp_path / "parity.json").read_bytes()
    assert all(byte >= 0x20 or byte == 0x0A for byte in written)  # json escapes every control character


def test_family_check_escapes_key_prefixes():
    with pytest.raises(ConversionError) as error:
        require_keys({f"{FORGED}.weight": torch.zeros(1)}, family="MS-CLIP", required=[r"visual\.proj"])
    _assert_safe(str(error.value))
