"""Membership-inference attacks: numpy signals in, per-sample scores out, metrics via scikit-learn.

Structure (as ML Privacy Meter v1): :mod:`~toolkit.attacks.signals` (per-sample signals from probability
vectors) -> one module per attack family (``threshold``, ``nn_attack``, ``shadow``, ``lira``, ``rmia``,
``compleak``) -> :mod:`~toolkit.attacks.metrics` (ROC, AUC, TPR at low FPR, balanced accuracy, bootstrap).

Every attack is a registered name in :data:`ATTACKS` pointing lazily at ``run(inp: AttackInput, **options)
-> AttackResult``; the registry metadata says what it ``needs`` (keys of
:data:`~toolkit.attacks.inputs.NEEDS`), whether it is ``learned`` (trained on the known half, evaluated on
the rest) and its fixed ``options``. :func:`run_attack` checks the needs first and raises a one-line
:class:`~toolkit.errors.AttackError` naming the fix. No attack module is imported until it is run; the
learned ones import torch (through :func:`toolkit.frameworks.torch`) only when they train.
"""

from __future__ import annotations

from collections.abc import Iterable

from toolkit.attacks.inputs import NEEDS, AttackInput, AttackResult, known_mask, missing_message
from toolkit.errors import AttackError
from toolkit.registry import Registry

ATTACKS = Registry("attack")

_A = "toolkit.attacks"
# name, target, needs, learned, options, description
_TABLE = [
    ("loss", f"{_A}.threshold:run", (), False, {"signal": "loss"},
     "cross-entropy loss of the true label (Yeom et al.): members have lower loss"),
    ("confidence", f"{_A}.threshold:run", (), False, {"signal": "confidence"},
     "probability of the true label (Song & Mittal)"),
    ("entropy", f"{_A}.threshold:run", (), False, {"signal": "entropy"},
     "entropy of the output vector (label-free)"),
    ("modified_entropy", f"{_A}.threshold:run", (), False, {"signal": "modified_entropy"},
     "Song & Mittal's modified entropy (label-aware)"),
    ("correctness", f"{_A}.threshold:run", (), False, {"signal": "correctness"},
     "top-1 correct or not (the gap attack)"),
    ("nn", f"{_A}.nn_attack:run", (), True, {},
     "SafeCompress Fig. 2 learned attacker (sorted probabilities, one-hot label, fusion) on the known half"),
    ("shadow", f"{_A}.shadow:run", ("population",), False, {},
     "Shokri et al. shadow models: the Fig. 2 attacker trained on reference models' in/out population outputs"),
    ("lira", f"{_A}.lira:run", ("references", "references_in"), False, {"online": True, "variance": "global"},
     "LiRA online, global variance (Carlini et al. 2022)"),
    ("lira_pe", f"{_A}.lira:run", ("references", "references_in"), False, {"online": True, "variance": "per_example"},
     "LiRA online, per-example variance"),
    ("lira_offline", f"{_A}.lira:run", ("references",), False, {"online": False, "variance": "global"},
     "LiRA offline (out-models only), global variance"),
    ("lira_offline_pe", f"{_A}.lira:run", ("references",), False, {"online": False, "variance": "per_example"},
     "LiRA offline, per-example variance"),
    ("rmia", f"{_A}.rmia:run", ("references", "population"), False, {"online": False},
     "RMIA offline (Zarifzadeh et al. 2024): out-models with the 'a' approximation, population z"),
    ("rmia_online", f"{_A}.rmia:run", ("references", "references_in", "population"), False, {"online": True},
     "RMIA online: in- and out-models, population z"),
    ("compleak_nr", f"{_A}.compleak:run_nr", (), True, {},
     "CompLeak NR: every metric attack on every compressed version; per-version table and the best"),
    ("compleak_sr", f"{_A}.compleak:run_sr", ("versions",), True, {},
     "CompLeak SR: original + one compressed model, aligned sorted vectors and their difference, learned"),
    ("compleak_mr", f"{_A}.compleak:run_mr", ("versions2",), True, {},
     "CompLeak MR: features of all versions (differences to the anchor, losses) into one learned attacker"),
]
for _name, _target, _needs, _learned, _options, _desc in _TABLE:
    ATTACKS.register(_name, _target, needs=tuple(_needs), learned=_learned, options=dict(_options),
                     description=_desc)

METRIC_ATTACKS = ("loss", "confidence", "entropy", "modified_entropy", "correctness")


def default_attacks(n_versions: int = 0, references: bool = False, online: bool = False) -> list[str]:
    """The attacks an audit runs when none are named: metric ones + nn, + CompLeak with other versions,
    + LiRA/RMIA with reference models."""
    names = [*METRIC_ATTACKS, "nn"]
    if n_versions >= 1:
        names += ["compleak_nr", "compleak_sr"]
    if n_versions >= 2:
        names.append("compleak_mr")
    if references:
        names += (["lira"] if online else []) + ["lira_offline", "rmia"]
    return names


def parse_attack_names(spec: str | Iterable[str] | None) -> list[str] | None:
    """``"a,b"`` or a list -> validated names (unknown names raise, listing the known ones)."""
    if spec is None:
        return None
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s and s.strip()]
    if not names:
        raise AttackError(f"no attack named; known: {', '.join(ATTACKS)}")
    for n in names:
        ATTACKS.meta(n)
    if len(set(names)) != len(names):
        raise AttackError(f"attack list repeats a name: {','.join(names)}")
    return names


def validate_attack_field(value):
    """A pydantic field validator body for a list of attack names: ``value`` unchanged, or ValueError (which
    pydantic turns into a one-line message naming the key) for an unknown or repeated name."""
    from toolkit.errors import SafeCompressError

    if value is not None:
        try:
            parse_attack_names(list(value))
        except SafeCompressError as exc:  # unknown / repeated name -> a validation error naming the key
            raise ValueError(str(exc)) from None
    return value


def check_needs(names: Iterable[str], available: set[str]) -> None:
    """Raise :class:`AttackError` for the first named attack whose needs ``available`` does not meet."""
    for name in names:
        msg = missing_message(name, ATTACKS.meta(name)["needs"], available)
        if msg:
            raise AttackError(msg)


def needs_of(names: Iterable[str]) -> set[str]:
    return {need for n in names for need in ATTACKS.meta(n)["needs"]}


def run_attack(name: str, inp: AttackInput, **options) -> AttackResult:
    """Run one registered attack on ``inp`` (its registered options, overridden by ``options``)."""
    meta = ATTACKS.meta(name)
    check_needs([name], inp.available())
    result = ATTACKS.get(name)(inp, **{**meta["options"], **options})
    result.name = name
    return result


def describe_attacks() -> list[dict]:
    return [{"name": n, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in ATTACKS.meta(n).items()}}
            for n in ATTACKS]


__all__ = ["ATTACKS", "AttackInput", "AttackResult", "METRIC_ATTACKS", "NEEDS", "check_needs", "default_attacks",
           "describe_attacks", "known_mask", "needs_of", "parse_attack_names", "run_attack"]
