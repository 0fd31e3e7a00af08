"""`manifest.json`: everything needed to tell two data builds apart and to trust one.

Config hash (data + prompt settings, secrets excluded), input file hashes, row counts per step, per split
and per group, the split audit (`splits_audit`: split key, what is shared across splits, the most frequent
answers per split), the PHI report (counts only), the leakage report, package versions and every fallback taken.
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from typing import Any

from medscribe.io import sha256_text

PACKAGES = ("medscribe", "polars", "rapidfuzz", "datasets", "pyarrow", "fastexcel")


def config_hash(settings: Any) -> str:
    relevant = {
        "data": settings.data.model_dump(mode="json", exclude={"phi": {"salt"}}),
        "prompt": settings.prompt.model_dump(mode="json"),
    }
    return sha256_text(json.dumps(relevant, sort_keys=True, ensure_ascii=False))


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def build_manifest(**parts: Any) -> dict:
    return {"schema": "medscribe.data.manifest/1", **parts, "versions": package_versions()}
