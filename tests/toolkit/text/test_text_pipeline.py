"""The text pipeline: config validation, a tiny end-to-end run, the CLI command, and configs/text-quick.yaml."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.errors import ConfigError
from toolkit.text.config import load_text_config, parse_text_config

ROOT = Path(__file__).resolve().parents[3]
TINY = {
    "name": "tiny", "seed": 0,
    "data": {"topics": ["computers", "zippy"], "max_per_class": 80, "members": 60, "nonmembers": 60,
             "population": 20},
    "tokenizer": {"vocab_size": 400},
    "models": [{"arch": "gpt2", "seq_len": 24, "layers": 1, "hidden": 32, "intermediate": 64}],
    "recipe": {"epochs": 3, "batch_size": 16, "lr": 0.003},
    "versions": [{"name": "heads", "compress": {"method": "torch_prune_heads", "fine_tune_epochs": 0}},
                 {"name": "int8", "onnx_quantize": "dynamic_int8"}],
    "audit": {"attacks": ["loss", "nn", "compleak_nr", "compleak_sr", "compleak_mr"], "n_bootstrap": 0},
}


def _with(**changes):
    cfg = json.loads(json.dumps(TINY))
    for dotted, value in changes.items():
        *path, key = dotted.split("__")
        node = cfg
        for p in path:
            node = node[p]
        node[key] = value
    return cfg


@pytest.mark.parametrize("changes, message", [
    ({"data__membres": 5}, r"unknown key 'data.membres' \(allowed: topics, max_per_class"),
    ({"versions": [{"name": "x", "compress": {"method": "torch_dynamic_int8"}}]}, "no ONNX export"),
    ({"versions": [{"name": "x", "compress": {"method": "tfmot_prune"}}]}, "compresses keras models"),
    ({"versions": [{"name": "x", "base": "y", "onnx_quantize": "dynamic_int8"}]}, "not defined before it"),
    ({"versions": [{"name": "dense", "onnx_quantize": "dynamic_int8"}]}, "not 'dense'"),
    ({"audit": {"attacks": ["lira_offlin"]}}, "unknown attack 'lira_offlin'"),
    ({"tokenizer": {"kind": "sentencepiece"}}, "tokenizer.kind"),
    ({"audit": {"references": 2}, "data__population": 0}, "needs population data"),
])
def test_config_errors_are_one_line(changes, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_text_config(_with(**changes))
    assert "\n" not in str(info.value)


def test_shipped_configs_validate():
    for name in ("text-quick.yaml", "text-long.yaml"):
        cfg = load_text_config(ROOT / "configs" / name)
        assert {m.arch for m in cfg.models} == {"bert", "gpt2"} and cfg.versions


def test_tiny_pipeline_end_to_end(tmp_path):
    from toolkit.text.pipeline import run_text_pipeline

    report = run_text_pipeline(TINY, tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["schema"] == "safecompress.text/1" and (tmp_path / "report.md").is_file()
    m = saved["models"]["gpt2"]
    assert set(m["versions"]) == {"dense", "heads", "int8"}
    assert m["versions"]["heads"]["params"] < m["versions"]["dense"]["params"]
    assert m["versions"]["int8"]["artifact"]["mode"] == "dynamic_int8"
    assert m["versions"]["int8"]["artifact"]["bytes"] < m["versions"]["dense"]["artifact"]["bytes"]
    assert set(m["versions"]["dense"]["attacks"]) == {"loss", "nn"}  # CompLeak only on compressed versions
    assert set(m["versions"]["heads"]["attacks"]) == {"loss", "nn", "compleak_nr", "compleak_sr", "compleak_mr"}
    for v in m["versions"].values():
        assert Path(v["artifact"]["path"]).is_file() and 0.0 <= v["attacks"]["loss"]["auc"] <= 1.0
    assert m["tokenizer"]["unknown_rate"]["members"] == 0.0
    assert (tmp_path / "gpt2" / "tokenizer.json").is_file() and (tmp_path / "split.json").is_file()
    assert report["seconds"]["total"] > 0


def _cli(*args, timeout=600):
    env = dict(os.environ, SAFECOMPRESS_THREADS="2")
    return subprocess.run([sys.executable, "-m", "toolkit.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def test_cli_refuses_bad_config_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {members: 10}\nmodels: [{arch: bert, layerz: 2}]\n")
    res = _cli("text", str(bad), "--out", str(tmp_path / "out"))
    assert res.returncode == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown key 'models.0.layerz'" in lines[0]
    missing = _cli("text", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "config file not found" in missing.stderr


@pytest.mark.slow
def test_quick_config_through_the_cli(tmp_path):
    res = _cli("text", "configs/text-quick.yaml", "--out", str(tmp_path), "--json", timeout=1200)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(res.stdout)
    for label in ("bert", "gpt2"):
        versions = report["models"][label]["versions"]
        assert set(versions) == {"dense", "pruned50", "heads50", "int8"}
        dense = versions["dense"]
        assert dense["artifact_accuracy"]["nonmembers"] > 0.4  # 4 topics: chance is 0.25
        assert versions["pruned50"]["sparsity"] >= 0.5
        assert "compleak_mr" in versions["int8"]["attacks"]


def test_token_duplicates_are_dropped_from_later_parts():
    import numpy as np

    from toolkit.text.pipeline import PARTS, encode_parts
    from toolkit.text.tokenizer import TextTokenizer, TokenizerConfig

    tok = TextTokenizer.fit([f"word{i} and more words here" for i in range(40)], 5, TokenizerConfig(vocab_size=300))
    corpus = {p: [] for p in PARTS}
    corpus["member_known"] = ["one two three four five six", "alpha beta"]
    corpus["nonmember_known"] = ["one two three four five seven", "gamma delta"]  # same first 5 tokens as a member
    labels = {p: np.arange(len(corpus[p])) for p in PARTS}
    arrays, dropped = encode_parts(tok, corpus, labels)
    assert dropped["nonmember_known"] == 1 and dropped["member_known"] == 0
    assert len(arrays["nonmember_known"][0]) == 1 and arrays["nonmember_known"][1].tolist() == [1]
    assert arrays["population"][0].shape == (0, 5)
