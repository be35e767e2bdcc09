"""The audit config: what reference-model attacks need to know about the target's training.

``safecompress audit ... --config audit.yaml`` reads it; the run/gate configs embed it. Example::

    model: {arch: mlp, input_shape: [28, 28, 1], n_classes: 10}
    framework: torch
    recipe: {overfit: true, seed: 0}
    population: population.npz      # x, y; never the target's members or the audited points
    n_reference_models: 8
    online: null                    # null: online when a requested attack needs it (lira, rmia_online)
    executor: process
    workers: 2

Relative paths are resolved against the config file's directory. Unknown keys are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from toolkit.config_io import ConfigModel
from toolkit.errors import ConfigError
from toolkit.models.spec import ModelSpec, TrainRecipe
from toolkit.seed import Seed


class AuditConfig(ConfigModel):
    """Training recipe + population data for shadow / LiRA / RMIA attacks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelSpec = Field(description="architecture of the target (and so of every reference model)")
    framework: Literal["torch", "keras"] = Field("torch", description="framework the references are trained in")
    recipe: TrainRecipe = Field(default_factory=TrainRecipe, description="the target's training recipe")
    population: str = Field(description=".npz (x, y) of population data the references train on")
    n_reference_models: int = Field(8, ge=1, description="reference models to train (cached)")
    online: bool | None = Field(None, description="train references on halves that include the audit points; "
                                                  "null = only when a requested attack needs it")
    fraction: float = Field(0.5, gt=0, lt=1, description="fraction of the pool each reference trains on")
    population_z: int = Field(2000, ge=10, description="population samples z used by RMIA (a seeded subset)")
    attacks: tuple[str, ...] | None = Field(None, description="attacks to run (default: see docs/attacks.md)")
    executor: str = Field("inprocess", description="executor of the reference trainings (inprocess, process, ...)")
    workers: int | None = Field(None, ge=1, description="executor workers")
    cache_dir: str | None = Field(None, description="reference-output cache (default: OUT/reference-cache)")
    seed: Seed = Field(0, description="seed of the reference models' data halves and "
                      "initializations")

    @field_validator("attacks")
    @classmethod
    def _known_attacks(cls, v):
        from toolkit.attacks import validate_attack_field

        return validate_attack_field(v)

    def resolved(self, base: Path) -> "AuditConfig":
        """A copy with relative paths made absolute against ``base``."""
        try:
            upd = {"population": str((base / self.population).resolve()) if not Path(self.population).is_absolute()
                   else self.population}
            if self.cache_dir is not None and not Path(self.cache_dir).is_absolute():
                upd["cache_dir"] = str((base / self.cache_dir).resolve())
        except (OSError, ValueError) as exc:  # a NUL byte in a path, a name too long...
            raise ConfigError(f"audit config: population / cache_dir is not a usable path: {exc}") from None
        return self.model_copy(update=upd)

    def load_population(self):
        """``(x, y)`` of the population file."""
        from toolkit.data import validate_arrays
        from toolkit.io import load_npz

        arrays = load_npz(self.population)
        return validate_arrays(arrays["x"], arrays["y"], f"population {self.population}", self.model.n_classes)

    def reference_pool(self, *, online: bool, cache_dir: str | Path | None = None, population=None):
        """The :class:`~toolkit.models.references.ReferencePool` this config describes."""
        from toolkit.models.references import ReferencePool

        return ReferencePool(self.model, self.recipe, population if population is not None else self.load_population(),
                             framework=self.framework, n_models=self.n_reference_models, online=online,
                             fraction=self.fraction, seed=self.seed,
                             cache_dir=self.cache_dir if self.cache_dir is not None else cache_dir,
                             executor=self.executor, workers=self.workers)


def parse_audit_config(values: dict, what: str = "audit config") -> AuditConfig:
    """Validate a mapping as an :class:`AuditConfig` (one-line ConfigError naming bad keys; see
    :mod:`toolkit.config_io`)."""
    from toolkit.config_io import parse_config

    return parse_config(values, AuditConfig, what)


def load_audit_config(path: str | Path) -> AuditConfig:
    """Read a YAML audit config (safe_load only), validate it and resolve its paths."""
    from toolkit.config_io import load_config

    p = Path(path)
    return load_config(p, AuditConfig, f"audit config {p}").resolved(p.resolve().parent)
