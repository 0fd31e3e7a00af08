"""Chroma writes in a child process, so that they run while the next block is being encoded.

    from medscribe.index.writer import open_writer
    with open_writer(settings, collection, entries=len(todo), embedder=embedder) as writer:
        writer.submit(ids, embeddings, documents, metadatas)  # returns once the writer has the block
        writer.busy                                           # True while a block is being written
    # leaving the block waits for every write; a failed write raises RuntimeFailure

`open_writer` picks a `ProcessWriter` for large embedded builds and a `ThreadWriter` otherwise.

Why a process and not a thread: chromadb's Rust bindings hold the GIL for a whole `Collection.add` (measured
2026-12-01 with chromadb 1.5: a pure-Python thread stalls for the full 1.6 s of a 4,096-row add).
sentence-transformers dispatches every torch op from Python, so with a writer *thread* the encoder simply
stops while Chroma writes, and the two run one after the other. A child has its own interpreter and GIL.

Embedded indexes only (`PersistentClient`): a Chroma server already writes in its own process, and the HTTP
client waits on a socket without the GIL. While the child writes, the parent must not write to the same
index, and afterwards it must reopen its client (`store.reopen_client`): Chroma's local bindings keep the
HNSW graph they loaded per process, so a handle from before would not see the child's rows.

The child is `python -m medscribe.index.writer INDEX_DIR COLLECTION ROWS_PER_ADD`, not multiprocessing: spawn would
re-import the caller's main script, which breaks scripts and notebooks without a `__main__` guard.
Protocol: pickled blocks on the child's stdin (one pending at a time, so memory stays flat), one line per
block on its stdout: `ok N` or `error MESSAGE`. If the parent dies, the child sees EOF after the block it
is writing and exits: every finished block is on disk, so the next build resumes where this one stopped.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from medscribe.errors import RuntimeFailure

CLOSE_TIMEOUT_S = 120.0  # a block of 2,048 rows takes ~1 s to write; a stuck child is killed after this
PIN_ENV = "MEDSCRIBE_WRITER_CPU"
ADD_ROWS = 2048  # rows per Chroma `add` (its max batch is ~5461); a submitted block may hold more
# Entries from which an embedded build writes in a child process: its start (~1.5 s of imports) costs more
# than it saves on small updates.
PROCESS_WRITER_MIN = 4096


def _site_dirs() -> set[str]:
    import site

    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    return {str(Path(d).resolve()) for d in dirs}


def add_in_parts(collection, block: dict[str, Any], rows: int = ADD_ROWS) -> None:
    """`collection.add` of one block, cut into parts Chroma accepts (identical texts can make blocks long).

    `add`, not `upsert`: the build only writes ids the index lacks (and the writer lock keeps it so);
    upsert would look every id up first (~20 % slower).
    """
    for start in range(0, len(block["ids"]), rows):
        collection.add(**{key: values[start : start + rows] for key, values in block.items()})


class ProcessWriter:
    """A child process that `add`s blocks to one Chroma collection, one block ahead of the caller."""

    kind = "process"
    # (torch threads, threads while a block is being written) for the encoder, or None: set by open_writer.
    encoder_threads: tuple[int, int] | None = None

    def __init__(self, index_dir: str | Path, collection: str, rows_per_add: int = ADD_ROWS, cpu: int | None = None):
        """`cpu`: pin the child (and Chroma's threads) to this core, so it takes the one the encoder frees
        instead of preempting all of the encoder's threads (Linux; ignored elsewhere)."""
        import medscribe

        env = dict(os.environ, ANONYMIZED_TELEMETRY="False")
        env.pop(PIN_ENV, None)
        if cpu is not None:
            env[PIN_ENV] = str(cpu)
        # The child must import this very medscribe, also from a checkout that is not installed (but never
        # put site-packages itself in front of the standard library).
        package_root = str(Path(medscribe.__file__).resolve().parent.parent)
        if package_root not in _site_dirs():
            env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self._where = str(index_dir)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "medscribe.index.writer", str(index_dir), collection, str(rows_per_add)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._done = threading.Condition()
        self._submitted = 0
        self._acked = 0
        self._error: str | None = None
        self.written = 0  # rows the child has written
        self._reader = threading.Thread(target=self._read_acks, name="chroma-writer-acks", daemon=True)
        self._reader.start()

    @property
    def busy(self) -> bool:
        """A submitted block is not written yet."""
        with self._done:
            return self._acked < self._submitted and self._error is None

    def submit(self, ids: list[str], embeddings: Any, documents: list[str], metadatas: list[dict]) -> None:
        """Hand one block to the child (waiting first for the previous one) and return."""
        self.wait()
        block = {"ids": ids, "embeddings": embeddings, "documents": documents, "metadatas": metadatas}
        try:
            pickle.dump(block, self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._raise_dead()
        with self._done:
            self._submitted += 1

    def wait(self) -> None:
        """Block until every submitted block is written; RuntimeFailure if the child failed or died."""
        with self._done:
            while self._acked < self._submitted and self._error is None:
                self._done.wait()
            if self._error is not None:
                raise RuntimeFailure(f"{self._where}: Chroma write failed in the writer process: {self._error}")

    def close(self) -> None:
        """Wait for the writes, then let the child exit (EOF on its stdin)."""
        try:
            self.wait()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout=CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout=5)

    def _read_acks(self) -> None:
        for raw in self._proc.stdout:
            line = raw.decode("utf-8", "replace").strip()
            with self._done:
                if line.startswith("ok "):
                    self._acked += 1
                    self.written += int(line[3:])
                else:
                    self._error = line.removeprefix("error ") or "unreadable reply"
                self._done.notify_all()
        with self._done:  # EOF: the child exited; anything still pending will never be written
            if self._acked < self._submitted and self._error is None:
                self._error = f"the writer process exited (code {self._proc.wait()}) before finishing its block"
            self._done.notify_all()

    def _raise_dead(self) -> None:
        self._reader.join(timeout=5)
        detail = self._error or f"the writer process exited (code {self._proc.poll()})"
        raise RuntimeFailure(f"{self._where}: Chroma write failed in the writer process: {detail}")

    def __enter__(self) -> ProcessWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # the caller failed or was interrupted: let the block in flight finish, write nothing more
            self._shutdown()


class ThreadWriter:
    """The same interface, writing in a background thread: for a Chroma server and for small builds.

    With `HttpClient` the thread waits on a socket without the GIL, so it overlaps with encoding; embedded,
    it overlaps only where Chroma releases the GIL (small builds, where a child's start would cost more).
    """

    kind = "thread"
    encoder_threads = None  # a thread takes no core from the encoder

    def __init__(self, collection, rows_per_add: int = ADD_ROWS):
        from concurrent.futures import ThreadPoolExecutor

        self._collection = collection
        self._rows = rows_per_add
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chroma-writer")
        self._pending = None
        self._pending_rows = 0
        self.written = 0

    @property
    def busy(self) -> bool:
        return self._pending is not None and not self._pending.done()

    def submit(self, ids: list[str], embeddings: Any, documents: list[str], metadatas: list[dict]) -> None:
        self.wait()
        self._pending_rows = len(ids)
        block = {"ids": ids, "embeddings": embeddings, "documents": documents, "metadatas": metadatas}
        self._pending = self._pool.submit(add_in_parts, self._collection, block, self._rows)

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()  # re-raises a failed write here
            self.written += self._pending_rows

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown()

    def __enter__(self) -> ThreadWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._pool.shutdown(wait=True, cancel_futures=True)


def open_writer(settings, collection, entries: int, embedder, rows_per_add: int = ADD_ROWS):
    """A child process for large embedded builds (Chroma holds the GIL while it writes), else a thread."""
    mode = settings.index.writer
    if mode == "auto":
        mode = "process" if not settings.index.server_url and entries >= PROCESS_WRITER_MIN else "thread"
    if mode == "process" and not settings.index.server_url:
        # No spare core: the child gets the last one, which the encoder frees while a block is written.
        share = threads_while_writing(embedder)
        cpu = max(os.sched_getaffinity(0)) if share is not None and hasattr(os, "sched_getaffinity") else None
        writer = ProcessWriter(settings.paths.index, collection.name, rows_per_add, cpu=cpu)
        writer.encoder_threads = share
        return writer
    return ThreadWriter(collection, rows_per_add)


def threads_while_writing(embedder) -> tuple[int, int] | None:
    """(torch threads, threads while the writer process works) for a CPU encoder with no spare core, else None.

    torch takes every core by default; a writer process then preempts its threads, and every op waits for
    the slowest one (measured on 2 cores: +6 s of encoder CPU over 16k texts). One thread fewer while a block
    is written gives the child a core of its own (it is pinned to one, see `open_writer`): 16k MedQuAD
    questions in 27 s instead of 31 s.
    """
    import torch

    device = getattr(embedder.model, "device", None)
    if device is None or device.type != "cpu":
        return None  # a GPU encoder leaves the CPU cores to the writer
    threads = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return (threads, threads - 1) if 1 < threads and cores <= threads else None


def _serve(index_dir: str, collection_name: str, rows_per_add: int) -> int:
    """The child: add each block read from stdin; report `ok N` / `error MESSAGE` on the protocol stream."""
    # Keep the protocol on a private copy of stdout; anything else printing (Chroma, Rust) goes to stderr.
    # Ctrl-C reaches the whole process group: the parent handles it and closes our stdin, then we finish the
    # block in hand and exit (no half-written block, no second traceback on the user's terminal).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.environ.get(PIN_ENV) and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(os.environ[PIN_ENV])})  # Chroma's threads too: they inherit it
    reply = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    blocks = sys.stdin.buffer
    try:
        import chromadb

        from medscribe.index import store

        client = chromadb.PersistentClient(path=index_dir, settings=store.chroma_settings())
        collection = client.get_collection(collection_name, embedding_function=None)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it as a RuntimeFailure
        reply.write(f"error cannot open the collection: {type(exc).__name__}: {one_line(exc)}\n")
        return 1
    while True:
        try:
            block = pickle.load(blocks)
        except EOFError:
            return 0
        try:
            add_in_parts(collection, block, rows_per_add)
        except Exception as exc:  # noqa: BLE001
            # Chroma's messages name ids (content hashes) and limits, never the texts.
            reply.write(f"error {type(exc).__name__}: {one_line(exc)}\n")
            return 1
        reply.write(f"ok {len(block['ids'])}\n")


def one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1], sys.argv[2], int(sys.argv[3])))
