"""The demo curriculum and two-stage LoRA experiments, each against one plain SFT run with the same budget.

    flock /tmp/medscribe-heavy.lock .venv/bin/python bench/recipes_demo.py         # ~25 min on 2 cores
    .venv/bin/python bench/recipes_demo.py --tiny --out /tmp/recipes              # a smoke run (wiring only)

Every step is the real CLI on examples/demo.toml (SmolLM2-135M from `make demo-model`; data and index from
`make demo`, made here when missing). Three runs, each two epochs over the same training rows in total:
- `sft`: the demo's settings as they are (2 epochs, lr 1e-3, one retrieved case per prompt, all 7 projections);
- `curriculum` (`[[sft.stages]]`, one adapter): "format" -- 1 epoch without retrieved cases (the answer's form
  and wording), then "grounded" -- 1 epoch with them at half the learning rate (using the similar case);
- `two-stage` (`merge = true` between stages): "mlp" -- the MLP projections, 1 epoch without cases, merged into
  the base; then "rag" -- a fresh adapter on attention + gate_proj, 1 epoch with cases, on the merged model,
  served as the manifest's `serve` says (merged stage 1 + the stage-2 adapter).
Each is asked on the test split with retrieval (`ask`, as a user serves it) and all three go into one `eval`
with `--baseline` the plain SFT run: the paired bootstrap of every metric (delta, 95 % interval, p-value).
The summary is printed and written to <out>/recipes_demo.json; report it as it comes, better or worse.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from demo_runs import Runs, run

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("exact_match", "token_f1", "rougeL", "chrf", "bertscore_f1", "json_valid")

CURRICULUM = """
[[sft.stages]]
name = "format"
epochs = {epochs}
rag_context = false

[[sft.stages]]
name = "grounded"
epochs = {epochs}
learning_rate = {half_lr}
rag_context = true
"""

TWO_STAGE = """
[[sft.stages]]
name = "mlp"
epochs = {epochs}
rag_context = false
target_modules = ["gate_proj", "up_proj", "down_proj"]
merge = true

[[sft.stages]]
name = "rag"
epochs = {epochs}
rag_context = true
target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj"]
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="examples/demo.toml")
    ap.add_argument("--out", type=Path, help="folder for this script's sft/ask/eval runs (default: the config's)")
    ap.add_argument("--prefix", default="recipes-")
    ap.add_argument("--tiny", action="store_true", help="smoke run: 2 steps per stage, 6 test rows, lexical metrics")
    opts = ap.parse_args()

    from medscribe.settings import load_settings

    settings = load_settings(ROOT / opts.config)
    runs = Runs.of(settings, opts.out)
    env, data, sft_root, ask_root, eval_root, out_dir = (runs.env, runs.data, runs.sft, runs.ask, runs.eval,
                                                         runs.out)
    (ROOT / out_dir).mkdir(parents=True, exist_ok=True)
    cfg, p, log = ["-c", opts.config], opts.prefix, []
    if not (ROOT / data / "test.jsonl").is_file():
        run([*cfg, "data"], env, log)
    if not (ROOT / settings.paths.index / "chroma.sqlite3").is_file():
        run([*cfg, "index"], env, log)
    half = settings.sft.epochs / 2
    base_text = (ROOT / opts.config).read_text(encoding="utf-8")
    configs = {}
    for name, stages in (("curriculum", CURRICULUM), ("two-stage", TWO_STAGE)):
        text = stages.format(epochs=half, half_lr=settings.sft.learning_rate / 2)
        if opts.tiny:
            text = text.replace(f"epochs = {half}", "max_steps = 2")
        path = ROOT / out_dir / f"{p}{name}.toml"
        path.write_text(base_text + "\n# added by bench/recipes_demo.py\n" + text, encoding="utf-8")
        configs[name] = path
    steps = ["--max-steps", "2"] if opts.tiny else []
    limit = ["--limit", "6"] if opts.tiny else []
    metrics = ["--metrics", "exact_match,token_f1,chrf,rouge"] if opts.tiny else []

    run([*cfg, "sft", "--run", f"{p}sft", *steps], env, log)
    for name, path in configs.items():
        run(["-c", str(path), "sft", "--run", f"{p}{name}"], env, log)
    served = {}
    for name in ("sft", "curriculum", "two-stage"):
        manifest = json.loads((ROOT / sft_root / f"{p}{name}" / "training_config.json").read_text(encoding="utf-8"))
        serve = manifest.get("serve") or {"local_model": settings.ask.local_model,
                                          "adapter": str(sft_root / f"{p}{name}" / "adapter")}
        served[name] = {"serve": serve, "result": manifest.get("result"),
                        "stages": [{"name": s["name"], "steps": [s.get("first_step"), s.get("last_step")],
                                    "target_modules": (s.get("settings") or {}).get("target_modules"),
                                    "rows": (s.get("selection") or {}).get("rows_selected"),
                                    "best_eval_loss": (s.get("result") or {}).get("best_eval_loss"),
                                    "train_seconds": s.get("train_seconds"), "merged": s.get("merged")}
                                   for s in manifest.get("stages", [])],
                        "train_seconds": manifest.get("train_seconds")}
        run([*cfg, "ask", "--input", str(data / "test.jsonl"), "--run", f"{p}{name}-test", "--local-model",
             serve["local_model"], "--adapter", serve["adapter"], *limit], env, log)
    compare = eval_root / f"{p}compare"
    run([*cfg, "eval", *(str(ask_root / f"{p}{n}-test") for n in served), "--baseline", f"{p}sft-test",
         "--out", str(compare), *metrics], env, log)

    report = json.loads((ROOT / compare / "metrics.json").read_text(encoding="utf-8"))
    runs = report["runs"]
    summary = {"tiny": opts.tiny, "test_rows": runs[f"{p}sft-test"]["rows"], "runs": served, "scores": {
        n: {m: runs[f"{p}{n}-test"]["metrics"].get(m) for m in METRICS} for n in served},
        "minus_sft": {n: {m: d for m, d in report["comparison"].get(f"{p}{n}-test", {}).items() if m in METRICS}
                      for n in ("curriculum", "two-stage")}, "steps": log}
    target = ROOT / out_dir / "recipes_demo.json"
    target.write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    print(json.dumps(summary["scores"], indent=2))
    for n, deltas in summary["minus_sft"].items():
        for m, d in deltas.items():
            print(f"{m}: {n} - SFT = {d['delta']:+.4f} (95% {d['low']:+.4f} .. {d['high']:+.4f}, "
                  f"p = {d['p_value']:.3f})")


if __name__ == "__main__":
    main()
