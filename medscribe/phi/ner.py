"""Optional neural name tagger (`data.phi.ner = true`): natasha's Russian NER, run on top of the rules.

    from medscribe.phi.ner import NameTagger
    NameTagger().find_names(["Пациентку осмотрел Сидоренко."])  # [[(19, 28, 'NAME')]]

It needs the `natasha` package (its models ship inside PyPI wheels, nothing is downloaded at run time).
"""

from __future__ import annotations

from medscribe.errors import UsageError

Span = tuple[int, int, str]


def _eponym(text: str, span) -> bool:
    """The model tags "болезни Паркинсона" as a person; the rules' eponym lists veto that."""
    from medscribe.phi.rules_ru import _is_eponym_context, _is_eponym_lemma

    first = span.text.split()[0]
    return _is_eponym_lemma(first) or _is_eponym_context(text, span.start)


class NameTagger:
    def __init__(self) -> None:
        try:
            from natasha import NewsEmbedding, NewsNERTagger, Segmenter
        except ImportError:
            raise UsageError(
                "data.phi.ner: needs the natasha package (pip install natasha); or set data.phi.ner = false"
            ) from None
        self._segmenter = Segmenter()
        self._tagger = NewsNERTagger(NewsEmbedding())

    def find_names(self, texts: list[str]) -> list[list[Span]]:
        from natasha import Doc

        out: list[list[Span]] = []
        for text in texts:
            if not any("\u0400" <= ch <= "\u04ff" for ch in text):
                out.append([])  # the model is Russian-only; English names stay with the rules
                continue
            doc = Doc(text)
            doc.segment(self._segmenter)
            doc.tag_ner(self._tagger)
            out.append([(s.start, s.stop, "NAME") for s in doc.spans if s.type == "PER" and not _eponym(text, s)])
        return out
