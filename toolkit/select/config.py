"""The ``safecompress run`` config (YAML, validated; unknown keys are refused with the allowed ones listed).

Every section has defaults, so ``{}`` is a valid config (digits, a torch MLP, a handful of candidates). See
``configs/README.md`` for every key and ``configs/quickstart.yaml`` for the demo.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from toolkit.config_io import ConfigModel
from toolkit.models.spec import MAX_WIDTH, TrainRecipe, Width
from toolkit.seed import Seed


class _Section(ConfigModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSection(_Section):
    """Where the data comes from and how it is split (SafeCompress Table 1 + a population pool)."""

    dataset: str = Field("digits", description="digits | fashion_mnist | npz | csv")
    path: str | None = Field(None, description="file for npz / csv data sets")
    limit: int | None = Field(None, ge=8, description="use only the first LIMIT samples")
    members: float = Field(1 / 3, gt=0, description="member count, or fraction of the data if < 1")
    nonmembers: float | None = Field(None, gt=0, description="non-member count/fraction (default: as members)")
    population: float | None = Field(None, ge=0, description="population count/fraction (default: the rest)")


class ModelSection(_Section):
    """The dense reference model (built identically in every framework a candidate needs)."""

    arch: Literal["mlp", "cnn"] = "mlp"
    hidden: tuple[Width, ...] | None = Field(None, description="MLP widths (default 256, 128)")
    channels: tuple[Width, ...] | None = Field(None, description="CNN conv widths (default 32)")
    dense: int | None = Field(None, ge=1, le=MAX_WIDTH, description="CNN dense width (default 128)")


class CandidateSection(_Section):
    """One candidate source: a compression method, a SafeCompress variant or a baseline, with a parameter grid.

    ``grid`` maps a parameter to a list of values; every combination (with ``params``) is one candidate.
    """

    method: str = Field(description="a name from `safecompress methods`, safecompress*, or a baseline (pr_dp, ...)")
    params: dict[str, Any] = Field(default_factory=dict, description="method parameters")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="parameter -> values to try")
    framework: Literal["torch", "keras"] | None = Field(
        None, description="input framework for sources that take both (safecompress*, kd_*); default torch")
    export: Literal["tflite", "onnx", "ptl", "pte"] | None = Field(
        None, description="artifact format (default: export.<framework>)")
    export_mode: Literal["float", "dynamic", "float16", "int8"] = Field("float", description="export mode")
    name: str | None = Field(None, description="candidate name (default: method + grid values)")

    @model_validator(mode="after")
    def _grid_lists(self):
        for key, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"grid.{key} must be a non-empty list")
            if key in self.params:
                raise ValueError(f"{key!r} is in both params and grid")
        return self


class ExportSection(_Section):
    """Default artifact format per framework of the compressed model."""

    torch: Literal["onnx", "ptl", "pte"] = "onnx"
    keras: Literal["tflite", "onnx"] = "tflite"
    tflite: Literal["tflite"] = "tflite"
    sample: int = Field(256, ge=8, description="samples used for each export's parity check")


class SelectionSection(_Section):
    """How the winner is chosen.

    ``tm_score``: highest Acc^lam / MIA-Acc (SafeCompress Eq. 6). ``constrained``: lowest MIA accuracy among
    candidates whose accuracy drop from their dense model is <= ``max_accuracy_drop`` and whose artifact is
    <= ``max_bytes`` (ties: higher accuracy).
    """

    objective: Literal["tm_score", "constrained"] = "tm_score"
    lam: float = Field(1.0, gt=0, description="TM-score exponent of the task accuracy")
    max_accuracy_drop: float | None = Field(None, ge=0, le=1)
    max_bytes: int | None = Field(None, ge=1)
    attack_epochs: int = Field(50, ge=1, description="epochs of the simulated nn attacker on each dense model")
    attack_fine_tune_epochs: int = Field(5, ge=0, description="its fine-tuning epochs per candidate")


class FinalAuditSection(_Section):
    """The audit of the winner, with attacks NOT used during selection (selection cannot overfit them)."""

    attacks: list[str] = Field(default_factory=lambda: ["loss", "confidence", "entropy", "modified_entropy",
                                                        "compleak_sr"])
    reference_models: int = Field(0, ge=0, description="reference models for lira/rmia (0: those attacks off)")
    n_bootstrap: int = Field(200, ge=10)


class ExecutorSection(_Section):
    name: Literal["inprocess", "process", "ray"] = "inprocess"
    workers: int | None = Field(None, ge=1)
    address: str | None = Field(None, description="Ray cluster HOST:PORT (executor ray)")
    threads_per_worker: int | None = Field(None, ge=1)
    retries: int = Field(1, ge=0)


class RunConfig(_Section):
    seed: Seed = Field(0, description="seed of the split, training, attacks (32-bit)")
    data: DataSection = DataSection()
    model: ModelSection = ModelSection()
    train: TrainRecipe = TrainRecipe(epochs=30)
    candidates: list[CandidateSection] = Field(default_factory=lambda: [
        CandidateSection(method="torch_global_unstructured", grid={"sparsity": [0.5, 0.8]}),
        CandidateSection(method="torch_dynamic_int8", export="ptl"),
        CandidateSection(method="safecompress", params={"density": 0.2})])
    export: ExportSection = ExportSection()
    selection: SelectionSection = SelectionSection()
    final_audit: FinalAuditSection = FinalAuditSection()
    executor: ExecutorSection = ExecutorSection()

    @model_validator(mode="after")
    def _checks(self):
        if not self.candidates:
            raise ValueError("candidates must name at least one method")
        if "nn" in self.final_audit.attacks:
            raise ValueError("final_audit.attacks must not include 'nn': it is the selection attacker, and the "
                             "final audit uses attacks selection did not see")
        return self
