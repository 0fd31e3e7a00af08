"""`medscribe index`: build/update the retrieval index, or query it to check what it returns.

    medscribe index                                  # corpus.jsonl from `medscribe data` + index.knowledge
    medscribe index --knowledge guidelines/ --prune  # also chunk documents; drop rows gone from the sources
    medscribe index --query "hypodense liver lesion" --k 5 --filter organ=liver

With only `--query` the existing index is queried (nothing is rebuilt); with `--corpus`, `--knowledge` or
`--prune` as well, it is updated first.
"""

from pathlib import Path

import typer

from medscribe.commands._common import console, handle_errors, load_settings


def parse_filters(items: list[str] | None) -> dict | None:
    """`key=value` flags -> a filter dict; a repeated key means any of its values; numbers/booleans typed."""
    from medscribe.errors import UsageError

    if not items:
        return None
    import json

    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--filter: expected key=value, got '{item}'")
        try:
            value = (
                json.loads(raw) if raw in {"true", "false"} or raw.lstrip("-").replace(".", "", 1).isdigit() else raw
            )
        except json.JSONDecodeError:
            value = raw
        key = key.strip()
        if key in out:
            out[key] = (out[key] if isinstance(out[key], list) else [out[key]]) + [value]
        else:
            out[key] = value
    return out


@handle_errors
def command(
    ctx: typer.Context,
    corpus: Path | None = typer.Option(
        None, "--corpus", help="corpus.jsonl to index (default: paths.data/corpus.jsonl)."
    ),
    knowledge: list[str] | None = typer.Option(
        None, "--knowledge", help="Knowledge file, folder or glob (TXT/MD/HTML/PDF/DOCX); repeatable."
    ),
    prune: bool = typer.Option(False, "--prune", help="Delete index entries whose rows/documents are gone."),
    query: str | None = typer.Option(None, "--query", "-q", help="Query the index and print the hits."),
    k: int | None = typer.Option(None, "--k", "-k", min=0, help="Hits per query (default: index.k)."),
    filters: list[str] | None = typer.Option(None, "--filter", help="Metadata filter key=value; repeatable."),
    model: str | None = typer.Option(None, "--model", help="Embedding model: local path or cached hub id."),
    collection: str | None = typer.Option(None, "--collection", help="Chroma collection name."),
    server_url: str | None = typer.Option(None, "--server-url", help="Chroma server URL (default: embedded)."),
    hybrid: bool | None = typer.Option(None, "--hybrid/--no-hybrid", help="Fuse BM25 with dense search."),
    threshold: float | None = typer.Option(None, "--threshold", help="Drop hits below this cosine similarity."),
    siblings: int | None = typer.Option(None, "--siblings", min=0, help="Join N neighbouring chunks to a hit."),
    rerank_model: str | None = typer.Option(None, "--rerank-model", help="CrossEncoder path to rerank hits."),
) -> None:
    """Build/update the retrieval index (ChromaDB) or query it."""
    flags = {
        "index": {
            "embedding_model": model,
            "collection": collection,
            "server_url": server_url,
            "hybrid": hybrid,
            "threshold": threshold,
            "siblings": siblings,
            "rerank_model": rerank_model,
            "knowledge": list(knowledge) if knowledge else None,
        }
    }
    settings = load_settings(ctx, flags)
    filter_dict = parse_filters(filters)
    build = query is None or corpus is not None or bool(knowledge) or prune
    from medscribe.index import views

    if build:
        from medscribe.index import build_index

        report = build_index(settings, corpus=corpus, knowledge=list(knowledge) if knowledge else None, prune=prune)
        views.print_build_report(console, settings, report)
    if query is not None:
        from medscribe.index import Retriever

        hits = Retriever.open(settings).search(query, k=k, filters=filter_dict)
        views.print_hits(console, query, hits)
