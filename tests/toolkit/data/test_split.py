import json

import numpy as np
import pytest

from toolkit.data import PARTS, Dataset, MembershipSplit, assert_disjoint, make_split, row_hashes
from toolkit.errors import DataError


def test_split_is_deterministic_and_seed_dependent(digits):
    a = make_split(digits, members=500, seed=3)
    b = make_split(digits, members=500, seed=3)
    c = make_split(digits, members=500, seed=4)
    for p in PARTS:
        assert np.array_equal(a.indices(p), b.indices(p))
    assert not np.array_equal(a.members, c.members)


def test_parts_are_disjoint_and_sized(digits):
    s = make_split(digits, members=500, nonmembers=400, population=300, seed=0)
    sizes = s.sizes()
    assert sizes == {"member_known": 250, "member_unknown": 250, "nonmember_known": 200,
                     "nonmember_unknown": 200, "population": 300}
    all_idx = np.concatenate([s.indices(p) for p in PARTS])
    assert len(np.unique(all_idx)) == len(all_idx)
    # disjoint by content as well as by index
    assert_disjoint(digits.x[s.members], digits.x[s.nonmembers])
    assert not set(row_hashes(digits.x[s.members])) & set(row_hashes(digits.x[s.population]))


def test_split_is_stratified(digits):
    s = make_split(digits, members=500, seed=0)
    counts = np.bincount(digits.y[s.members], minlength=10)
    assert counts.min() >= 45 and counts.max() <= 55


def test_fraction_sizes(digits):
    s = make_split(digits, members=0.25, seed=0)
    assert len(s.members) == round(0.25 * len(digits)) and len(s.nonmembers) == len(s.members)


def test_manifest_round_trip(tmp_path, digits):
    s = make_split(digits, members=300, seed=7)
    path = s.save(tmp_path / "split.json", digits)
    t = MembershipSplit.load(path)
    for p in PARTS:
        assert np.array_equal(s.indices(p), t.indices(p))
    t.verify(digits)
    assert np.array_equal(t.take(digits, "members").x, digits.x[s.members])


def test_manifest_tampering_is_detected(tmp_path, digits):
    s = make_split(digits, members=300, seed=7)
    path = s.save(tmp_path / "split.json", digits)
    manifest = json.loads(path.read_text())
    manifest["parts"]["member_known"][0], manifest["parts"]["nonmember_known"][0] = (
        manifest["parts"]["nonmember_known"][0], manifest["parts"]["member_known"][0])
    path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="modified"):
        MembershipSplit.load(path)


def test_other_data_is_detected(tmp_path, digits):
    s = make_split(digits, members=300, seed=7)
    path = s.save(tmp_path / "split.json", digits)
    changed = Dataset("digits", digits.x.copy(), digits.y.copy(), 10)
    changed.x[5, 0, 0, 0] += 0.5
    t = MembershipSplit.load(path)
    with pytest.raises(DataError, match="not the one this split was made from"):
        t.take(changed, "members")


def test_overlap_is_an_error(digits):
    with pytest.raises(DataError, match="3 sample"):
        assert_disjoint(digits.x[:10], digits.x[7:20])


def test_duplicates_are_refused_and_deduplicated(digits):
    x = np.concatenate([digits.x[:50], digits.x[:5]])
    y = np.concatenate([digits.y[:50], digits.y[:5]])
    ds = Dataset("dup", x, y, 10)
    with pytest.raises(DataError, match="duplicate"):
        make_split(ds, members=10, seed=0)
    assert len(ds.deduplicated()) == 50


def test_too_large_split_is_an_error(digits):
    with pytest.raises(DataError, match="asks for"):
        make_split(digits, members=1000, nonmembers=1000, seed=0)
