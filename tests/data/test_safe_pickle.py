"""Tests for the plain-data unpickler used for annotation pickles."""

import pickle

import pytest

from vlzoo.data import load_plain_pickle

# What Python 2's `pickle.dumps(refs)` (protocol 0) writes: byte strings (S'...'), a long (L1L), UTF-8 text.
PYTHON2_PROTOCOL0 = (
    b"(lp0\n(dp1\nS'split'\np2\nS'train'\np3\nsS'sentences'\np4\n(lp5\n(dp6\nS'sent'\np7\n"
    b"S'the man \\xc3\\xa9'\np8\nsasS'ann_id'\np9\nI11\nsS'image_id'\np10\nL1L\nsS'ref_id'\np11\nI0\nsa."
)
# Python 2's protocol 2: SHORT_BINSTRING keys and values.
PYTHON2_PROTOCOL2 = b"\x80\x02]q\x00}q\x01(U\x04sentq\x02U\x05helloq\x03U\x06ann_idq\x04K\x0bua."


def test_python2_pickles_load_as_text(tmp_path):
    path = tmp_path / "refs(unc).p"
    path.write_bytes(PYTHON2_PROTOCOL0)
    assert load_plain_pickle(path) == [
        {"split": "train", "sentences": [{"sent": "the man \u00e9"}], "ann_id": 11, "image_id": 1, "ref_id": 0}
    ]
    path.write_bytes(PYTHON2_PROTOCOL2)
    assert load_plain_pickle(path) == [{"sent": "hello", "ann_id": 11}]


def test_plain_python3_data_round_trips(tmp_path):
    value = {"a": [1, 2.5, None, True, ("t", -(2**70))], "b": {"nested": ["x\u00e9"]}, 3: []}
    path = tmp_path / "plain.pkl"
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        path.write_bytes(pickle.dumps(value, protocol=protocol))
        assert load_plain_pickle(path) == value


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "empty"),
        (pickle.dumps([1, 2, 3])[:-3], "not a pickle of plain data"),
        (pickle.dumps(pickle.PickleBuffer(b"abc"), protocol=5, buffer_callback=lambda _: False), "out-of-band"),
        (pickle.dumps(range(3)), "refusing to load global"),
        (b"cos\nsystem\n(S'true'\ntR.", "refusing to load global os.system"),
    ],
)
def test_refused_pickles(tmp_path, payload, message):
    path = tmp_path / "bad.pkl"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=message):
        load_plain_pickle(path)
