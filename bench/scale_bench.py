"""The whole pipeline at real size on this machine: wall time, rows/s and peak RSS of every stage.

    flock /tmp/medscribe-heavy.lock .venv/bin/python bench/scale_bench.py [MEDQUAD.jsonl.gz]
        [--report-rows 100000] [--ask-rows 10000] [--no-server] [--skip-qa] [--skip-report]

Two runs, each stage in a process of its own (so each peak RSS is that stage's alone):
- `qa`: the full MedQuAD set (16,407 pairs; the argument, $MEDSCRIBE_MEDQUAD or ../shared/data/medquad/, see
  bench/benchdata.py; skipped with a message when absent): data -> index -> sft prompts (every training row
  with one hybrid-retrieved case, tokenized: what `sft` does before its first step) -> ask -> eval.
- `report`: a synthetic chest X-ray export of --report-rows rows (tests/synthetic_reports.py): data -> index
  (embedded) -> index again into a Chroma server (`chroma run` on 127.0.0.1) -> sft prompts -> ask -> eval.
- `data` alone on a --data-rows export (200k by default).
`sft`/`ask` use the tiny random Llama of tests/kit.py, so the figures measure medscribe, not an LLM; ask
answers up to --ask-rows inputs in copy mode (retrieval, resume bookkeeping, files: no model) and a slice of
--generate-rows with the tiny model; eval scores the copy run with 1,000 bootstrap samples.
Targets: every stage completes; peak RSS of every stage <= 3 GB; the qa sft prompts (16k rows) <= 60 s.
The last line is the key figure; exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RSS_TARGET_MB = 3 * 1024
PROMPTS_TARGET_S = 60.0

CONFIG = """
[paths]
artifacts = "{root}"
data = "{root}/data"
index = "{root}/index"
sft = "{root}/sft"
ask = "{root}/ask"
eval = "{root}/eval"

[data]
task = "{task}"
inputs = ["{inputs}"]
columns = {columns}
group_by = "{group_by}"
test_per_group = {test_per_group}

[index]
embedding_model = "{minilm}"
device = "cpu"
hybrid = true
k = 1
{server}

[ask]
backend = "local"
local_model = "{model}"
max_new_tokens = 8
batch_size = 16
device = "cpu"

[sft]
backend = "hf"
base_model = "{model}"
rag_context = true
max_seq_length = 4096

