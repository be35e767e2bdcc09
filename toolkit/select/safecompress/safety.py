"""Where the simulated attacker works: in this process, or in one helper process alongside the loop.

The loop (``engine``) trains M_S and fine-tunes candidates; the simulated attacker's work (training on M_S,
a fine-tuned copy per candidate, scoring) only needs each model's probability vectors on the four halves.
A safety tester takes those as :class:`~toolkit.select.safecompress.data.AttackSets` (kilobytes, no images)
and answers at the end of the round, so with ``attacker_process=True`` the helper fine-tunes the attacker for
candidate i while this process fine-tunes candidate i+1 (the issue's "fine-tune candidates in parallel
processes"; on one core it only adds the helper's start-up).

Both testers run the same functions with the same seeds, and :class:`~toolkit.attacks.nn_attack.NNAttack`
always computes on one thread, so their MIA accuracies are bit-for-bit equal (tested). The helper is spawned,
not forked (forking a process whose torch/TF thread pools are running can deadlock), and pinned to one thread.
"""

from __future__ import annotations

import time
from typing import Any

from toolkit.errors import CompressionError
from toolkit.select.safecompress.data import AttackSets

#: The helper process's attacker (a helper serves one SafeCompress run; the local tester keeps its own dict).
_STATE: dict[str, Any] = {}


def _train(attacker_args: tuple, sets: AttackSets, state: dict[str, Any] = _STATE) -> tuple[float, float, Any]:
    """Train the attacker on M_S (from scratch the first time, then fine-tune it).

    Returns ``(MIA Acc of M_S, seconds, the attacker)``: the attacker travels back so that the loop's process
    can test candidates itself instead of waiting for the helper.
    """
    from toolkit.select.safecompress.attacker import SimulatedAttacker

    t = time.perf_counter()
    if "attacker" not in state:
        state["attacker"] = SimulatedAttacker(*attacker_args).fit(sets)
    else:
        state["attacker"].refit(sets)
    return state["attacker"].mia_accuracy(sets), time.perf_counter() - t, state["attacker"]


def _test(sets: AttackSets, state: dict[str, Any] = _STATE) -> tuple[float, float]:
    """Stage 3 for one candidate: a copy of the attacker fine-tuned on its outputs; ``(MIA Acc, seconds)``."""
    t = time.perf_counter()
    return state["attacker"].fine_tuned(sets).mia_accuracy(sets), time.perf_counter() - t


def _warm_up() -> None:
    """Import what the attacker needs and take one step on dummy data: torch's first optimizer step imports its
    compiler stack and the first MIA Acc imports scikit-learn (about a second each). The helper does this as
    its first task, while the loop trains the first M_S; the loop's process does it while it would wait."""
    import numpy as np

    from toolkit.select.safecompress.attacker import SimulatedAttacker

    probs = np.array([[0.9, 0.1], [0.6, 0.4]], dtype=np.float32)
    half = (probs, np.zeros(2, np.int64), np.array([True, False]))
    sets = AttackSets(half, half)
    SimulatedAttacker(2, 1, 0, 0).fit(sets).mia_accuracy(sets)


class LocalSafetyTest:
    """Runs the attacker in this process. Protocol of both testers, once per round: ``train(sets)`` (M_S),
    ``test(sets)`` per candidate (returns its index), then ``collect()`` -> ``(MIA Acc of M_S, [MIA Acc of
    each candidate], attacker compute seconds)``."""

    def __init__(self, attacker_args: tuple):
        self._args = attacker_args
        self._state: dict[str, Any] = {}
        self._base: tuple | None = None
        self._tests: list[tuple[float, float]] = []

    def train(self, sets: AttackSets) -> None:
        self._base = _train(self._args, sets, self._state)
        self._tests = []

    def test(self, sets: AttackSets) -> int:
        self._tests.append(_test(sets, self._state))
        return len(self._tests) - 1

    def collect(self) -> tuple[float, list[float], float]:
        mia, seconds, _ = self._base
        return mia, [m for m, _ in self._tests], seconds + sum(s for _, s in self._tests)

    def close(self) -> None:
        self._state.clear()


class ProcessSafetyTest(LocalSafetyTest):
    """Hands the attacker's work to one spawned helper process, and shares it at the end of each round.

    The helper is kept at most one task ahead (the rest wait in a backlog). When the loop's process has built
    every candidate, ``collect`` lets it test candidates from the back of the backlog itself (with the
    attacker the helper sent back) while the helper works from the front, so neither waits for the other.
    """

    def __init__(self, attacker_args: tuple):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        from toolkit.executors.base import pin_threads

        super().__init__(attacker_args)
        # Started now, so the helper imports torch while this process trains M_S for the first round.
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"),
                                         initializer=pin_threads, initargs=(1,))
        self._inflight = [self._pool.submit(_warm_up)]
        self._base_future = None
        self._backlog: list[tuple[int, AttackSets]] = []
        self._done: dict[int, Any] = {}
        self._n = 0
        self._warm = False

    def _submit(self, fn, *args):
        from concurrent.futures.process import BrokenProcessPool

        try:
            future = self._pool.submit(fn, *args)
        except BrokenProcessPool:
            raise _died() from None
        self._inflight.append(future)
        return future

    def _feed(self) -> None:
        """Give the helper the backlog's front while it has less than one task waiting behind the running one."""
        self._inflight = [f for f in self._inflight if not f.done()]
        while self._backlog and len(self._inflight) < 2:
            index, sets = self._backlog.pop(0)
            self._done[index] = self._submit(_test, sets)

    def train(self, sets: AttackSets) -> None:
        self._base_future = self._submit(_train, self._args, sets)
        self._backlog, self._done, self._n = [], {}, 0

    def test(self, sets: AttackSets) -> int:
        self._backlog.append((self._n, sets))
        self._n += 1
        self._feed()
        return self._n - 1

    def collect(self) -> tuple[float, list[float], float]:
        from concurrent.futures import FIRST_COMPLETED, wait

        if not self._warm:
            _warm_up()  # this process's first test would pay the imports: pay them while the helper works
            self._warm = True
        while self._backlog:
            self._feed()
            if not self._backlog:
                break
            if self._base_future.done():
                self._state["attacker"] = _result(self._base_future)[2]
                index, sets = self._backlog.pop()
                self._done[index] = _Done(_test(sets, self._state))
            else:
                wait(self._inflight, return_when=FIRST_COMPLETED)
        mia, seconds, _ = _result(self._base_future)
        results = [_result(self._done[i]) for i in range(self._n)]
        return mia, [m for m, _ in results], seconds + sum(s for _, s in results)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class _Done:
    """A result computed in this process, with a future's ``result()``."""

    def __init__(self, value):
        self._value = value

    def result(self):
        return self._value


def _result(future):
    """``future.result()``; the helper's death becomes a one-line CompressionError."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        return future.result()
    except BrokenProcessPool:
        raise _died() from None


def _died() -> CompressionError:
    return CompressionError("the SafeCompress attacker process died (out of memory or killed?); rerun, or set "
                            "attacker_process: false")


def safety_tester(attacker_args: tuple, in_process: bool) -> LocalSafetyTest:
    """A :class:`ProcessSafetyTest` (``in_process=False``) or a :class:`LocalSafetyTest`."""
    return LocalSafetyTest(attacker_args) if in_process else ProcessSafetyTest(attacker_args)
