"""Helpers for the reliability tests: PHI sentinels, log capture, table dumps, a stoppable TCP proxy."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.base import Base
from tests.api.requests import bundle, empty_prefetch

# Synthetic, unique strings planted in every field that could carry PHI or a secret.
PATIENT_ID = "pat-sntl-4d8e1c"
PATIENT_NAME = "Quorvexsentinel"
MRN = "MRN-SNTL-77120"
ACCESS_TOKEN = "tok-sntl-5b0f9a2e"
USER_COMMENT = "comment-sntl-c3a9"
NOTE_TEXT = "note-sntl-e61b"
SENTINELS = (PATIENT_ID, PATIENT_NAME, MRN, ACCESS_TOKEN, USER_COMMENT, NOTE_TEXT)


def sentinel_patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": PATIENT_ID,
        "gender": "female",
        "birthDate": "1971-04-02",
        "name": [{"family": PATIENT_NAME, "given": [PATIENT_NAME]}],
        "identifier": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                            "code": "MR",
                        }
                    ]
                },
                "system": "urn:oid:2.16.840.1.113883.19.5",
                "value": MRN,
            }
        ],
    }


def sentinel_prefetch(base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A full prefetch whose Patient and every resource carry the sentinels (name, MRN, id, notes)."""
    prefetch = base if base is not None else empty_prefetch(PATIENT_ID)
    prefetch["patient"] = sentinel_patient()
    for key, value in prefetch.items():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            for entry in value.get("entry", []):
                entry["resource"]["note"] = [{"text": NOTE_TEXT}]
                entry["fullUrl"] = f"urn:uuid:{key}-{PATIENT_ID}"
    return prefetch


def fhir_authorization() -> dict[str, Any]:
    return {
        "access_token": ACCESS_TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "cds-service",
        "patient": PATIENT_ID,
    }


def fhir_bundle_for(path: str) -> dict[str, Any]:
    """What the fake FHIR server answers: the sentinel Patient on a read, an empty searchset otherwise."""
    if "/Patient/" in path:
        return sentinel_patient()
    return bundle()


@dataclass
class LogCapture:
    """Everything logged during a test: caplog's records and the service's own JSON handler output."""

    caplog: Any
    stream: io.StringIO = field(default_factory=io.StringIO)

    def texts(self) -> list[str]:
        texts = [self.caplog.text, self.stream.getvalue()]
        for record in self.caplog.records:
            texts.append(record.getMessage())
            texts.append(repr(vars(record)))
        return texts

    def events(self) -> list[str]:
        return [record.getMessage() for record in self.caplog.records]


@contextlib.contextmanager
def service_log_stream(stream: io.StringIO) -> Iterator[None]:
    """Point the service's JSON log handler (configured by create_app) at `stream`."""
    handlers = [
        h
        for h in logging.getLogger("iliac_cds").handlers
        if isinstance(h, logging.StreamHandler)
    ]
    previous = [h.setStream(stream) for h in handlers]
    try:
        yield
    finally:
        for handler, old in zip(handlers, previous, strict=True):
            if old is not None:
                handler.setStream(old)


def assert_no_sentinel(
    texts: list[str], *, where: str, allowed: tuple[str, ...] = ()
) -> None:
    for text in texts:
        for sentinel in SENTINELS:
            if sentinel in allowed:
                continue
            at = text.find(sentinel)
            assert at < 0, (
                f"{sentinel!r} found in {where}: ...{text[max(0, at - 300) : at + 100]}"
            )


async def dump_tables(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> dict[tuple[str, str], list[str]]:
    """Every column value of every table, as text, keyed by (table, column)."""
    dumped: dict[tuple[str, str], list[str]] = {}
    async with sessionmaker() as session:
        for table in Base.metadata.sorted_tables:
            rows = (await session.execute(select(table))).all()
            for column in table.columns:
                dumped[(table.name, column.name)] = [
                    str(row._mapping[column]) for row in rows
                ]
    return dumped


def closed_loopback_port() -> int:
    """A loopback TCP port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class TcpProxy:
    """Forwards a loopback port to an upstream host:port; `stop()` is a database outage, `start()` its end."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = closed_loopback_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._writers.clear()

    async def _accept(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.close()
            return
        self._writers.update((client_writer, up_writer))
        for reader, writer in ((client_reader, up_writer), (up_reader, client_writer)):
            task = asyncio.create_task(_pipe(reader, writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