[eval]
metrics = ["exact_match", "token_f1", "rouge", "bleu", "chrf"]
bootstrap_samples = 1000
"""


# -- one stage, in its own process ----------------------------------------------------------------------------


def child(stage: str, config: str, extra: str) -> None:
    """Run one stage; print one JSON line: rows, seconds, peak RSS (MB) of this process and its children."""
    from rich.console import Console

    from medscribe.settings import load_settings

    settings = load_settings(Path(config))
    quiet = Console(stderr=True, quiet=True)
    options = json.loads(extra or "{}")
    if stage in ("sft-prompts", "ask"):
        # Imported before the clock starts, as the table's footer says: torch + transformers take ~10 s to
        # import on this machine, which is not the stage's work (sft pays it once for training anyway).
        import transformers  # noqa: F401
    started = time.perf_counter()
    if stage == "data":
        from medscribe.data import run_data

        rows = run_data(settings, console=quiet).counts.get("rows_in")
    elif stage == "index":
        from medscribe.index import build_index

        rows = build_index(settings, show_progress=False).entries
    elif stage == "sft-prompts":
        from transformers import AutoTokenizer

        from medscribe.sft.dataset import tokenize_examples
        from medscribe.sft.train import training_examples

        run_dir = Path(settings.paths.sft) / "prompts"
        run_dir.mkdir(parents=True, exist_ok=True)
        examples = training_examples(settings, run_dir, None, reuse=False, is_main=True)
        tokenizer = AutoTokenizer.from_pretrained(settings.sft.base_model)
        train_examples, _stats = examples["train"]
        tokenize_examples(train_examples, tokenizer, settings.sft.max_seq_length)
        rows = len(train_examples)
    elif stage == "ask":
        from medscribe.ask import run_batch

        settings.ask.mode = options.get("mode", "generate")
        summary = run_batch(settings, options["input"], run=options["run"], limit=options.get("limit"),
                            console=quiet)
        rows = summary.get("count")
    elif stage == "eval":
        from medscribe.evaluate import run_eval

        result = run_eval(settings, [Path(p) for p in options["runs"]], name="scale", console=quiet)
        rows = next(iter(result.report["runs"].values()))["rows"]
    else:
        raise SystemExit(f"unknown stage {stage}")
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "seconds": seconds, "rss_mb": own, "child_rss_mb": kids}))


def run_stage(stage: str, config: Path, **options) -> dict:
    cmd = [sys.executable, __file__, "--child", stage, str(config), json.dumps(options)]
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"stage": stage, "ok": False, "error": " | ".join(tail), "wall": wall}
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {"stage": stage, "ok": True, "wall": wall, **figures}


# -- the runs -------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_chroma(path: Path) -> tuple[subprocess.Popen, str]:
    chroma = Path(sys.executable).with_name("chroma")
    port = free_port()
    proc = subprocess.Popen([str(chroma), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}"
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("chroma run did not start within 60 s")


def write_config(root: Path, **values) -> Path:
    from kit import minilm_path

    config = root / "medscribe.toml"
    config.write_text(CONFIG.format(root=root / "artifacts", minilm=minilm_path(), **values), encoding="utf-8")
    return config


def medquad_jsonl(source: Path, target: Path) -> Path:
    """MedQuAD as a plain JSONL export (benchdata.medquad_pairs gives the line-unique id)."""
    from benchdata import medquad_pairs

    with open(target, "w", encoding="utf-8") as out:
        for r in medquad_pairs(source):
            row = {"id": r["uid"], "question": r["question"], "answer": r["answer"],
                   "specialty": r.get("source") or "unknown"}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return target


def pipeline(root: Path, config: Path, args, server: bool = False) -> list[dict]:
    art = root / "artifacts"
    results = [run_stage("data", config)]
    results.append(run_stage("index", config))
    if server:
        proc, url = start_chroma(root / "chroma-server")
        try:
            text = config.read_text(encoding="utf-8").replace("k = 1\n", f'k = 1\nserver_url = "{url}"\n', 1)
            server_config = config.with_name("server.toml")
            server_config.write_text(text, encoding="utf-8")
            results.append({**run_stage("index", server_config), "stage": "index (Chroma server)"})
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    results.append(run_stage("sft-prompts", config))
    test = art / "data" / "test.jsonl"
    results.append({**run_stage("ask", config, input=str(test), run="copy", mode="copy", limit=args.ask_rows),
                    "stage": "ask (copy)"})
    results.append({**run_stage("ask", config, input=str(test), run="tiny", limit=args.generate_rows),
                    "stage": "ask (tiny model)"})
    results.append(run_stage("eval", config, runs=[str(art / "ask" / "copy")]))
    return results


def tokenizer_corpus(source: Path | None) -> list[str]:
    """Texts like the run's prompts: MedQuAD pairs, synthetic reports, the system prompts."""
    import random

    from benchdata import medquad_pairs
    from synthetic_reports import make_row

    from medscribe.prompts import JSON_INSTRUCTIONS, SYSTEM_PROMPTS

    texts = [*SYSTEM_PROMPTS.values(), *JSON_INSTRUCTIONS.values()]
    if source is not None:
        for i, r in enumerate(medquad_pairs(source)):
            if i >= 4000:
                break
            texts.append(f"{r['question']}\n{r['answer']}")
    rng, previous = random.Random(0), []
    texts += [" ".join(make_row(i, rng, previous)) for i in range(4000)]
    return texts


