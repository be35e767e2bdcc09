"""Release gate: audit an artifact and fail the build when its leakage or accuracy crosses a limit.

``safecompress gate ARTIFACT --members M.npz --nonmembers N.npz --max auc=0.6 --min accuracy=0.85 ...``
(see ``docs/ci.md``). Layers, all report-dicts-in:

* :mod:`~toolkit.gate.metrics` - the gated metrics (``auc``, ``balanced_accuracy``, ``tpr@<fpr>``,
  ``accuracy`` = non-member accuracy, ``accuracy_gap``) and kinds of limit (``max``, ``min``,
  ``max_increase``, ``max_decrease``);
* :mod:`~toolkit.gate.policy` - :class:`GatePolicy` (YAML, unknown keys refused) and flag parsing; flags
  override the policy per metric and kind;
* :mod:`~toolkit.gate.evaluate` - thresholds x attacks -> checks, violations, warnings, baseline deltas;
* :mod:`~toolkit.gate.command` - the command: plan (cheap validation), audit, evaluate, write outputs.

Exit codes (``toolkit.cli``): 0 every threshold holds, 1 one or more violated, 2 bad usage or input.
"""

from toolkit.gate.evaluate import Check, GateResult, evaluate, load_baseline
from toolkit.gate.metrics import KINDS, METRICS, get_metric
from toolkit.gate.policy import GatePolicy, Threshold, load_policy

__all__ = ["Check", "GatePolicy", "GateResult", "KINDS", "METRICS", "Threshold", "evaluate", "get_metric",
           "load_baseline", "load_policy"]
