"""Prometheus metrics of `medscribe serve`, written in the text exposition format by hand (no dependency).

    metrics = Metrics()
    metrics.request("medscribe-rag", 200, latency_s=0.42, prompt_tokens=310, completion_tokens=24)
    metrics.render()   # the body of GET /metrics

Series: medscribe_requests_total{model,status}, medscribe_request_latency_seconds (histogram, per model),
medscribe_prompt_tokens_total / medscribe_completion_tokens_total {model}, medscribe_errors_total{type},
medscribe_cache_hits_total, medscribe_cache_misses_total, medscribe_queue_depth (gauge: waiting + generating),
medscribe_batch_size (histogram of generation batch sizes), medscribe_streams_cancelled_total.
"""

from __future__ import annotations

import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def _labels(**labels: object) -> str:
    if not labels:
        return ""
    body = ",".join(f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                    for k, v in labels.items())
    return "{" + body + "}"


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.total += 1
        self.sum += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1

    def lines(self, name: str, **labels: object) -> list[str]:
        out = [f"{name}_bucket{_labels(**labels, le=bound)} {count}"
               for bound, count in zip(self.buckets, self.counts, strict=True)]
        out.append(f"{name}_bucket{_labels(**labels, le='+Inf')} {self.total}")
        out.append(f"{name}_sum{_labels(**labels)} {self.sum:.6f}")
        out.append(f"{name}_count{_labels(**labels)} {self.total}")
        return out


class Metrics:
    """Thread-safe counters (the batching worker and the event loop both report)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency: dict[str, _Histogram] = {}
        self.prompt_tokens: dict[str, int] = defaultdict(int)
        self.completion_tokens: dict[str, int] = defaultdict(int)
        self.errors: dict[str, int] = defaultdict(int)
        self.cache_hits = 0
        self.cache_misses = 0
        self.queue_depth = 0
        self.cancelled = 0
        self.batch = _Histogram(BATCH_BUCKETS)

    def request(self, model: str, status: int, latency_s: float, prompt_tokens: int = 0,
                completion_tokens: int = 0) -> None:
        with self._lock:
            self.requests[(model, status)] += 1
            self.latency.setdefault(model, _Histogram(LATENCY_BUCKETS)).observe(latency_s)
            self.prompt_tokens[model] += prompt_tokens
            self.completion_tokens[model] += completion_tokens

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1

    def cache(self, hit: bool) -> None:
        with self._lock:
            if hit:
                self.cache_hits += 1
            else:
                self.cache_misses += 1

    def set_queue_depth(self, depth: int) -> None:
        self.queue_depth = depth

    def observe_batch(self, size: int) -> None:
        with self._lock:
            self.batch.observe(size)

    def stream_cancelled(self) -> None:
        with self._lock:
            self.cancelled += 1

    def render(self) -> str:
        with self._lock:
            lines = ["# HELP medscribe_requests_total Chat completion requests by model and HTTP status.",
                     "# TYPE medscribe_requests_total counter"]
            lines += [f"medscribe_requests_total{_labels(model=m, status=s)} {n}"
                      for (m, s), n in sorted(self.requests.items())]
            lines += ["# HELP medscribe_request_latency_seconds Time from request to last byte.",
                      "# TYPE medscribe_request_latency_seconds histogram"]
            for model, hist in sorted(self.latency.items()):
                lines += hist.lines("medscribe_request_latency_seconds", model=model)
            for name, values in (("prompt", self.prompt_tokens), ("completion", self.completion_tokens)):
                lines += [f"# HELP medscribe_{name}_tokens_total {name.title()} tokens.",
                          f"# TYPE medscribe_{name}_tokens_total counter"]
                lines += [f"medscribe_{name}_tokens_total{_labels(model=m)} {n}" for m, n in sorted(values.items())]
            lines += ["# HELP medscribe_errors_total Errors by kind.", "# TYPE medscribe_errors_total counter"]
            lines += [f"medscribe_errors_total{_labels(type=k)} {n}" for k, n in sorted(self.errors.items())]
            lines += ["# HELP medscribe_cache_hits_total Answers served from the response cache.",
                      "# TYPE medscribe_cache_hits_total counter", f"medscribe_cache_hits_total {self.cache_hits}",
                      "# HELP medscribe_cache_misses_total Cacheable requests that had to generate.",
                      "# TYPE medscribe_cache_misses_total counter",
                      f"medscribe_cache_misses_total {self.cache_misses}",
                      "# HELP medscribe_queue_depth Requests admitted and not finished (waiting + generating).",
                      "# TYPE medscribe_queue_depth gauge", f"medscribe_queue_depth {self.queue_depth}",
                      "# HELP medscribe_streams_cancelled_total Streams whose client went away mid-answer.",
                      "# TYPE medscribe_streams_cancelled_total counter",
                      f"medscribe_streams_cancelled_total {self.cancelled}",
                      "# HELP medscribe_batch_size Requests generated together per batch.",
                      "# TYPE medscribe_batch_size histogram"]
            lines += self.batch.lines("medscribe_batch_size")
        return "\n".join(lines) + "\n"
