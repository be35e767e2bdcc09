"""``compleak_cost``: one audit of the original + k = 3 compressed artifacts together / k + 1 single audits.

Setting: Fashion-MNIST, a torch MLP trained on 600 members (quick: 300), audited on them and 600 non-members;
three compressed versions made with ``toolkit.compress.compress``: ``torch_global_unstructured`` (50%, 1
fine-tuning epoch), ``torch_dynamic_int8`` and ``nni_l1norm`` (50%, 1 epoch); every model exported with
``exporters.export`` (original, pruned and NNI to ``.onnx``, the int8 model to ``.ptl``, the only format that
carries torch.ao dynamic int8).

* **joint**: ``audit(pruned.onnx, members, non-members, references={original, int8, nni_l1norm})`` with the
  default attacks of an audit with versions: the 5 metric attacks and the learned ``nn`` attacker on the target,
  ``compleak_nr`` (every metric attack on every compressed version), ``compleak_sr`` and ``compleak_mr``;
* **singles**: ``audit(artifact, ...)`` of each of the 4 artifacts alone with its default attacks (5 metric
  attacks + ``nn``), summed.

What ``safecompress audit`` runs in each case; all with bootstrap CIs (200 resamples). Each audit time is the
best of 3. Quick: 1 run, learned attackers 10 epochs instead of 100, 20 bootstrap resamples.
Goal: joint / sum of singles <= 1.1.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from benchmarks._common import best_of, fashion_split, figure, pin_torch_threads, quiet_warnings, threads

VERSIONS = {
    "pruned": ({"method": "torch_global_unstructured", "sparsity": 0.5, "fine_tune_epochs": 1}, "onnx"),
    "int8": ({"method": "torch_dynamic_int8"}, "ptl"),
    "l1norm": ({"method": "nni_l1norm", "sparsity": 0.5, "fine_tune_epochs": 1}, "onnx"),
}


def run(quick: bool = False, log=print) -> dict:
    quiet_warnings()
    from device_tests.leakage import audit
    from exporters import export
    from toolkit.compress import CompressData, compress
    from toolkit.models import ModelSpec, TrainRecipe, train_reference_model

    n_side, repeats, epochs, limit = (300, 1, 3, 3000) if quick else (600, 3, 10, None)
    # Quick (smoke) runs: learned attackers 10 epochs instead of 100, 20 bootstrap resamples instead of 200,
    # joint and singles alike.
    options = {a: {"epochs": 10} for a in ("nn", "compleak_sr", "compleak_mr")} if quick else None
    n_boot = 20 if quick else 200
    pin_torch_threads()
    ds, parts = fashion_split(n_side, n_side, 0, seed=0, limit=limit)
    mem, non = parts["members"], parts["nonmembers"]
    spec = ModelSpec(arch="mlp", input_shape=ds.input_shape, n_classes=ds.n_classes)
    recipe = TrainRecipe(epochs=epochs, seed=0)
    original = train_reference_model(spec, "torch", mem.x, mem.y, recipe)
    data = CompressData(mem.x, mem.y, non.x, non.y, recipe)
    with tempfile.TemporaryDirectory(prefix="sc-bench-compleak-") as tmp:
        paths = {"original": export(original, "onnx", Path(tmp) / "original.onnx", non.x[:200]).path}
        for name, (cfg, fmt) in VERSIONS.items():
            cm = compress(original, cfg, data)
            paths[name] = export(cm, fmt, Path(tmp) / f"{name}.{fmt}", non.x[:200]).path
        pair_m, pair_n = (mem.x, mem.y), (non.x, non.y)
        refs = {n: paths[n] for n in ("original", "int8", "l1norm")}
        for p in paths.values():  # one-off isolation checks of the .ptl, outside the timers
            audit(p, pair_m, pair_n, attacks=["loss"], n_bootstrap=0)
        joint_reports, single_reports = [], {}

        def joint():
            joint_reports.append(audit(paths["pruned"], pair_m, pair_n, references=refs, seed=0,
                                       attack_options=options, n_bootstrap=n_boot))

        joint_s, joint_all = best_of(joint, repeats)
        singles = {}
        for name, p in paths.items():
            single_reports[name] = []
            singles[name], _ = best_of(lambda p=p, name=name: single_reports[name].append(
                audit(p, pair_m, pair_n, seed=0, attack_options=options, n_bootstrap=n_boot)), repeats)
    jr = min(joint_reports, key=lambda r: r["seconds"]["total"])
    per_attack_joint = {a["name"]: a["seconds"] for a in jr["attacks"]}
    per_attack_single = {n: {a["name"]: a["seconds"] for a in min(rs, key=lambda r: r["seconds"]["total"])["attacks"]}
                         for n, rs in single_reports.items()}
    total_single = sum(singles.values())
    ratio = joint_s / total_single
    learned_joint = sum(v for k, v in per_attack_joint.items() if k in ("nn", "compleak_sr", "compleak_mr"))
    learned_single = sum(s.get("nn", 0.0) for s in per_attack_single.values())
    log(f"compleak_cost: joint {joint_s:.2f}s vs singles {total_single:.2f}s ({singles}) -> x{ratio:.3f}")
    why = (f"joint {joint_s:.1f}s (attacks {per_attack_joint}) vs 4 singles {total_single:.1f}s; the joint audit "
           f"trains 3 learned attackers ({learned_joint:.1f}s) where the singles train 4 nn attackers "
           f"({learned_single:.1f}s)")
    return {"figures": [figure("joint(1+3) / 4 single audits", ratio, "<= 1.1", why)],
            "details": {"setting": {"data": "fashion_mnist", "arch": "mlp", "members": n_side, "nonmembers": n_side,
                                    "versions": {n: {"config": c, "format": f} for n, (c, f) in VERSIONS.items()},
                                    "joint_attacks": [a["name"] for a in jr["attacks"]],
                                    "single_attacks": [a["name"] for a in single_reports["original"][0]["attacks"]],
                                    "learned_attack_epochs": 10 if quick else 100, "n_bootstrap": n_boot, "repeats": repeats,
                                    "threads": threads()},
                        "joint_s": round(joint_s, 3), "joint_all_s": joint_all,
                        "single_s": {k: round(v, 3) for k, v in singles.items()},
                        "joint_seconds_by_attack": per_attack_joint, "single_seconds_by_attack": per_attack_single,
                        "joint_query_s": jr["seconds"]["query"],
                        "compleak_auc": {a["name"]: round(a["auc"], 4) for a in jr["attacks"]}}}
