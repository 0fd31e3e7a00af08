"""The `medscribe-rag` model: the whole medscribe answer path behind one chat-completions model name.

A client sends only the finding (report task) or the question (qa) as the last user message, and optionally
`extra_body={"medscribe": {"organ": ..., "modality": ..., "specialty": ..., "task": ..., "k": ...}}`. The server
retrieves similar cases (medscribe.ask.core.retrieve), builds the prompt with the shared builder
(medscribe.ask.core.build_request -> medscribe.prompts), generates with the tuned adapter (the base model when
none is served), parses the strict JSON answer (medscribe.ask.core.result_row -> ask.answers.parse_answer) and
answers with that JSON as the message content:

    {"result": "...", "citations": ["case-7", ...]}            # report: the retrieved cases the prompt showed
    {"answer": "...", "citations": ["q-anemia"]}                # qa: the ids the model cited, among those shown

plus a `medscribe` object beside `choices`: retrieved ids/scores/texts, `parse_ok`, `repaired`, `attempts`. An
answer that does not parse is asked again with sampling (`serve.schema_retries` times); if none parses, the
content is still JSON (`{"result": <the raw text>, ...}`) with `parse_ok: false`, never free text. `ask.mode`
copy / copy_or_generate apply as in `medscribe ask` (a copied answer needs no model).
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import Future
from typing import Any

from medscribe.ask import core
from medscribe.ask.generation import Generation
from medscribe.schemas import ANSWER_TEXT_FIELD, Hit


class RetrievalBatcher:
    """Retrievals that arrive while one runs are done together in one `core.retrieve` call (one embedding batch,
    one Chroma query), like generation is batched: under concurrent requests one at a time would make the
    engine's batches trickle in one by one. One worker thread owns the retriever."""

    def __init__(self, front: RagFrontEnd):
        self.front = front
        self._pending: list[tuple[dict[str, Any], int, Future]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.batch_sizes: list[int] = []

    def search(self, record: dict[str, Any], k: int) -> list[Hit]:
        future: Future = Future()
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="medscribe-retrieval", daemon=True)
                self._thread.start()
            self._pending.append((record, k, future))
            self._cond.notify()
        return future.result()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                batch, self._pending = self._pending, []
            self.batch_sizes.append(len(batch))
            for k in {k for _, k, _ in batch}:
                items = [(record, future) for record, kk, future in batch if kk == k]
                try:
                    retriever = self.front.retriever()
                    found = core.retrieve(retriever, [r for r, _ in items], k, self.front.settings.ask.filter_fields)
                except Exception as exc:  # these requests fail (500), the worker goes on
                    for _, future in items:
                        future.set_exception(exc)
                    continue
                for (_, future), hits in zip(items, found, strict=True):
                    future.set_result(hits)


class RagFrontEnd:
    def __init__(self, settings: Any, retriever: Any = None):
        self.settings = settings
        self.k = core.effective_k(settings)
        self._retriever = retriever
        self._lock = threading.Lock()  # opening the retriever once, whichever thread asks first
        self.batcher = RetrievalBatcher(self)

    def retriever(self) -> Any:
        with self._lock:
            if self._retriever is None and self.k > 0:
                self._retriever = core.open_retriever(self.settings)
            return self._retriever

    def prepare(self, text: str, options: Any) -> dict[str, Any]:
        """Retrieve (batched with concurrent requests) and build the prompt; blocking: run it in a worker thread.
        Returns the plan of the answer."""
        opts = options.model_dump() if options is not None else {}
        task = opts.get("task") or self.settings.data.task
        record = {"id": None, "input": text.strip(), "task": task,
                  **{f: opts.get(f) for f in ("organ", "modality", "specialty")}}
        k = opts["k"] if opts.get("k") is not None else self.k
        hits = self.batcher.search(record, k) if k > 0 else []
        case = core.case_to_copy(hits, self.settings)
        copied = self.settings.ask.mode == "copy" or case is not None
        request = None if copied else core.build_request(record, hits, self.settings)
        return {"record": record, "hits": hits, "task": task, "case": case, "copied": copied,
                "messages": request.messages if request else None}

    def answer(self, plan: dict[str, Any], raw: str | None, prompt_tokens: int = 0, completion_tokens: int = 0,
               attempts: int = 1) -> dict[str, Any]:
        """The strict JSON answer for a generated (or copied) raw text."""
        task, hits = plan["task"], plan["hits"]
        if plan["copied"]:
            generation = core.copy_generation(plan["case"], task)
        else:
            generation = Generation(raw=raw, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        row = core.result_row(plan["record"], hits, generation, task, copied_from=plan["case"] if plan["copied"]
                              else None, copied=plan["copied"] and plan["case"] is not None)
        if row["error"]:  # copy mode with nothing to copy
            raise LookupError(row["error"])
        content = {k: v for k, v in (row["parsed"] or {}).items() if v is not None}
        content.setdefault(ANSWER_TEXT_FIELD[task], row["prediction"])
        content["citations"] = citations(task, content, hits)
        return {
            "content": json.dumps(content, ensure_ascii=False),
            "parse_ok": row["parse_ok"],
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "medscribe": {
                "task": task,
                "retrieved": [{"id": h.id, "score": round(float(h.score), 6), "text": h.text, "answer": h.answer}
                              for h in hits],
                "parse_ok": row["parse_ok"],
                "parse_error": row["parse_error"],
                "repaired": row["repaired"],
                "copied_from": row["copied_from"],
                "attempts": attempts,
            },
        }


def citations(task: str, content: dict[str, Any], hits: list[Hit]) -> list[str]:
    """qa: the model's citations that name a shown hit (an invented id is dropped); report: the shown cases."""
    shown = [h.id for h in hits]
    if task == "qa":
        cited = content.get("citations") or []
        return [c for c in cited if isinstance(c, str) and c in shown]
    return shown
