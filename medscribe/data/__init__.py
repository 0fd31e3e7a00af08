"""The `data` stage: raw exports -> anonymized, de-duplicated, leak-free splits + index corpus + manifest.

    from medscribe.data import run_data, run_phi_audit
    result = run_data(settings)                  # DataResult: counts, splits, files, manifest
    findings = run_phi_audit(["export.csv"], report_path)

Modules: ingest (files -> frames), clean (mapping, normalization, validation), anonymize (medscribe.phi),
dedup, splits, leakage, outputs, manifest, audit (--phi-audit), summary (rich tables), pipeline (run_data).
"""

from medscribe.data.audit import run_phi_audit
from medscribe.data.pipeline import DataResult, run_data

__all__ = ["DataResult", "run_data", "run_phi_audit"]
