"""The fortunes loader: parsing, normalization, de-duplication, caps, labels; text <-> byte rows."""

import numpy as np
import pytest

from toolkit.data import LOADERS, load_dataset, make_split, row_hashes
from toolkit.data.text import (DEFAULT_TOPICS, dedup_key, encode_texts, load_fortunes, parse_fortunes, texts)
from toolkit.errors import DataError, MissingDependencyError


def _write(d, name, quotes, sep="%\n"):
    (d / name).write_text(sep.join(q + "\n" for q in quotes), encoding="utf-8")


def test_parse_splits_on_percent_lines_and_normalizes_whitespace():
    content = "First  quote\n\tspans lines.\n%\n%\nSecond: 100% sure\n% \nThird\n  -- Someone\n"
    assert parse_fortunes(content) == ["First quote spans lines.", "Second: 100% sure", "Third -- Someone"]
    assert parse_fortunes("a very long quote", max_chars=6) == ["a very"]


def test_dedup_within_and_across_topics_caps_and_labels(tmp_path):
    _write(tmp_path, "alpha", ["Foo, bar!", "foo bar", "Shared quote.", *[f"alpha quote {i}" for i in range(6)]])
    _write(tmp_path, "beta", ["shared QUOTE", *[f"beta quote {i}" for i in range(8)]])
    (tmp_path / "alpha.dat").write_bytes(b"\x00binary index")  # ignored: has a suffix
    ds = load_fortunes(topics=["alpha", "beta"], max_per_class=5, min_per_class=2, directory=tmp_path)
    got = texts(ds)
    by_label = {lab: [t for t, y in zip(got, ds.y) if y == lab] for lab in (0, 1)}
    # "foo bar" repeats "Foo, bar!" (case and punctuation ignored); the shared quote is dropped from both topics
    assert "foo bar" not in got and not any("hared" in t for t in got)
    assert ds.source["repeats_within_topic"] == {"alpha": 1, "beta": 0} and ds.source["dropped_cross_topic"] == 1
    # capped at 5 per class by a seeded sample, labels are the topic indices
    assert [len(by_label[0]), len(by_label[1])] == [5, 5] and ds.n_classes == 2
    assert all(t.startswith(("alpha", "Foo")) for t in by_label[0]) and all(t.startswith("beta") for t in by_label[1])
    assert ds.source["topics"] == ["alpha", "beta"]
    again = load_fortunes(topics=["alpha", "beta"], max_per_class=5, min_per_class=2, directory=tmp_path)
    assert texts(again) == got
    other = load_fortunes(topics=["alpha", "beta"], max_per_class=5, min_per_class=2, directory=tmp_path, seed=1)
    assert texts(other) != got


def test_refusals(tmp_path):
    _write(tmp_path, "alpha", ["one", "two", "three"])
    _write(tmp_path, "beta", ["four", "five", "six"])
    with pytest.raises(DataError, match="no topic 'gamma'.*topics: alpha, beta"):
        load_fortunes(topics=["alpha", "gamma"], directory=tmp_path)
    with pytest.raises(DataError, match="fewer than min_per_class=5"):
        load_fortunes(topics=["alpha", "beta"], min_per_class=5, directory=tmp_path)
    with pytest.raises(DataError, match="at least two distinct topics"):
        load_fortunes(topics=["alpha", "alpha"], directory=tmp_path)
    with pytest.raises(MissingDependencyError, match="apt-get install -y fortunes"):
        load_fortunes(directory=tmp_path / "missing")


def test_debian_fortunes_default_topics():
    ds = load_dataset("fortunes")
    assert "fortunes" in LOADERS and ds.source["topics"] == list(DEFAULT_TOPICS) and ds.n_classes == 6
    assert ds.x.dtype == np.int64 and ds.x.min() >= 0 and ds.x.max() <= 255
    counts = np.bincount(ds.y)
    assert counts.min() >= 500 and counts.max() <= 550
    got = texts(ds)
    keys = [dedup_key(t) for t in got]
    assert len(set(keys)) == len(keys) == len(ds)  # no duplicate quote, even up to case and punctuation
    assert len(set(row_hashes(ds.x))) == len(ds)
    split = make_split(ds, members=600, nonmembers=600, seed=0)
    assert split.sizes()["population"] == len(ds) - 1200


def test_byte_rows_round_trip_unicode():
    src = ["naïve café — “quoted”", "plain", "日本語"]
    x = encode_texts(src)
    assert x.dtype == np.int64 and x.shape == (3, max(len(s.encode()) for s in src))
    assert texts(x) == src
    with pytest.raises(DataError, match="NUL"):
        encode_texts(["a\x00b"])
    with pytest.raises(DataError, match="byte codes 0..255"):
        texts(np.array([[300, 2]]))
