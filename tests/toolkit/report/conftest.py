"""A report with every section report.html renders, built from real audits of real models.

Three candidates (the dense torch MLP and two L1-pruned copies, ``torch.nn.utils.prune``) are each audited
in process with two attacks; their bytes are the gzip size of their real ONNX export. The selected candidate
(highest TM-score = accuracy / MIA accuracy) is gated, and its audit report (with its roc.png) carries the
``gate``, ``provenance``, ``candidates``, ``selected`` and ``dense`` sections, as a run report would.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pytest


class Proba:
    def __init__(self, model):
        self.model = model

    def predict_proba(self, x):
        from toolkit.models import predict_proba

        return predict_proba(self.model, x)


def export_onnx(torch_model, path, sample_x):
    """Real ONNX export (TorchScript exporter, dynamic batch axis) of ``softmax(model(x))``."""
    from toolkit.frameworks import torch

    t = torch()
    wrapped = t.nn.Sequential(torch_model, t.nn.Softmax(dim=1)).eval()
    t.onnx.export(wrapped, (t.from_numpy(sample_x[:2]),), str(path), dynamo=False, input_names=["x"],
                  output_names=["probs"], dynamic_axes={"x": {0: "batch"}, "probs": {0: "batch"}})
    return path


def _pruned(model, amount):
    import torch.nn.utils.prune as prune
    from toolkit.frameworks import torch

    m = copy.deepcopy(model)
    for mod in m.modules():
        if isinstance(mod, torch().nn.Linear):
            prune.l1_unstructured(mod, "weight", amount=amount)
            prune.remove(mod, "weight")
    return m


def _sparsity(model) -> float:
    weights = [p.detach().numpy() for n, p in model.named_parameters() if n.endswith("weight")]
    return float(sum((w == 0).sum() for w in weights) / sum(w.size for w in weights))


@pytest.fixture(scope="session")
def run_report(tmp_path_factory, trained, digits_parts):
    from device_tests.leakage import audit
    from toolkit.gate.evaluate import evaluate
    from toolkit.gate.policy import parse_flag_items
    from toolkit.io import gzip_size
    from toolkit.report.provenance import provenance

    d = tmp_path_factory.mktemp("report")
    m, n = digits_parts["members"], digits_parts["nonmembers"]
    dense = trained("torch", "mlp")
    models = {"dense": dense, "l1-50": _pruned(dense, 0.5), "l1-90": _pruned(dense, 0.9)}
    candidates, audits = [], {}
    for name, model in models.items():
        rep = audit(Proba(model), (m.x, m.y), (n.x, n.y), attacks="loss,entropy", seed=0, n_bootstrap=50,
                    out_dir=d / name)
        art = export_onnx(model, d / f"{name}.onnx", m.x)
        mia = max(a["balanced_accuracy"] for a in rep["attacks"])
        acc = rep["accuracy"]["nonmembers"]
        candidates.append({"name": name, "backend": "torch", "method": "dense" if name == "dense" else "torch_l1",
                           "params": {} if name == "dense" else {"amount": float(name[3:]) / 100},
                           "accuracy": acc, "mia_accuracy": mia, "tm_score": acc / mia,
                           "bytes": gzip_size(art.read_bytes()), "artifact": art.name, "attacks": rep["attacks"],
                           "stats": {"sparsity": _sparsity(model)}})
        audits[name] = rep
    selected = max(candidates[1:], key=lambda c: c["tm_score"])["name"]
    report = dict(audits[selected])
    th = parse_flag_items("max", ["auc=0.6", "tpr@0.001=0.05"]) + parse_flag_items("min", ["accuracy=0.99"])
    report["gate"] = evaluate(report, th).to_dict()
    report["provenance"] = provenance(["run", "configs/quickstart.yaml", "--out", str(d)], 0)
    report.update(candidates=candidates, selected=selected, dense=candidates[0])
    return report, d / selected


@pytest.fixture(scope="session")
def cli():
    def run(*args, cwd=None, timeout=300):
        env = dict(os.environ, SAFECOMPRESS_THREADS="2")
        env.pop("SAFECOMPRESS_QUIET", None)
        return subprocess.run([sys.executable, "-m", "toolkit.cli", *map(str, args)], capture_output=True,
                              text=True, cwd=cwd, env=env, timeout=timeout)

    return run


@pytest.fixture(scope="session")
def onnx_files(tmp_path_factory, trained, digits_parts):
    d = tmp_path_factory.mktemp("report-cli")
    m, n = digits_parts["members"], digits_parts["nonmembers"]
    np.savez(d / "members.npz", x=m.x, y=m.y)
    np.savez(d / "nonmembers.npz", x=n.x, y=n.y)
    export_onnx(trained("torch", "mlp"), d / "model.onnx", m.x)
    return d
