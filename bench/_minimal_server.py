"""The floor for client benchmarks: the least a server can do and still answer the client.

A keep-alive HTTP/1.1 server that reads each request (headers, then ``Content-Length`` bytes) and
answers every one with the same OK document (naming the request's ``<id>``, which the client checks),
doing no parsing, no accounts and no bookkeeping. The
emulator spends some 300 µs of CPU per exchange, which pulls every client-to-client ratio towards
1; against this server the client's own cost shows. Run: ``python bench/_minimal_server.py``;
it prints the endpoint on its first line.
"""

from __future__ import annotations

import socket
import threading

ANSWER = (b'<?xml version="1.0" encoding="windows-1251"?>\n<response>\n<result>OK</result>\n'
          b"<error>0</error>\n<balance>1000</balance>\n<id>%s</id>\n</response>\n")
HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/xml; charset=windows-1251\r\n"
        b"Content-Length: %d\r\n\r\n")


def response(body: bytes) -> bytes:
    """The OK answer naming the request's id (a balance request has none: 1)."""
    start = body.find(b"<id>")
    end = body.find(b"</id>", start)
    request_id = body[start + 4:end] if start >= 0 and end > start else b"1"
    answer = ANSWER % request_id
    return HEAD % len(answer) + answer


def serve(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = b""
    with conn:
        while True:
            while b"\r\n\r\n" not in buffer:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            while len(buffer) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            body, buffer = buffer[:length], buffer[length:]
            conn.sendall(response(body))


def main() -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    print(f"listening on http://127.0.0.1:{listener.getsockname()[1]}/extxml.php", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
