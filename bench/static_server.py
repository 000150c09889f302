"""A static HTTP/1.1 endpoint (uvloop, no framework) to measure the load generator alone.

Answers every request on a keep-alive connection with the same small JSON body. Whatever wrk
achieves against it is a floor for what wrk can drive, far above the service's figures.
Usage: python static_server.py PORT
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import uvloop

BODY = b'{"ok":true}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)


class StaticProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport  # uvloop's transports are not asyncio.Transport instances
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        # GET requests without bodies: one response per header block.
        while (end := self.buffer.find(b"\r\n\r\n")) != -1:
            self.buffer = self.buffer[end + 4 :]
            self.transport.write(RESPONSE)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(StaticProtocol, "127.0.0.1", port, backlog=2048)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
