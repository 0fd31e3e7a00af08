"""`medscribe chat`: an interactive terminal chat with conversation memory. Run `medscribe chat --help`.

Thin: parses flags, loads settings, runs `medscribe.serve.chat` on stdin (a terminal or a pipe).
"""

import typer

from medscribe.commands._common import console, handle_errors, load_settings, setup_logging


@handle_errors
def command(
    ctx: typer.Context,
    backend: str | None = typer.Option(None, "--backend", help="local (model + adapter) or openai (a server)."),
    base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible server (.../v1), e.g. medscribe "
                                        "serve's."),
    model: str | None = typer.Option(None, "--model", help="Model name on the server (e.g. medscribe-tuned)."),
    local_model: str | None = typer.Option(None, "--local-model", help="HF folder or hub id (local backend)."),
    adapter: str | None = typer.Option(None, "--adapter", help="PEFT adapter folder (local backend)."),
    no_adapter: bool = typer.Option(False, "--no-adapter", help="The base model without the adapter."),
    k: int | None = typer.Option(None, "--k", min=0, help="Retrieved cases per turn (0 = none; /k N changes it)."),
    task: str | None = typer.Option(None, "--task", help="report or qa (default: data.task)."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", min=1),
    temperature: float | None = typer.Option(None, "--temperature", min=0.0),
    history_chars: int | None = typer.Option(None, "--history-chars", min=0,
                                             help="Earlier turns kept within this many characters."),
) -> None:
    """Chat with the assistant: each message retrieves similar cases; recent turns are remembered."""
    import sys

    from medscribe.errors import UsageError

    setup_logging(ctx)
    if adapter and no_adapter:
        raise UsageError("chat: --adapter and --no-adapter exclude each other")
    flags = {"ask": {"backend": backend, "base_url": base_url, "model": model, "local_model": local_model,
                     "adapter": adapter, "k": k, "max_new_tokens": max_new_tokens, "temperature": temperature},
             "data": {"task": task}, "serve": {"chat_history_chars": history_chars}}
    settings = load_settings(ctx, flags)
    if no_adapter:
        settings.ask.adapter = None
    from medscribe.serve.chat import HELP, ChatSession, run_chat

    session = ChatSession(settings)
    interactive = sys.stdin.isatty()
    where = settings.ask.base_url if settings.ask.backend == "openai" else settings.ask.local_model
    console.print(f"medscribe chat · {settings.ask.backend} {where} · task {session.task} · k {session.k}",
                  highlight=False)
    console.print(HELP)

    def prompt() -> None:
        if interactive:
            console.print("[bold]you>[/bold] ", end="")

    def lines():
        if not interactive:  # a pipe: one message or command per line
            yield from iter(sys.stdin.readline, "")
            return
        while True:
            try:
                yield input()  # line editing in a terminal
            except EOFError:
                return

    prompt()
    run_chat(session, lines(), console, prompt)
