"""Where SafeCompress's simulated attacker runs: in process or in a helper process, with the same results."""

import os
import signal

import numpy as np
import pytest

from toolkit.errors import CompressionError
from toolkit.select.safecompress.data import AttackSets
from toolkit.select.safecompress.safety import LocalSafetyTest, ProcessSafetyTest, safety_tester


def _sets(seed: int, shift: float = 0.0) -> AttackSets:
    """Attack sets of a model whose members get more confident outputs than its non-members."""
    rng = np.random.default_rng(seed)

    def half(n):
        conf = np.r_[rng.beta(6 + shift, 2, n), rng.beta(3, 2, n)]
        probs = np.stack([conf, 1 - conf], axis=1).astype(np.float32)
        labels = np.zeros(2 * n, dtype=np.int64)
        return probs, labels, np.r_[np.ones(n, bool), np.zeros(n, bool)]

    return AttackSets(half(64), half(64))


ARGS = (2, 3, 1, 7)  # n_classes, attack epochs, fine-tune epochs, seed


def _round(tester, base, candidates):
    tester.train(base)
    for c in candidates:
        tester.test(c)
    return tester.collect()


def test_the_attacker_is_trained_from_scratch_once_then_fine_tuned_each_round():
    tester = LocalSafetyTest(ARGS)
    _round(tester, _sets(0), [_sets(1)])
    attacker = tester._state["attacker"]
    assert len(attacker.attack.history) == 3  # attack_epochs
    _round(tester, _sets(2, 1.0), [_sets(3)])
    assert tester._state["attacker"] is attacker
    assert len(attacker.attack.history) == 4  # + one fine-tuning epoch on the new M_S, not a new fit


def test_helper_process_gives_the_local_results_and_shares_the_work():
    rounds = [(_sets(10 * r), [_sets(10 * r + i + 1, i / 2) for i in range(4)]) for r in range(2)]
    local = LocalSafetyTest(ARGS)
    expected = [_round(local, b, c)[:2] for b, c in rounds]
    # A long first fit keeps the candidates' tests in the backlog, so the caller tests some of them itself.
    slow = (2, 40, 1, 7)
    local, helper = LocalSafetyTest(slow), safety_tester(slow, in_process=False)
    assert isinstance(helper, ProcessSafetyTest)
    try:
        got = [_round(helper, *rounds[0])]
        # The helper was still starting and fitting when the round ended: this process took the last test.
        assert type(helper._done[3]).__name__ == "_Done"
        got.append(_round(helper, *rounds[1]))
        want = [_round(local, b, c)[:2] for b, c in rounds]
        assert [g[:2] for g in got] == want
        assert all(g[2] > 0 for g in got)  # attacker seconds are reported
    finally:
        helper.close()
    helper = ProcessSafetyTest(ARGS)
    try:
        assert [_round(helper, b, c)[:2] for b, c in rounds] == expected
    finally:
        helper.close()


def test_a_dead_helper_is_a_one_line_error():
    helper = ProcessSafetyTest((2, 2000, 1, 7))
    try:
        helper.train(_sets(0))
        helper.test(_sets(1))
        for pid in list(helper._pool._processes):
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(CompressionError, match="attacker process died"):
            helper.collect()
    finally:
        helper.close()
