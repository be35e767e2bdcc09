"""MIA-SafeCompress (Zhu, Wang & Han, ASE'22, §4.3): safety-test-driven dynamic sparse training.

Public API::

    from toolkit.select.safecompress import MembershipData, SafeCompress, SafeCompressConfig, safecompress

    data = MembershipData.from_split(dataset, split)          # the four halves of SafeCompress Table 1
    est = SafeCompress(SafeCompressConfig(density=0.05, regularizer="re2")).fit(model, data)
    est.result_.model        # ordinary torch / tf-keras model, 5% of its Linear/Conv weights non-zero
    est.result_.history      # per round: loss, task / MIA accuracy, the 4 candidates' TM-scores, the winner

    result = safecompress(model_spec, data, {"density": 0.1}, framework="keras")   # functional form

For the selection engine: :data:`SAFECOMPRESS_METHODS` (``safecompress``, ``safecompress_re1``,
``safecompress_re2``) describes the variants like :class:`toolkit.compress.Method` does. See
``docs/safecompress.md`` for how each stage maps to the paper. Importing this package imports no framework.
"""

from toolkit.select.safecompress.attacker import SimulatedAttacker, tm_score
from toolkit.select.safecompress.config import SafeCompressConfig, parse_config
from toolkit.select.safecompress.data import PARTS, MembershipData, PartOutputs
from toolkit.select.safecompress.engine import SafeCompress, safecompress
from toolkit.select.safecompress.masks import GROWERS, PRUNERS, erk_densities, kept_counts, random_masks, update_masks
from toolkit.select.safecompress.methods import SAFECOMPRESS_METHODS, SafeCompressMethod
from toolkit.select.safecompress.result import CandidateRecord, RoundRecord, SafeCompressResult

__all__ = ["GROWERS", "PARTS", "PRUNERS", "SAFECOMPRESS_METHODS", "CandidateRecord", "MembershipData", "PartOutputs",
           "RoundRecord", "SafeCompress", "SafeCompressConfig", "SafeCompressMethod", "SafeCompressResult",
           "SimulatedAttacker", "erk_densities", "kept_counts", "parse_config", "random_masks", "safecompress",
           "tm_score", "update_masks"]
