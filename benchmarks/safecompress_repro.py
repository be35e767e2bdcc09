"""Reproduction of MIA-SafeCompress at CPU scale (issue 6, "Reproduction (CPU scale)").

Fashion-MNIST, the reference CNN (PyTorch), densities 0.05 / 0.1 / 0.2 (the paper's "sparsity"), rows:

* ``dense``: the uncompressed model (SGD, momentum 0.9).
* ``prune_ft``: the paper's pretrain -> magnitude prune -> fine-tune baseline: global magnitude pruning of the
  dense model with ``torch.nn.utils.prune.global_unstructured`` (L1) to the density, masked fine-tuning,
  ``prune.remove`` to bake the zeros in.
* ``safecompress`` / ``safecompress_re2``: MIA-SafeCompress (toolkit.select.safecompress), no regularizer / re2.

Every row is evaluated the same way, with nothing tuned: Task Acc = accuracy on all non-members; MIA Acc =
the ``nn`` attacker (toolkit.attacks, SafeCompress Fig. 2, 100 epochs, seed 0) trained on the model's outputs
on the known member / non-member halves and scored on the unknown halves (balanced accuracy at the threshold
chosen on the known halves, toolkit.attacks.metrics); TM-score = Task Acc / MIA Acc (lambda = 1).
Selection cost = SafeCompress wall time / dense training wall time (the paper: 3.98 h / 1.05 h = 3.8x).

Run: ``.venv/bin/python benchmarks/safecompress_repro.py [--quick]`` -> ``benchmarks/results/safecompress.json``
and ``.md``. Threads default to 1 per framework (``SAFECOMPRESS_THREADS``): on a shared 2-core machine one
thread per process is several times faster than two fighting for cores, and timings stay comparable.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("SAFECOMPRESS_THREADS", "1")
os.environ.setdefault("SAFECOMPRESS_QUIET", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

FULL = dict(limit=None, members=2000, nonmembers=2000, densities=(0.05, 0.1, 0.2), dense_epochs=30,
            prune_ft_epochs=5, rounds=5, eval_attack_epochs=100,
            sc=dict(epochs_per_round=6.0, fine_tune_epochs=0.25, attack_epochs=10, attack_fine_tune_epochs=1,
                    attacker_process=True))
QUICK = dict(limit=3000, members=600, nonmembers=600, densities=(0.1,), dense_epochs=6, prune_ft_epochs=2, rounds=2,
             eval_attack_epochs=20,
             sc=dict(epochs_per_round=3.0, fine_tune_epochs=0.25, attack_epochs=5, attack_fine_tune_epochs=1,
                     attacker_process=True))


def _dense_recipe(epochs: int):
    from toolkit.models import TrainRecipe

    return TrainRecipe(epochs=epochs, batch_size=128, optimizer="sgd", lr=0.05, momentum=0.9, seed=0)


def _prune_fine_tune(dense, density: float, x, y, epochs: int):
    """Global L1 magnitude pruning of Linear/Conv weights to ``density``, masked fine-tuning, masks baked in."""
    import torch
    from torch.nn.utils import prune

    from toolkit.models import TrainRecipe, clone_model
    from toolkit.models.torch_nets import train

    model = clone_model(dense)
    params = [(m, "weight") for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=1.0 - density)
    train(model, x, y, TrainRecipe(epochs=epochs, batch_size=128, optimizer="sgd", lr=0.01, momentum=0.9, seed=1))
    for m, name in params:
        prune.remove(m, name)
    return model


class Evaluator:
    """The one evaluation every row gets (see the module docstring). Model outputs are computed once per row."""

    def __init__(self, data, attack_epochs: int):
        from toolkit.select.safecompress import PARTS

        self.data = data
        self.x = np.concatenate([getattr(data, p).x for p in PARTS])
        self.labels = np.concatenate([getattr(data, p).y for p in PARTS])
        sizes = [len(getattr(data, p).y) for p in PARTS]
        self.membership = np.repeat([True, True, False, False], sizes)
        self.known = np.repeat([True, False, True, False], sizes)
        self.nonmember = ~self.membership
        self.attack_epochs = attack_epochs

    def __call__(self, model) -> dict:
        from toolkit.attacks import AttackInput, run_attack
        from toolkit.attacks.metrics import evaluate
        from toolkit.models import predict_proba

        probs = predict_proba(model, self.x, batch_size=128)
        acc = float(np.mean(np.argmax(probs[self.nonmember], 1) == self.labels[self.nonmember]))
        inp = AttackInput(probs, self.labels, self.membership, known=self.known, seed=0)
        res = run_attack("nn", inp, epochs=self.attack_epochs)
        metrics = evaluate(res.scores, self.membership, self.known, res.eval_mask, n_bootstrap=0)
        mia = metrics["balanced_accuracy"]
        return {"task_acc": acc, "mia_acc": mia, "tm_score": acc / mia, "mia_auc": metrics["auc"]}


def _warm_up(spec, x, y) -> None:
    from toolkit.attacks.nn_attack import NNAttack
    from toolkit.models import train_reference_model

    train_reference_model(spec, "torch", x, y, _dense_recipe(1))
    NNAttack(spec.n_classes, epochs=1).fit(np.full((4, spec.n_classes), 1.0 / spec.n_classes), np.arange(4) % 2,
                                           np.arange(4) < 2)


def _density(model) -> float:
    from toolkit.models.torch_nets import weight_arrays

    w = weight_arrays(model)
    return sum(int(np.count_nonzero(a)) for a in w.values()) / sum(a.size for a in w.values())


def run(quick: bool = False) -> dict:
    from toolkit.data import load_dataset, make_split
    from toolkit.frameworks import thread_count
    from toolkit.models import ModelSpec, train_reference_model
    from toolkit.select.safecompress import MembershipData, SafeCompressConfig, safecompress

    cfg = QUICK if quick else FULL
    ds = load_dataset("fashion_mnist", limit=cfg["limit"])
    split = make_split(ds, members=cfg["members"], nonmembers=cfg["nonmembers"], population=0, seed=0)
    data = MembershipData.from_split(ds, split)
    members = data.members
    spec = ModelSpec(arch="cnn", input_shape=ds.input_shape, n_classes=ds.n_classes)
    evaluate = Evaluator(data, cfg["eval_attack_epochs"])

    # Warm-up outside the timers: the first optimizer step imports torch's compiler stack (seconds).
    _warm_up(spec, members.x[:256], members.y[:256])
    t = time.perf_counter()
    dense = train_reference_model(spec, "torch", members.x, members.y, _dense_recipe(cfg["dense_epochs"]))
    dense_s = time.perf_counter() - t
    rows = [{"method": "dense", "density": 1.0, "seconds": dense_s, **evaluate(dense)}]
    print(f"dense: {rows[-1]}", flush=True)
    for density in cfg["densities"]:
        t = time.perf_counter()
        pruned = _prune_fine_tune(dense, density, members.x, members.y, cfg["prune_ft_epochs"])
        rows.append({"method": "prune_ft", "density": _density(pruned), "target_density": density,
                     "seconds": time.perf_counter() - t, **evaluate(pruned)})
        print(f"prune_ft {density}: {rows[-1]}", flush=True)
        for name, reg in (("safecompress", "none"), ("safecompress_re2", "re2")):
            sc_cfg = SafeCompressConfig(density=density, rounds=cfg["rounds"], regularizer=reg, seed=0, **cfg["sc"])
            res = safecompress(spec, data, sc_cfg, framework="torch")
            rows.append({"method": name, "density": res.density, "target_density": density, "seconds": res.seconds,
                         "selection_cost": res.seconds / dense_s, **evaluate(res.model),
                         "internal": {"task_acc": res.accuracy, "mia_acc": res.mia_accuracy, "tm_score": res.tm_score},
                         "timings": {k: round(v, 2) for k, v in res.timings.items()},
                         "selected": [r.selected for r in res.history]})
            print(f"{name} {density}: {rows[-1]}", flush=True)
    dense_row = rows[0]
    checks = []
    for density in cfg["densities"]:
        by = {r["method"]: r for r in rows if r.get("target_density") == density}
        for name in ("safecompress", "safecompress_re2"):
            checks.append({"density": density, "method": name,
                           "tm_beats_prune_ft": by[name]["tm_score"] > by["prune_ft"]["tm_score"],
                           "mia_3pts_below_dense": by[name]["mia_acc"] <= dense_row["mia_acc"] - 0.03,
                           "selection_cost": by[name]["selection_cost"]})
    return {
        "benchmark": "safecompress_repro", "quick": quick,
        "command": ".venv/bin/python benchmarks/safecompress_repro.py" + (" --quick" if quick else ""),
        "dataset": {"name": ds.name, "sizes": data.sizes()}, "model": spec.model_dump(mode="json"),
        "threads": thread_count(), "cpu_count": os.cpu_count(), "config": {k: v for k, v in cfg.items()},
        "dense_train_seconds": dense_s, "rows": rows, "checks": checks,
    }


def _markdown(result: dict) -> str:
    lines = [
        "# MIA-SafeCompress reproduction (CPU scale)", "",
        f"Command: `{result['command']}`  ",
        f"Data: {result['dataset']['name']} {result['dataset']['sizes']}; model: reference CNN (torch); "
        f"threads per framework: {result['threads']} of {result['cpu_count']} cores (shared machine: timings are noisy).",
        "", "Task Acc on all non-members; MIA Acc = nn attacker trained on the known halves, balanced accuracy on the "
            "unknown halves (same evaluation for every row); TM = Task/MIA.", "",
        "| method | density | Task Acc | MIA Acc | MIA AUC | TM-score | wall s | selection cost |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        cost = f"{r['selection_cost']:.2f}x" if "selection_cost" in r else ""
        lines.append(f"| {r['method']} | {r['density']:.4f} | {r['task_acc']:.4f} | {r['mia_acc']:.4f} | "
                     f"{r['mia_auc']:.4f} | {r['tm_score']:.4f} | {r['seconds']:.1f} | {cost} |")
    lines += ["", "| density | method | TM > prune+FT | MIA <= dense - 3 pts | selection cost |", "|---|---|---|---|---|"]
    for c in result["checks"]:
        lines.append(f"| {c['density']} | {c['method']} | {c['tm_beats_prune_ft']} | {c['mia_3pts_below_dense']} | "
                     f"{c['selection_cost']:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from toolkit.io import atomic_write_json, atomic_write_text

    argv = sys.argv[1:] if argv is None else argv
    quick = "--quick" in argv
    result = run(quick=quick)
    stem = "safecompress_quick" if quick else "safecompress"
    atomic_write_json(RESULTS / f"{stem}.json", result)
    atomic_write_text(RESULTS / f"{stem}.md", _markdown(result))
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
