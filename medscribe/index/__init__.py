"""The `index` stage: a ChromaDB index of training cases and knowledge documents, and the retriever.

    from medscribe.index import Retriever, build_index
    report = build_index(settings)                     # what `medscribe index` runs
    hits = Retriever.open(settings).search("...", k=3)  # what `ask` and `sft` call

Heavy libraries (chromadb, sentence-transformers, torch, bm25s) are imported inside functions, so
importing this package is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Retriever", "build_index", "BuildReport"]

if TYPE_CHECKING:  # pragma: no cover
    from medscribe.index.build import BuildReport, build_index
    from medscribe.index.retriever import Retriever


def __getattr__(name: str) -> Any:
    # Lazy: `from medscribe.index import Retriever` works without importing the submodules up front.
    if name == "Retriever":
        from medscribe.index.retriever import Retriever

        return Retriever
    if name in {"build_index", "BuildReport"}:
        from medscribe.index import build

        return getattr(build, name)
    raise AttributeError(name)
