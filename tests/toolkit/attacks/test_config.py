"""The audit config: strict keys, paths relative to the file, the reference pool it describes."""

import numpy as np
import pytest

from toolkit.attacks.config import AuditConfig, load_audit_config, parse_audit_config
from toolkit.errors import ConfigError


def _write(tmp_path, text):
    p = tmp_path / "audit.yaml"
    p.write_text(text)
    return p


def test_config_builds_the_reference_pool(tmp_path, digits_parts):
    pop = digits_parts["population"]
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "pop.npz", x=pop.x[:100], y=pop.y[:100])
    cfg = load_audit_config(_write(tmp_path, "model: {arch: mlp, input_shape: [8, 8, 1], n_classes: 10}\n"
                                             "recipe: {epochs: 2, seed: 3}\npopulation: data/pop.npz\n"
                                             "n_reference_models: 2\nattacks: [loss, rmia]\n"))
    assert isinstance(cfg, AuditConfig) and cfg.population == str((tmp_path / "data" / "pop.npz").resolve())
    pool = cfg.reference_pool(online=False, cache_dir=tmp_path / "cache")
    assert pool.n_models == 2 and pool.recipe.seed == 3 and pool.cache_dir == tmp_path / "cache"
    q = digits_parts["nonmember_known"]
    out = pool.query(q.x[:20], q.y[:20])
    assert out.probs.shape == (2, 20, 10) and out.pop_probs.shape == (2, 100, 10)


@pytest.mark.parametrize("text,needle", [
    ("model: {arch: mlp, input_shape: [8, 8, 1], n_classes: 10}\npopulation: p.npz\nn_refs: 3\n",
     "unknown key 'n_refs' (allowed: model, framework, recipe"),
    ("model: {arch: mlp, input_shape: [8, 8, 1], n_classes: 10}\npopulation: p.npz\nrecipe: {epoch: 3}\n",
     "unknown key 'recipe.epoch' (allowed: epochs, batch_size"),
    ("model: {arch: mlp, input_shape: [8, 8, 1], n_classes: 10}\npopulation: p.npz\nattacks: [lirra]\n",
     "unknown attack 'lirra'"),
    ("model: {arch: mlp, input_shape: [8, 8, 1], n_classes: 10}\npopulation: p.npz\nframework: jax\n", "framework"),
    ("population: p.npz\n", "model: Field required"),
    ("- a\n- b\n", "must be a mapping"),
])
def test_bad_configs_are_one_line_config_errors(tmp_path, text, needle):
    with pytest.raises(ConfigError, match=None) as exc:
        load_audit_config(_write(tmp_path, text))
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_missing_population_file_is_reported(tmp_path):
    cfg = parse_audit_config({"model": {"arch": "mlp", "input_shape": [8, 8, 1], "n_classes": 10},
                              "population": str(tmp_path / "nope.npz")})
    with pytest.raises(Exception, match="data file not found"):
        cfg.load_population()
