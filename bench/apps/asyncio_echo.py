"""The raw-echo scenario's peer: a plain asyncio line-echo server (the stdlib's event loop, no
uvloop), the same protocol as examples/raw_echo.py.

    python bench/apps/asyncio_echo.py PORT
"""

import asyncio
import sys

MAX_LINE = 4 * 1024 * 1024


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            writer.write(line)
            await writer.drain()
    except (ConnectionError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, limit=MAX_LINE)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1])))
    except KeyboardInterrupt:
        pass
