"""The demo DPO experiment: SFT -> ask on the train split -> eval -> pairs -> DPO -> ask test -> eval vs SFT.

    .venv/bin/python bench/dpo_demo.py                          # the full experiment (idle machine, ~20-30 min)
    .venv/bin/python bench/dpo_demo.py --sft-run pipeline       # reuse the SFT adapter `make demo` trained
    .venv/bin/python bench/dpo_demo.py --tiny --out /tmp/dpo    # a minutes-long smoke run (proves the wiring)

Every step is the real CLI (`medscribe -c examples/demo.toml ...`, SmolLM2-135M from `make demo-model`; data and
index from `make demo`, made here when missing):
1. `sft --run <prefix>sft` (the demo's SFT settings), unless `--sft-run` names an existing run;
2. `ask --input train.jsonl --adapter <sft>` and `eval` of it: the SFT model's own answers on training inputs
   (ask never retrieves a row's own case); the pairs never come from the test split;
3. `sft --method dpo --init-adapter <sft> --pairs-from-eval <that eval>`: chosen = reference, rejected = the
   model's answer where `--metric` < `--threshold` (DPO's reference = the SFT model);
4. `ask --input test.jsonl` with the SFT adapter and with the DPO adapter, then `eval SFT DPO --baseline SFT`:
   the paired bootstrap of every metric (delta, 95% interval, p-value), DPO minus SFT.
The summary (pairs, DPO reward margins, the deltas) is printed and written to <out>/dpo_demo.json. `--out`
(default: the config's paths) puts sft/ask/eval runs of this script under another folder (via MEDSCRIBE_PATHS__*),
so a smoke run leaves the demo artifacts alone. Report the numbers as they come, better or worse.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from demo_runs import Runs, run

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("exact_match", "token_f1", "rougeL", "chrf", "bertscore_f1", "json_valid")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="examples/demo.toml")
    ap.add_argument("--out", type=Path, help="folder for this script's sft/ask/eval runs (default: the config's)")
    ap.add_argument("--prefix", default="dpo-demo-", help="run name prefix")
    ap.add_argument("--sft-run", help="an existing SFT run under paths.sft to start from (default: train one)")
    ap.add_argument("--metric", default="token_f1")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--dpo-lr", type=float, default=1e-4, help="DPO learning rate (the demo SFT uses 1e-3)")
    ap.add_argument("--dpo-epochs", type=float, default=2.0)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--tiny", action="store_true", help="smoke run: few rows, 2 steps per training, lexical metrics")
    opts = ap.parse_args()

    from medscribe.settings import load_settings

    settings = load_settings(ROOT / opts.config)
    runs = Runs.of(settings, opts.out)
    env, data, sft_root, ask_root, eval_root, out_dir = (runs.env, runs.data, runs.sft, runs.ask, runs.eval,
                                                         runs.out)
    cfg, p, log = ["-c", opts.config], opts.prefix, []
    if not (ROOT / data / "test.jsonl").is_file():
        run([*cfg, "data"], env, log)
    if not (ROOT / settings.paths.index / "chroma.sqlite3").is_file():
        run([*cfg, "index"], env, log)
    limit = ["--limit", "6"] if opts.tiny else []
    steps = ["--max-steps", "2"] if opts.tiny else []
    metrics = ["--metrics", "exact_match,token_f1,chrf,rouge"] if opts.tiny else []

    sft_run = opts.sft_run or f"{p}sft"
    if not (ROOT / sft_root / sft_run / "adapter" / "adapter_config.json").is_file():
        if opts.sft_run:
            sys.exit(f"--sft-run {opts.sft_run}: no adapter under {sft_root / opts.sft_run}")
        run([*cfg, "sft", "--run", sft_run, *steps], env, log)
    sft_adapter = str(sft_root / sft_run / "adapter")
    # 2. the SFT model's own answers on training inputs -> scores per row
    run([*cfg, "ask", "--input", str(data / "train.jsonl"), "--run", f"{p}sft-train", "--adapter", sft_adapter,
         *limit], env, log)
    pairs_eval = eval_root / f"{p}sft-train"
    run([*cfg, "eval", str(ask_root / f"{p}sft-train"), "--out", str(pairs_eval), *metrics], env, log)
    # 3. DPO from the SFT adapter on those pairs
    dpo_run = f"{p}dpo"
    run([*cfg, "sft", "--method", "dpo", "--run", dpo_run, "--init-adapter", str(sft_root / sft_run),
         "--pairs-from-eval", str(pairs_eval), "--pairs-threshold", str(opts.threshold), "--beta", str(opts.beta),
         "--lr", str(opts.dpo_lr), *(steps or ["--epochs", str(opts.dpo_epochs)])],
        {**env, "MEDSCRIBE_SFT__PAIRS_METRIC": opts.metric}, log)
    # 4. both adapters on the test split, then the paired comparison
    for name, adapter in ((f"{p}sft-test", sft_adapter), (f"{p}dpo-test", str(sft_root / dpo_run / "adapter"))):
        run([*cfg, "ask", "--input", str(data / "test.jsonl"), "--run", name, "--adapter", adapter, *limit], env, log)
    compare = eval_root / f"{p}dpo-vs-sft"
    run([*cfg, "eval", str(ask_root / f"{p}sft-test"), str(ask_root / f"{p}dpo-test"), "--baseline",
         f"{p}sft-test", "--out", str(compare), *metrics], env, log)

    report = json.loads((ROOT / compare / "metrics.json").read_text(encoding="utf-8"))
    manifest = json.loads((ROOT / sft_root / dpo_run / "training_config.json").read_text(encoding="utf-8"))
    runs = report["runs"]
    deltas = report["comparison"].get(f"{p}dpo-test", {})
    summary = {
        "tiny": opts.tiny, "sft_run": sft_run, "dpo_run": dpo_run, "metric": opts.metric, "threshold": opts.threshold,
        "pairs": {k: manifest["pairs"][k] for k in ("train", "eval", "fingerprint")} | {
            k: manifest["pairs"]["source"].get(k) for k in ("rows", "right", "below_threshold", "rejected")},
        "dpo": manifest["result"],
        "test_rows": runs[f"{p}sft-test"]["rows"],
        "sft": {m: runs[f"{p}sft-test"]["metrics"].get(m) for m in METRICS},
        "dpo_minus_sft": {m: deltas[m] for m in METRICS if m in deltas},
        "steps": log,
    }
    target = ROOT / out_dir / "dpo_demo.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    print(json.dumps({k: summary[k] for k in ("pairs", "test_rows", "sft", "dpo_minus_sft")}, indent=2))
    for m, d in summary["dpo_minus_sft"].items():
        print(f"{m}: DPO - SFT = {d['delta']:+.4f} (95% {d['low']:+.4f} .. {d['high']:+.4f}, p = {d['p_value']:.3f})")


if __name__ == "__main__":
    main()
