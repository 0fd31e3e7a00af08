"""Stop strings in the batching engine's streamer: text ends before the first stop string, and a stop string
that arrives over several tokens is never sent in part (the streamer holds back what could be its start)."""

from __future__ import annotations

import asyncio

from medscribe.serve.batching import Job, _RowStreamer


class CharTokenizer:
    """One token per character (ids = code points), like a byte-level model splitting a word."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


class Releases:
    def __init__(self):
        self.released = []

    def _release(self, job):
        self.released.append(job)


def run(text: str, stop: tuple[str, ...], max_tokens: int = 100):
    loop = asyncio.new_event_loop()
    try:
        job = Job([{"role": "user", "content": "x"}], adapter=False, max_tokens=max_tokens, stop=stop, loop=loop)
        sent = []
        job._emit = lambda kind, value=None: sent.append((kind, value))
        engine = Releases()
        streamer = _RowStreamer(engine, [job], CharTokenizer(), stop_ids=set())
        streamer.put([0])  # the prompt
        for ch in text:
            if streamer.done[0]:
                break
            streamer.put([ord(ch)])
        streamer.end()
        return job, [v for k, v in sent if k == "delta"], engine
    finally:
        loop.close()


def test_a_stop_string_over_several_tokens_is_never_sent_in_part():
    job, deltas, engine = run("Liver cyst.\n\nNOTE: follow up", ("\n\nNOTE",))
    assert job.text == "Liver cyst." and job.finish_reason == "stop"
    assert "".join(deltas) == "Liver cyst."
    assert all("\n" not in d for d in deltas)  # not even the first newline of "\n\nNOTE" went out
    assert engine.released == [job]


def test_a_false_start_is_sent_once_it_cannot_be_a_stop_string():
    job, deltas, _ = run("a\nb\n\nNOTE", ("\n\nNOTE",))
    assert "".join(deltas) == "a\nb" and job.text == "a\nb"


def test_the_earliest_of_several_stop_strings_wins_and_no_stop_means_everything():
    job, _, _ = run("one; two. three", (".", ";"))
    assert job.text == "one" and job.finish_reason == "stop"
    job, deltas, _ = run("no stop here", ("###",), max_tokens=12)
    assert job.text == "no stop here" and "".join(deltas) == "no stop here" and job.finish_reason == "length"
