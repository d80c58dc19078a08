"""Loopback-only TCP stand-ins for a misbehaving FHIR server: a proxy that records and delays, a fixed answer."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self

LOOPBACK = "127.0.0.1"


class _Listener:
    """An asyncio server on a free loopback port that closes every connection it opened when stopped."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def url(self, path: str = "/fhir") -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"

    async def stop(self) -> None:
        """Stop listening and drop every open connection; calls after this are refused."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in list(self._writers):
            writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self.handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Cancelled by stop(); ending normally keeps Python 3.11's stream callback from logging it.
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        raise NotImplementedError


class RecordingProxy(_Listener):
    """Forwards bytes to an upstream loopback port, keeps what clients sent, and holds answers `delay` seconds."""

    def __init__(self, upstream_port: int, *, delay_seconds: float = 0.0) -> None:
        super().__init__()
        self.upstream_port = upstream_port
        self.delay_seconds = delay_seconds
        self.received = bytearray()

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection(
            LOOPBACK, self.upstream_port
        )
        self._writers.add(up_writer)
        try:
            upstream = asyncio.create_task(self._pump(reader, up_writer, record=True))
            try:
                await self._pump(up_reader, writer, record=False)
            finally:
                upstream.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await upstream
        finally:
            self._writers.discard(up_writer)
            up_writer.close()

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        *,
        record: bool,
    ) -> None:
        while chunk := await source.read(65536):
            if record:
                self.received.extend(chunk)
            elif self.delay_seconds:
                await asyncio.sleep(self.delay_seconds)
            sink.write(chunk)
            await sink.drain()


class FixedAnswer(_Listener):
    """Answers every HTTP request with one fixed status, content type and body, then closes."""

    def __init__(self, body: bytes, *, content_type: str, status: int = 200) -> None:
        super().__init__()
        self.body = body
        self.content_type = content_type
        self.status = status

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = (
            f"HTTP/1.1 {self.status} X\r\nContent-Type: {self.content_type}\r\n"
            f"Content-Length: {len(self.body)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + self.body)
        await writer.drain()


class Silent(_Listener):
    """Reads each request and never answers until stopped: a server slower than any deadline."""

    async def handle(
        self, reader: asyncio.StreamReader, _writer: asyncio.StreamWriter
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.Event().wait()
