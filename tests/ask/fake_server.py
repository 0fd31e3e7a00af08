"""An OpenAI-compatible chat completions server for tests and bench, with fault injection.

    server = FakeServer(latency=0.2).start()      # 127.0.0.1, free port, in a daemon thread
    server.base_url                                # http://127.0.0.1:PORT/v1
    server.stop()

Standalone: `python tests/ask/fake_server.py --port 8000 --latency 0.2`.

Faults are chosen per request by a marker in the LAST user message (so they follow one input row):
  [[500]] always HTTP 500      [[500x2]] 500 for the first 2 requests of that row, then fine
  [[429x1]] a 429 with retry-after-ms: 10 first      [[timeout]] / [[timeoutx1]] sleep `slow_s` first
  [[drop]] / [[dropx1]] close the connection without any response
  [[badjson]] an unterminated JSON answer   [[fence]] JSON in ```json fences + chatter
  [[prose]] plain text, no JSON             [[nochoices]] a 200 with an empty choices list
Server-wide: `latency` (seconds per request), `reject_schema` (True: 400 "response_format ... not supported";
"llamacpp": its 500) when a json_schema response_format is sent, `status_all` (every request gets that HTTP
status and a body echoing the Authorization header, as careless servers do: tests check the key is scrubbed),
`drop_after` (after that many requests every connection is dropped: a server dying mid-batch), `hold_until`
(hold every request until that many are in flight at once, at most `hold_s` seconds; then the gate stays open).
`max_in_flight` is the most requests the server was handling at one time: concurrency measured without a clock.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MARKER = re.compile(r"\[\[(\w+?)(?:x(\d+))?\]\]")


class FakeServer:
    def __init__(self, latency: float = 0.0, reject_schema: bool | str = False, status_all: int | None = None,
                 drop_after: int | None = None, slow_s: float = 3.0, port: int = 0, hold_until: int | None = None,
                 hold_s: float = 20.0):
        self.latency = latency
        self.reject_schema = reject_schema
        self.status_all = status_all
        self.drop_after = drop_after
        self.slow_s = slow_s
        self.requests: list[dict[str, Any]] = []
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.hold_until, self.hold_s = hold_until, hold_s
        self.in_flight = self.max_in_flight = 0
        self._gate = threading.Condition()
        self._gate_open = hold_until is None
        self._httpd = _Server(("127.0.0.1", port), _handler(self))
        self._httpd.handle_error = lambda *a: None  # clients that gave up (timeouts) are expected here
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> FakeServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def enter(self) -> None:
        """A request arrives: count it; with hold_until, wait (bounded) until that many are in flight."""
        with self._gate:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if not self._gate_open and self.in_flight >= self.hold_until:
                self._gate_open = True
                self._gate.notify_all()
            self._gate.wait_for(lambda: self._gate_open, timeout=self.hold_s)

    def leave(self) -> None:
        with self._gate:
            self.in_flight -= 1

    def answer(self, body: dict[str, Any], auth: str = "") -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        """Decide the response for one request: (status, json body or None to drop, headers)."""
        messages = body.get("messages", [])
        user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        if isinstance(user, list):  # content parts (an image_url part + the text): the text decides the answer
            user = "\n".join(p.get("text", "") for p in user if p.get("type") == "text")
        system = next((m["content"] for m in messages if m.get("role") == "system"), "")
        with self.lock:
            self.requests.append(body)
            total = len(self.requests)
            self.seen[user] += 1
            nth = self.seen[user]
        if self.drop_after is not None and total > self.drop_after:
            return 0, None, {}
        if self.status_all:
            return self.status_all, {"error": {"message": f"invalid credentials: {auth}", "type": "auth"}}, {}
        if self.reject_schema and (body.get("response_format") or {}).get("type") == "json_schema":
            if self.reject_schema == "llamacpp":  # llama-cpp-python 0.3.x: a validation error, as HTTP 500
                message = ("1 validation error for CreateChatCompletionRequest response_format.type: "
                           "Input should be 'text'")
                return 500, {"error": {"message": message, "type": "internal_server_error"}}, {}
            return 400, {"error": {"message": "response_format json_schema is not supported", "type": "bad"}}, {}
        fault, times = None, None
        match = MARKER.search(user)
        if match:
            fault, times = match.group(1), int(match.group(2)) if match.group(2) else None
        active = fault is not None and (times is None or nth <= times)
        if active and fault == "500":
            return 500, {"error": {"message": "internal error", "type": "server"}}, {}
        if active and fault == "429":
            return 429, {"error": {"message": "rate limited", "type": "rate"}}, {"retry-after-ms": "10"}
        if active and fault == "drop":
            return 0, None, {}
        if active and fault == "timeout":
            time.sleep(self.slow_s)
        is_report = '"result"' in system
        finding = user.rsplit(":", 1)[-1].strip()[:40]
        payload = {"result": f"conclusion: {finding}", "has_finding": True} if is_report else {
            "answer": f"answer: {finding}", "citations": []}
        schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema") or {}
        if "reasoning" in schema.get("required", []):  # a schema-obeying server writes the required fields in order
            payload = {"reasoning": f"because {finding}", **payload}
        content = json.dumps(payload, ensure_ascii=False)
        if active and fault == "badjson":
            content = content[: len(content) // 2 + 3]  # cut mid-string: unterminated string and brace
        elif active and fault == "fence":
            content = f"Sure! Here it is:\n```json\n{content}\n```\nHope this helps."
        elif active and fault == "prose":
            content = "I think this is probably nothing serious."
        choices = [] if active and fault == "nochoices" else [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        return 200, {
            "id": f"chatcmpl-{total}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "fake"), "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(content.split()),
                      "total_tokens": prompt_tokens + len(content.split())},
        }, {}



class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: 16 clients connecting at once would see SYNs dropped
    # and 1 s retransmits. Real servers (uvicorn: 2048) do not, so neither does this one.
    request_queue_size = 128
    daemon_threads = True


def _handler(server: FakeServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like real servers: the client pools connections
        # Headers and body go out in separate writes; without TCP_NODELAY, Nagle + delayed ACK add ~40 ms
        # to every response, which would be the test server's latency, not the client's.
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # /v1/models, for clients that probe
            self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]}, {})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            server.enter()
            try:
                if server.latency:
                    time.sleep(server.latency)
                status, payload, headers = server.answer(body, self.headers.get("authorization", ""))
            finally:
                server.leave()
            if payload is None:  # drop: close the socket without a byte of response
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            self._send(status, payload, headers)

        def _send(self, status: int, payload: dict, headers: dict[str, str]) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    fake = FakeServer(latency=args.latency, port=args.port)
    print(f"serving on {fake.base_url}", flush=True)
    fake._httpd.serve_forever()
