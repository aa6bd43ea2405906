"""`vlzoo.list_pretrained()` and `vlzoo list`: one entry per card, filtered by family, as a table or JSON."""

import json
from dataclasses import asdict
from pathlib import Path

import pytest

import vlzoo
from vlzoo.cli import main
from vlzoo.hub import cards
from vlzoo.hub.cards import STATUS_AVAILABLE, STATUS_NOT_AVAILABLE, list_pretrained, load_cards
from vlzoo.registry import families

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def all_cards():
    return load_cards()


def _expected_status(card) -> str:
    converters = {family.key for family in families() if family.converter is not None}
    return STATUS_AVAILABLE if card.family in converters and card.unsupported is None else STATUS_NOT_AVAILABLE


def test_every_card_is_listed_with_its_data(all_cards):
    entries = list_pretrained()
    assert len(entries) == len(list((REPO / "model_cards").glob("*/*.yaml")))
    assert [(e.name, e.family, e.variant, e.task, e.resolution, e.preset, e.status) for e in entries] == [
        (c.hub_repo, c.family, c.variant, c.task, c.resolution, c.preset, _expected_status(c)) for c in all_cards
    ]


def test_list_pretrained_is_a_top_level_name():
    assert vlzoo.list_pretrained is list_pretrained
    assert "list_pretrained" in vlzoo.__all__ and "list_pretrained" in dir(vlzoo)


def test_family_filter(all_cards):
    for family in sorted({card.family for card in all_cards}):
        entries = list_pretrained(family)
        assert entries and {entry.family for entry in entries} == {family}
        assert [entry.name for entry in entries] == [c.hub_repo for c in all_cards if c.family == family]
    with pytest.raises(ValueError, match="unknown family 'nope'; known families: .*ms_clip"):
        list_pretrained("nope")


def test_status_follows_the_registry(monkeypatch, all_cards):
    monkeypatch.setattr(cards, "_families_with_converter", lambda: set())
    assert {entry.status for entry in list_pretrained()} == {STATUS_NOT_AVAILABLE}
    family = all_cards[0].family
    monkeypatch.setattr(cards, "_families_with_converter", lambda: {family})
    for entry, card in zip(list_pretrained(), all_cards, strict=True):
        available = card.family == family and card.unsupported is None
        assert entry.status == (STATUS_AVAILABLE if available else STATUS_NOT_AVAILABLE)


def test_cli_table(capsys, all_cards):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "family", "variant", "task", "resolution", "status"]
    assert len(lines) == 1 + len(all_cards)
    for line, card in zip(lines[1:], all_cards, strict=True):
        assert line.split()[:5] == [card.hub_repo, card.family, card.variant, card.task, str(card.resolution)]
        assert line.endswith(_expected_status(card))


def test_cli_family_filter_and_json(capsys, all_cards):
    family = all_cards[-1].family
    assert main(["list", "--family", family, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [asdict(entry) for entry in list_pretrained(family)]
    assert {row["family"] for row in rows} == {family}
    assert set(rows[0]) == {"name", "family", "variant", "task", "resolution", "preset", "status"}
    assert main(["list", "--family", family]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + len(rows) and all(line.split()[1] == family for line in out[1:])


def test_cli_unknown_family_is_one_error_line(capsys):
    assert main(["list", "--family", "nope"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: unknown family 'nope'; known families:")
    assert len(captured.err.splitlines()) == 1