def tiny_model(tmp: Path, source: Path | None) -> Path:
    """The tiny test Llama with a tokenizer trained on the run's kind of text (8k tokens): the default test
    tokenizer (512 tokens from a few lines) makes ~3x a real model's tokens of a MedQuAD prompt, which would
    measure a tokenizer nobody uses. Prints its tokens per character next to SmolLM2's when that is here."""
    from kit import build_tiny_causal_lm
    from transformers import AutoTokenizer

    corpus = tokenizer_corpus(source)
    model = build_tiny_causal_lm(tmp / "tiny-llama", max_positions=16384, corpus=corpus, vocab_size=8192)
    sample = corpus[-200:] + corpus[20:220]
    chars = sum(map(len, sample))
    ratios = {"tiny test model": model}
    smollm = ROOT / "artifacts" / "models" / "SmolLM2-135M-Instruct"
    if (smollm / "tokenizer.json").is_file():
        ratios["SmolLM2-135M"] = smollm
    for name, path in ratios.items():
        tok = AutoTokenizer.from_pretrained(path)
        tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in sample)
        print(f"tokenizer of the {name}: {tokens / chars:.3f} tokens per character on the run's texts")
    return model


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "")
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", default=None, help="MedQuAD jsonl.gz (default: bench/benchdata.py)")
    parser.add_argument("--report-rows", type=int, default=100_000)
    parser.add_argument("--ask-rows", type=int, default=10_000, help="inputs answered in copy mode")
    parser.add_argument("--generate-rows", type=int, default=200, help="inputs answered by the tiny model")
    parser.add_argument("--data-rows", type=int, default=200_000, help="rows of the data-stage-only run (0: skip)")
    parser.add_argument("--no-server", action="store_true", help="skip the Chroma-server index build")
    parser.add_argument("--skip-qa", action="store_true")
    parser.add_argument("--skip-report", action="store_true")
    args = parser.parse_args()

    from benchdata import medquad_path, skip_message
    from synthetic_reports import COLUMNS, write_export

    table: list[tuple[str, dict]] = []
    prompts_s = None
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        tmp = Path(tmp)
        # A long context: MedQuAD prompts with a retrieved case run to thousands of the tiny tokenizer's tokens.
        source = None if args.skip_qa else medquad_path(args.data)
        model = tiny_model(tmp, source)
        if source is None and not args.skip_qa:
            print(skip_message("the qa run of bench/scale_bench.py"))
        if source is not None:
            root = tmp / "qa"
            root.mkdir()
            jsonl = medquad_jsonl(source, root / "medquad.jsonl")
            columns = '{id = "id", question = "question", answer = "answer", specialty = "specialty"}'
            config = write_config(root, task="qa", inputs=jsonl, columns=columns, group_by="specialty",
                                  test_per_group=60, server="", model=model)
            for r in pipeline(root, config, args):
                table.append(("qa", r))
                if r["stage"] == "sft-prompts" and r["ok"]:
                    prompts_s = r["seconds"]
        if not args.skip_report:
            root = tmp / "report"
            root.mkdir()
            csv = write_export(root / "cxr.csv", rows=args.report_rows, seed=1)
            columns = "{" + ", ".join(f'{k} = "{v}"' for k, v in COLUMNS.items()) + "}"
            config = write_config(root, task="report", inputs=csv, columns=columns, group_by="modality",
                                  test_per_group=max(100, args.ask_rows // 2), server="", model=model)
            for r in pipeline(root, config, args, server=not args.no_server):
                table.append((f"report {args.report_rows // 1000}k", r))
        if args.data_rows:  # `data` alone at the size of a large export
            root = tmp / "data-only"
            root.mkdir()
            csv = write_export(root / "cxr.csv", rows=args.data_rows, seed=2)
            columns = "{" + ", ".join(f'{k} = "{v}"' for k, v in COLUMNS.items()) + "}"
            config = write_config(root, task="report", inputs=csv, columns=columns, group_by="modality",
                                  test_per_group=1000, server="", model=model)
            table.append((f"report {args.data_rows // 1000}k", run_stage("data", config)))

    print(f"{'run':<12} {'stage':<24} {'rows':>8} {'wall s':>8} {'rows/s':>9} {'peak RSS MB':>12}")
    worst_rss = 0.0
    failed = []
    for run, r in table:
        if not r["ok"]:
            failed.append(f"{run} {r['stage']}")
            print(f"{run:<12} {r['stage']:<24} FAILED: {r['error']}")
            continue
        rss = max(r["rss_mb"], r["child_rss_mb"])
        worst_rss = max(worst_rss, rss)
        rate = (r["rows"] or 0) / r["seconds"] if r["seconds"] else 0.0
        print(f"{run:<12} {r['stage']:<24} {r['rows'] or 0:>8} {r['seconds']:>8.1f} {rate:>9.0f} {rss:>12.0f}")
    print("(seconds: inside the stage, after imports; peak RSS: the stage's process or its largest child)")
    ok = not failed and worst_rss <= RSS_TARGET_MB and (prompts_s is None or prompts_s <= PROMPTS_TARGET_S)
    prompts = "not run (no MedQuAD)" if prompts_s is None else f"{prompts_s:.1f} s (<= {PROMPTS_TARGET_S:.0f})"
    print(f"{'PASS' if ok else 'FAIL'}: {len(table) - len(failed)}/{len(table)} stages completed"
          f"{' (failed: ' + ', '.join(failed) + ')' if failed else ''}; peak RSS {worst_rss:.0f} MB "
          f"(<= {RSS_TARGET_MB}); qa sft prompts for 16k rows {prompts}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
