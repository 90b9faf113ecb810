"""A trivial OpenAI-shaped endpoint: streams `max_tokens` one-word chunks at once, no model.

It exists to measure the load generator itself (its highest sustained rate and its schedule
lag), and to exercise the client's error paths, without an engine in the way. A raw asyncio
HTTP/1.1 server with keep-alive: far cheaper per request than the client it serves.

Fault knobs (request headers): `x-fail-status: 503` answers that status with an OpenAI error
body; `x-fail-after: N` breaks the stream with an in-band error event after N tokens.

    python -m loadtest.trivial_server --port 8100
"""

from __future__ import annotations

import argparse
import asyncio
import json

_MODEL = "trivial"


class _Http(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (line.partition(":") for line in head[1:])}
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < head_end + 4 + length:
                return
            body = self.buffer[head_end + 4: head_end + 4 + length]
            self.buffer = self.buffer[head_end + 4 + length:]
            method, path, _ = head[0].split(" ", 2)
            self._respond(method, path, headers, body)

    def _respond(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        assert self.transport is not None
        if method == "GET" and path == "/v1/models":
            self._send(200, "application/json",
                       json.dumps({"object": "list", "data": [{"id": _MODEL, "object": "model"}]}))
            return
        if method != "POST" or path not in ("/v1/completions", "/v1/chat/completions"):
            self._send(404, "application/json", _error("not found", "not_found_error"))
            return
        if "x-fail-status" in headers:
            self._send(int(headers["x-fail-status"]), "application/json",
                       _error("failure requested by x-fail-status", "server_error"))
            return
        request = json.loads(body)
        n = int(request.get("max_tokens") or 16)
        fail_after = int(headers.get("x-fail-after", "-1"))
        chat = path.endswith("chat/completions")
        events = []
        for i in range(n):
            if i == fail_after:
                events.append(json.dumps({"error": {"message": "failure requested by "
                                                    "x-fail-after", "type": "server_error"}}))
                break
            choice = ({"index": 0, "delta": {"content": " w"}, "finish_reason": None} if chat
                      else {"index": 0, "text": " w", "finish_reason": None})
            if i == n - 1:
                choice["finish_reason"] = "length"
            events.append(json.dumps({"id": "x", "object": "text_completion", "model": _MODEL,
                                      "choices": [choice]}))
        prompt = request.get("prompt") or request.get("messages") or []
        usage = {"prompt_tokens": len(prompt), "completion_tokens": n,
                 "total_tokens": len(prompt) + n}
        events.append(json.dumps({"id": "x", "choices": [], "usage": usage}))
        events.append("[DONE]")
        self._send(200, "text/event-stream", "".join(f"data: {e}\n\n" for e in events),
                   {"x-costroute-backend": "trivial", "x-costroute-cost-usd": "1e-06"})

    def _send(self, status: int, kind: str, text: str, extra: dict[str, str] | None = None) -> None:
        assert self.transport is not None
        payload = text.encode()
        lines = [f"HTTP/1.1 {status} X", f"content-type: {kind}",
                 f"content-length: {len(payload)}", "connection: keep-alive"]
        lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)


def _error(message: str, kind: str) -> str:
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}})


async def serve(host: str, port: int, ready: asyncio.Event | None = None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Http, host, port, backlog=4096)
    if ready is not None:
        ready.set()
    async with server:
        await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8100)
    args = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
