"""`medscribe chat`: an interactive terminal chat with conversation memory over the local model or any
OpenAI-compatible server (including `medscribe serve`).

    session = ChatSession(settings)                  # backend from ask.backend (local model or server)
    turn = session.ask("Очаг 5 мм в белом веществе")  # retrieve for this message, prompt with recent turns, answer
    session.history, session.reset(), session.save("chat.json"), session.k = 3

Each turn retrieves similar cases for the new message only (medscribe.ask.core.retrieve), and the prompt is
`medscribe.prompts.build_chat_messages`: the shared builder's system prompt and few-shot cases for this message,
then the recent turns (newest kept first, oldest dropped once `serve.chat_history_chars` is spent), then the new
message; so a model trained on multi-turn data sees the same format. Commands: /reset, /history, /save FILE,
/k N, /help, /quit. Answers are parsed like `ask` answers (strict JSON -> the result/answer field).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from medscribe.ask import core
from medscribe.ask.answers import parse_answer
from medscribe.ask.generation import Generation, Request
from medscribe.errors import RuntimeFailure

HELP = ("commands: /reset (forget the conversation), /history, /save FILE (the conversation as JSON), "
        "/k N (retrieved cases per turn), /quit")


class ChatSession:
    def __init__(self, settings: Any, *, backend: Any = None, retriever: Any = None):
        self.settings = settings
        self.task = settings.data.task
        self.k = core.effective_k(settings)
        self.budget = settings.serve.chat_history_chars
        self._backend = backend
        self._retriever = retriever
        self.history: list[dict[str, Any]] = []

    def backend(self) -> Any:
        if self._backend is None:
            self._backend = core.make_backend(self.settings)
        return self._backend

    def retriever(self) -> Any:
        if self._retriever is None and self.k > 0:
            from medscribe.index import Retriever

            self._retriever = Retriever.open(self.settings)
        return self._retriever

    def recent(self) -> list[dict[str, str]]:
        """The earlier turns that fit in the history budget (characters), oldest first, as chat messages."""
        kept: list[dict[str, Any]] = []
        used = 0
        for turn in reversed(self.history):
            size = len(turn["user"]) + len(turn["raw"])
            if used + size > self.budget:
                break
            kept.insert(0, turn)
            used += size
        out: list[dict[str, str]] = []
        for turn in kept:
            out += [{"role": "user", "content": turn["user"]}, {"role": "assistant", "content": turn["raw"]}]
        return out

    def ask(self, text: str) -> dict[str, Any]:
        from medscribe.prompts import build_chat_messages, render_user

        record = {"id": None, "input": text.strip(), "task": self.task}
        hits = core.retrieve(self.retriever() if self.k > 0 else None, [record], self.k,
                             self.settings.ask.filter_fields)[0]
        earlier = self.recent()
        messages = build_chat_messages(record, self.task, self.settings.prompt, hits, earlier)
        done: list[Generation] = []
        reasoning = self.settings.prompt.variant == "cot" and self.settings.prompt.json_answer
        self.backend().generate([Request(messages, self.task, reasoning)], lambda _i, g: done.append(g))
        generation = done[0]
        if generation.error:
            raise RuntimeFailure(f"chat: {generation.error}")
        parsed = parse_answer(generation.raw, self.task)
        turn = {
            "user": render_user(record, self.task, self.settings.prompt),
            "input": record["input"],
            "raw": generation.raw or "",
            "answer": parsed.prediction,
            "parse_ok": parsed.ok,
            "retrieved": [{"id": h.id, "score": round(float(h.score), 4)} for h in hits],
            "turns_in_prompt": len(earlier) // 2,
            "messages": messages,
        }
        self.history.append(turn)
        return turn

    def reset(self) -> None:
        self.history = []

    def save(self, path: str | Path) -> Path:
        from medscribe.io import atomic_write_json

        path = Path(path)
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_json(path, {"task": self.task, "k": self.k, "turns": self.history})


def run_chat(session: ChatSession, lines: Iterable[str], console: Any, prompt: Callable[[], None]) -> int:
    """The loop: each line is a message or a command. Returns the number of answered turns."""
    from rich.panel import Panel
    from rich.text import Text

    answered = 0
    for raw in lines:
        line = raw.strip()
        if not line:
            prompt()
            continue
        if line.startswith("/"):
            command, _, arg = line.partition(" ")
            arg = arg.strip()
            if command in ("/quit", "/exit"):
                break
            if command == "/reset":
                session.reset()
                console.print("conversation cleared")
            elif command == "/history":
                if not session.history:
                    console.print("(no turns yet)")
                for i, turn in enumerate(session.history, 1):
                    console.print(f"{i}. you: {turn['input']}", highlight=False, markup=False)
                    console.print(f"   assistant: {turn['answer']}", highlight=False, markup=False)
            elif command == "/save":
                if not arg:
                    console.print("usage: /save FILE")
                else:
                    console.print(f"saved {len(session.history)} turn(s) to {session.save(arg)}", highlight=False)
            elif command == "/k":
                if not arg.isdigit():
                    console.print("usage: /k N (0 = no retrieval)")
                else:
                    session.k = int(arg)
                    console.print(f"k = {session.k}")
            else:
                console.print(HELP)
            prompt()
            continue
        try:
            turn = session.ask(line)
        except RuntimeFailure as exc:
            console.print(f"[red]error:[/red] {exc}")
            prompt()
            continue
        answered += 1
        cases = ", ".join(f"{h['id']} ({h['score']:.2f})" for h in turn["retrieved"]) or "none"
        note = "" if turn["parse_ok"] else " · not valid JSON: raw text shown"
        console.print(Panel(Text(turn["answer"] or "(empty)"), title="assistant",
                            subtitle=Text(f"similar cases: {cases} · turns in prompt: {turn['turns_in_prompt']}{note}"),
                            subtitle_align="left"), highlight=False)
        prompt()
    return answered
