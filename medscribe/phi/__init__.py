"""PHI de-identification for English and Russian clinical text: detect, then tag or pseudonymize.

    from medscribe.phi import Scrubber, audit_texts
    scrubber = Scrubber.from_settings(settings.data.phi)      # or Scrubber() for tag mode defaults
    clean = scrubber.scrub_texts(["Пациентка Петрова А.С., тел. 8 912 345-67-89"])
    scrubber.report()   # counts only: by_type, by_language, by_language_and_type, texts_scanned, ...
    audit_texts(clean)  # PhiFinding(row, type, start, end) for whatever still looks like PHI

Detection is rule-based and batched (see `medscribe.phi.detect`); measured quality and speed are in
docs/phi.md and `bench/phi_bench.py`. The report and findings never contain PHI values, only counts/positions.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from medscribe.errors import UsageError
from medscribe.phi.detect import DETECTORS, PHI_TYPES, detect_batch, language_of

if TYPE_CHECKING:
    from medscribe.settings import PhiSection

__all__ = ["PHI_TYPES", "PhiFinding", "Scrubber", "audit_texts"]

Mode = Literal["tag", "pseudonym", "keep"]
SALT_MISSING = "data.phi.salt: pseudonym mode needs a salt; set MEDSCRIBE_DATA__PHI__SALT"


@dataclass(frozen=True)
class PhiFinding:
    """Where PHI was found: row index, type and character offsets. Never the value itself."""

    row: int
    type: str
    start: int
    end: int


class Scrubber:
    """Replaces PHI in batches of texts and keeps count (per type and language) of what it replaced."""

    def __init__(
        self,
        mode: Literal["tag", "pseudonym"] = "tag",
        per_type: dict[str, Mode] | None = None,
        salt: str | bytes | None = None,
        ner: bool = False,
        enabled: bool = True,
    ):
        per_type = dict(per_type or {})
        unknown = sorted(set(per_type) - set(PHI_TYPES))
        if unknown:
            raise UsageError(
                f"data.phi.per_type: unknown PHI type(s) {', '.join(unknown)}; known: {', '.join(PHI_TYPES)}"
            )
        self.mode = mode
        self.enabled = enabled
        self.modes: dict[str, Mode] = {t: per_type.get(t, mode) for t in PHI_TYPES}
        self.ner = ner
        self._surrogates = None
        if enabled and "pseudonym" in self.modes.values():
            if not salt:
                raise UsageError(SALT_MISSING)
            from medscribe.phi.replace import Surrogates

            self._surrogates = Surrogates(salt.encode("utf-8") if isinstance(salt, str) else salt)
        self._ner_model = None
        if enabled and ner:
            from medscribe.phi.ner import NameTagger

            self._ner_model = NameTagger()
        self._by_type: Counter[str] = Counter()
        self._by_language: Counter[str] = Counter()
        self._by_language_type: Counter[str] = Counter()  # "ru.NAME": flat keys, so reports of processes sum
        self._scanned = 0
        self._changed = 0
        self._paths_scanned = 0
        self._paths_changed = 0
        self._path_types: Counter[str] = Counter()

    @classmethod
    def from_settings(cls, section: PhiSection) -> Scrubber:
        salt = section.salt.get_secret_value() if section.salt is not None else None
        return cls(
            mode=section.mode, per_type=dict(section.per_type), salt=salt, ner=section.ner, enabled=section.enabled
        )

    def find(self, texts: list[str]) -> list[list[tuple[int, int, str]]]:
        """Merged PHI spans `(start, end, type)` per text, rules plus the optional NER model."""
        spans = detect_batch(texts)
        if self._ner_model is not None:
            from medscribe.phi.detect import merge_spans

            extra = self._ner_model.find_names(texts)
            spans = [merge_spans(a + b, t) if b else a for a, b, t in zip(spans, extra, texts, strict=True)]
        return spans

    def scrub_texts(self, texts: list[str]) -> list[str]:
        texts = ["" if t is None else str(t) for t in texts]
        if not self.enabled:
            self._scanned += len(texts)  # the report's "enabled": false says nothing was removed
            return texts
        found = self.find(texts)
        self._scanned += len(texts)
        out = list(texts)
        for row in [i for i, spans in enumerate(found) if spans]:  # only the rows with PHI need Python work
            text, spans = texts[row], found[row]
            lang = language_of(text)
            pieces, cursor = [], 0
            for start, end, kind in spans:
                mode = self.modes.get(kind, self.mode)
                if mode == "keep":
                    continue
                pieces.append(text[cursor:start])
                pieces.append(self._replacement(text[start:end], kind, mode))
                cursor = end
                self._by_type[kind] += 1
                self._by_language[lang] += 1
                self._by_language_type[f"{lang}.{kind}"] += 1
            pieces.append(text[cursor:])
            new = "".join(pieces)
            if new != text:
                self._changed += 1
            out[row] = new
        return out

    def scrub_text(self, text: str) -> str:
        return self.scrub_texts([text])[0]

    def scrub_paths(self, paths: list[str]) -> list[str]:
        """File paths (relative, `/`-separated) with PHI in their names replaced by tags (`[NAME]_[DATE].csv`).

        Always tags, also in pseudonym mode (a surrogate in a file label would look like a real patient's file);
        `keep` per type is honoured. See `medscribe.phi.paths`."""
        from medscribe.phi.paths import path_spans

        out = []
        for path in paths:
            path = "" if path is None else str(path)
            if not self.enabled:
                out.append(path)
                continue
            pieces, cursor = [], 0
            for start, end, kind in path_spans(path):
                if self.modes.get(kind) == "keep":
                    continue
                pieces.append(path[cursor:start])
                pieces.append(f"[{kind}]")
                cursor = end
                self._path_types[kind] += 1
            pieces.append(path[cursor:])
            new = "".join(pieces)
            self._paths_scanned += 1
            self._paths_changed += new != path
            out.append(new)
        return out

    def _replacement(self, value: str, kind: str, mode: Mode) -> str:
        if mode == "pseudonym" and self._surrogates is not None:
            return self._surrogates.replace(value, kind)
        return f"[{kind}]"

    def pseudonymize_value(self, value: str, phi_type: str = "NAME") -> str:
        """A whole PHI column cell (e.g. patient name): surrogate in pseudonym mode, else the type tag."""
        if phi_type not in PHI_TYPES:
            raise UsageError(f"data.phi.columns: unknown PHI type {phi_type}; known: {', '.join(PHI_TYPES)}")
        value = "" if value is None else str(value)
        if not value.strip() or not self.enabled or self.modes.get(phi_type) == "keep":
            return value
        self._by_type[phi_type] += 1
        self._by_language[language_of(value)] += 1
        self._by_language_type[f"{language_of(value)}.{phi_type}"] += 1
        if self._surrogates is not None and self.modes.get(phi_type) != "tag":
            return self._surrogates.replace(value.strip(), phi_type)
        return f"[{phi_type}]"

    def report(self) -> dict:
        """Counts only, never values: safe to write into manifests and logs."""
        report = {
            "enabled": self.enabled,
            "by_type": dict(sorted(self._by_type.items())),
            "by_language": dict(sorted(self._by_language.items())),
            "by_language_and_type": dict(sorted(self._by_language_type.items())),
            "texts_scanned": self._scanned,
            "texts_changed": self._changed,
            "mode": self.mode,
            "per_type": {t: m for t, m in self.modes.items() if m != self.mode},
            "detectors": [d.name for d in DETECTORS] + (["ner_names_ru"] if self._ner_model is not None else []),
        }
        if self._paths_scanned:
            report["paths"] = {"scanned": self._paths_scanned, "changed": self._paths_changed,
                               "by_type": dict(sorted(self._path_types.items()))}
        if self._surrogates is not None:
            # Values that had no surrogate form fell back to the tag: visible here, never silent.
            report["surrogate_fallbacks"] = self._surrogates.fallbacks
        return report


def audit_texts(texts: list[str]) -> list[PhiFinding]:
    """Positions of everything that looks like PHI (e.g. to check a scrubbed dataset); never the values."""
    texts = ["" if t is None else str(t) for t in texts]
    return [
        PhiFinding(row=row, type=kind, start=start, end=end)
        for row, spans in enumerate(detect_batch(texts))
        for start, end, kind in spans
    ]
