"""A local OpenAI-compatible chat endpoint whose "model" is a Python function.

For stand-ins of a reflection LM (the paper-in-miniature's reflector, tests): the fast loop talks to it over
real HTTP through :class:`~fst_agent.fast.reflection_lm.OpenAIReflectionLM`, exactly as it would to a vLLM server
or a hosted API, so the whole client path (request, retries, usage accounting) runs. It is not an LLM and says
so in its model name.

    with LocalChatEndpoint(lambda prompt: "```\\nBe careful.\\n```", model="stand-in") as endpoint:
        config = ReflectionConfig(kind="openai", base_url=endpoint.base_url, model="stand-in")
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHAT_PATH = "/v1/chat/completions"


class LocalChatEndpoint:
    """``POST /v1/chat/completions`` on 127.0.0.1 (a free port) in a thread: the reply is ``program(last user
    message)``, with a ``usage`` block counting words. Records every request. Subclasses change the answer to a
    request by overriding :meth:`respond` (e.g. to script failures). Use as a context manager."""

    def __init__(self, program: Callable[[str], str], *, model: str = "local-program",
                 poll_interval: float = 0.05) -> None:
        self.program = program
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.answered = 0
        self._poll_interval = poll_interval
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                endpoint.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, payload = endpoint.respond(self.path, dict(self.headers), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:  # the test or experiment logs what matters
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": poll_interval},
                                        daemon=True)

    def respond(self, path: str, headers: Mapping[str, str], body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON payload) for one request."""
        if path.rstrip("/") != CHAT_PATH:
            return 404, {"error": {"message": f"no route {path}"}}
        prompt = body["messages"][-1]["content"]
        reply = self.program(prompt)
        self.answered += 1
        return 200, {
            "id": f"local-{len(self.requests)}", "object": "chat.completion", "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(reply.split()),
                      "total_tokens": len(prompt.split()) + len(reply.split())},
        }

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> LocalChatEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
