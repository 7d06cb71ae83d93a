"""Test helpers shipped for users and for geoaudit's own tests and benchmarks.

:class:`FakeOpenAIServer` is a real OpenAI-compatible HTTP server on 127.0.0.1 (a thread in this
process). litellm talks to it over real HTTP, so tests exercise the whole gateway path. Replies are
scripted by a function of the request; failures (429/500, slow replies, and the malformed replies
of :data:`FAULTS`) are injected per call.

    with FakeOpenAIServer(lambda req: "Paris is the capital [1].") as server:
        settings = Settings(model="openai/fake", api_base=server.url, ...)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Malformed replies a real endpoint has been seen to send, by name (``Reply(fault=...)``):
#: ``null_content`` a message whose content is null; ``no_choices`` a completion without ``choices``;
#: ``empty_choices`` ``choices: []``; ``error_body`` HTTP 200 whose body is an error object;
#: ``truncated_json`` HTTP 200 with a complete but cut-off JSON body; ``cut`` the connection closes
#: after half the announced body; ``not_json`` HTTP 200 with an HTML page.
FAULTS = ("null_content", "no_choices", "empty_choices", "error_body", "truncated_json", "cut", "not_json")


@dataclass
class Reply:
    """A scripted reply: text, an HTTP error or a malformed reply (``fault``), optionally after a delay."""

    text: str = ""
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    logprobs: list[dict[str, float]] | None = None
    #: One of :data:`FAULTS`, or None for a well-formed reply.
    fault: str | None = None

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; one of {', '.join(FAULTS)}")


Responder = Callable[[dict[str, Any]], "Reply | str"]


def last_user_message(request: dict[str, Any]) -> str:
    msgs = [m for m in request.get("messages", []) if m.get("role") == "user"]
    content = msgs[-1]["content"] if msgs else ""
    if isinstance(content, list):  # OpenAI content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


class FakeOpenAIServer:
    """OpenAI-compatible chat completions on 127.0.0.1 with scripted replies and fault injection.

    Attributes:
        requests: every request body received, in arrival order.
        max_in_flight: the highest number of requests being served at the same time.
    """

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency: float = 0.0,
        capacity: int | None = None,
    ) -> None:
        self.responder: Responder = responder or (lambda req: "ok")
        self.latency = latency
        #: Requests served at once, like a GPU server's batch slots; more wait their turn (None: no limit).
        self.capacity = capacity
        self._capacity = threading.BoundedSemaphore(capacity) if capacity else None
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # typeshed allows bytes; getsockname() after bind gives a str
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAIServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; without this, Nagle + delayed ACK add ~40 ms.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with outer._lock:
                    outer.requests.append(body)
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                if outer._capacity is not None:
                    outer._capacity.acquire()
                try:
                    reply = outer.responder(body)
                    if isinstance(reply, str):
                        reply = Reply(text=reply)
                    delay = reply.delay or outer.latency
                    if delay:
                        time.sleep(delay)
                    if reply.status != 200:
                        self._send(
                            reply.status,
                            {
                                "error": {
                                    "message": f"injected {reply.status}",
                                    "type": "server_error",
                                    "code": reply.status,
                                }
                            },
                            reply.headers,
                        )
                        return
                    if reply.fault:
                        self._send_fault(reply.fault, outer._completion(body, reply))
                        return
                    self._send(200, outer._completion(body, reply), reply.headers)
                finally:
                    if outer._capacity is not None:
                        outer._capacity.release()
                    with outer._lock:
                        outer.in_flight -= 1

            def _send_fault(self, fault: str, completion: dict[str, Any]) -> None:
                if fault == "null_content":
                    completion["choices"][0]["message"]["content"] = None
                elif fault == "no_choices":
                    del completion["choices"]
                elif fault == "empty_choices":
                    completion["choices"] = []
                elif fault == "error_body":
                    completion = {"error": {"message": "model overloaded", "type": "server_error", "code": 503}}
                if fault in ("null_content", "no_choices", "empty_choices", "error_body"):
                    self._send(200, completion)
                    return
                data = json.dumps(completion).encode()
                if fault == "not_json":
                    data = b"<html><body>Bad gateway</body></html>"
                try:
                    self.send_response(200)
                    self.send_header("content-type", "text/html" if fault == "not_json" else "application/json")
                    if fault == "truncated_json":
                        data = data[: len(data) // 2]
                        self.send_header("content-length", str(len(data)))
                    else:
                        self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    if fault == "cut":  # announce the whole body, send half, hang up
                        self.wfile.write(data[: len(data) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        prompt_text = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        choice: dict[str, Any] = {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": reply.text},
        }
        if reply.logprobs is not None:
            choice["logprobs"] = {
                "content": [
                    {
                        "token": max(alts, key=alts.__getitem__) if alts else "",
                        "logprob": max(alts.values()) if alts else 0.0,
                        "bytes": None,
                        "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in alts.items()],
                    }
                    for alts in reply.logprobs
                ]
            }
        pt = reply.prompt_tokens if reply.prompt_tokens is not None else len(prompt_text.split())
        ct = reply.completion_tokens if reply.completion_tokens is not None else len(reply.text.split())
        return {
            "id": f"chatcmpl-fake-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [choice],
            "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
        }

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def fake_settings(server: FakeOpenAIServer, data_dir: Any, **kw: Any) -> Any:
    """Settings that point the gateway at ``server`` with fast retries (for tests and benches)."""
    from geoaudit.config import Settings

    defaults: dict[str, Any] = dict(
        model="openai/fake-model",
        api_base=server.url,
        api_key="test",
        data_dir=data_dir,
        retries=3,
        backoff=0.01,
        timeout=10.0,
        concurrency=8,
    )
    defaults.update(kw)
    return Settings(**defaults)


def serve_main(argv: list[str] | None = None) -> None:
    """``python -m geoaudit.testing --latency 0.1``: run a fake server in its own process (benchmarks).

    Prints the base URL on the first line, then serves ``"answer [1]."`` until killed.
    ``--capacity N`` serves N requests at once (others queue); ``--fail-after N`` answers HTTP 500
    from the (N+1)-th request on (a replica that breaks mid-run).
    """
    import argparse

    ap = argparse.ArgumentParser(description="Fake OpenAI-compatible server on 127.0.0.1")
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--capacity", type=int, default=None)
    ap.add_argument("--fail-after", type=int, default=None)
    ap.add_argument("--text", default="Answer sentence one [1]. Answer sentence two [2].")
    args = ap.parse_args(argv)
    text: str = args.text
    seen = [0]
    lock = threading.Lock()

    def respond(req: dict[str, Any]) -> Reply | str:
        with lock:
            seen[0] += 1
            n = seen[0]
        if args.fail_after is not None and n > args.fail_after:
            return Reply(status=500, delay=0.001)
        return text

    server = FakeOpenAIServer(respond, latency=args.latency, capacity=args.capacity).start()
    print(server.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    serve_main()
