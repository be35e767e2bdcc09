"""Ablation: does reusing SafeCompress's simulated attacker across rounds change what SafeCompress selects?

SafeCompress trains its attacker from scratch in the first round and afterwards fine-tunes it on each round's
M_S (``attack_fine_tune_epochs``, docs/safecompress.md difference 9). This script compares that with an
attacker trained from scratch every round (``attack_epochs``, as the public MIA-SafeCompress code does), and
with a reused attacker fine-tuned 3 epochs per round, on the reproduction's setting (Fashion-MNIST CNN,
``benchmarks/safecompress_repro.py``'s data, SafeCompress settings and evaluation), seeds 0-2, at density 0.2
with re2 and density 0.1 without a regularizer.

The two alternatives are obtained by swapping ``toolkit.select.safecompress.safety._train`` (the one function
that trains the attacker on M_S); everything else, including the evaluation, is the repro's.

Run: ``.venv/bin/python benchmarks/safecompress_attacker_reuse.py`` (about 15 minutes on 2 cores: the three
variants run in parallel processes) -> ``benchmarks/results/safecompress_attacker_reuse.{json,md}``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("SAFECOMPRESS_THREADS", "1")
os.environ.setdefault("SAFECOMPRESS_QUIET", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

VARIANTS = {"fresh": "a new attacker trained attack_epochs from scratch every round",
            "reuse1": "the toolkit's default: the attacker reused, fine-tuned attack_fine_tune_epochs (1) per round",
            "reuse3": "the attacker reused, fine-tuned 3 epochs per round"}
SETTINGS = ((0.2, "re2"), (0.1, "none"))
SEEDS = (0, 1, 2)


def _install(variant: str) -> None:
    """Swap the attacker's per-round training for ``variant`` (``reuse1`` is the code as it is)."""
    import toolkit.select.safecompress.safety as safety
    from toolkit.select.safecompress.attacker import SimulatedAttacker

    if variant == "reuse1":
        return

    def train(args, sets, state=safety._STATE):
        if variant == "fresh" or "attacker" not in state:
            state["attacker"] = SimulatedAttacker(*args).fit(sets)
        else:
            state["attacker"].attack.fine_tune(*sets.attack_set(known=True), epochs=3)
        return state["attacker"].mia_accuracy(sets), 0.0, state["attacker"]

    safety._train = train


def _child(variant: str) -> list[dict]:
    from benchmarks._common import pin_torch_threads, quiet_warnings

    quiet_warnings()
    from benchmarks import safecompress_repro as repro
    from toolkit.data import load_dataset, make_split
    from toolkit.models import ModelSpec
    from toolkit.select.safecompress import MembershipData, SafeCompressConfig, safecompress

    _install(variant)
    pin_torch_threads()
    cfg = repro.FULL
    ds = load_dataset("fashion_mnist")
    split = make_split(ds, members=cfg["members"], nonmembers=cfg["nonmembers"], population=0, seed=0)
    data = MembershipData.from_split(ds, split)
    spec = ModelSpec(arch="cnn", input_shape=ds.input_shape, n_classes=ds.n_classes)
    evaluate = repro.Evaluator(data, cfg["eval_attack_epochs"])
    sc = {**cfg["sc"], "attacker_process": False}  # the swapped function runs in this process
    rows = []
    for density, regularizer in SETTINGS:
        for seed in SEEDS:
            res = safecompress(spec, data, SafeCompressConfig(density=density, rounds=cfg["rounds"],
                                                              regularizer=regularizer, seed=seed, **sc),
                               framework="torch")
            rows.append({"variant": variant, "density": density, "regularizer": regularizer, "seed": seed,
                         **evaluate(res.model), "selected": [h.selected for h in res.history]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _markdown(result: dict) -> str:
    lines = ["# SafeCompress: attacker reused across rounds vs trained afresh (ablation)", "",
             f"Command: `{result['command']}`  ",
             "Setting: `benchmarks/safecompress_repro.py` (Fashion-MNIST CNN, 2,000 members; the repro's SafeCompress "
             "settings and evaluation: nn attacker 100 epochs, balanced accuracy on the unknown halves).", ""]
    lines += [f"* `{k}`: {v}" for k, v in VARIANTS.items()]
    lines += ["", "| density | regularizer | variant | MIA Acc (seeds 0, 1, 2) | mean MIA Acc | mean Task Acc | mean TM |",
              "|---|---|---|---|---|---|---|"]
    for density, regularizer in SETTINGS:
        for variant in VARIANTS:
            rows = [r for r in result["rows"] if (r["variant"], r["density"], r["regularizer"]) ==
                    (variant, density, regularizer)]
            rows.sort(key=lambda r: r["seed"])
            lines.append(f"| {density} | {regularizer} | {variant} | {', '.join(format(r['mia_acc'], '.4f') for r in rows)} | "
                         f"{statistics.mean(r['mia_acc'] for r in rows):.4f} | "
                         f"{statistics.mean(r['task_acc'] for r in rows):.4f} | "
                         f"{statistics.mean(r['tm_score'] for r in rows):.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _child(argv[1])
        return 0
    from toolkit.io import atomic_write_json, atomic_write_text

    procs = {v: subprocess.Popen([sys.executable, __file__, "--child", v], stdout=subprocess.PIPE, text=True)
             for v in VARIANTS}
    rows = []
    for variant, proc in procs.items():
        out, _ = proc.communicate()
        if proc.returncode:
            print(f"variant {variant} failed with exit code {proc.returncode}", file=sys.stderr)
            return 1
        rows += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    result = {"benchmark": "safecompress_attacker_reuse",
              "command": ".venv/bin/python benchmarks/safecompress_attacker_reuse.py", "variants": VARIANTS,
              "rows": rows}
    atomic_write_json(RESULTS / "safecompress_attacker_reuse.json", result)
    atomic_write_text(RESULTS / "safecompress_attacker_reuse.md", _markdown(result))
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
