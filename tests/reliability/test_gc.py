"""After startup the service keeps its startup objects out of collections and collects young objects rarely."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from app.main import GC_YOUNG_THRESHOLD
from tests.fixtures.app import AppFactory


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
    gc.unfreeze()


@pytest.mark.usefixtures("restore_gc")
async def test_startup_freezes_and_raises_the_young_threshold(
    app_factory: AppFactory,
) -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)

    api = await app_factory()

    assert (await api.get("/healthz")).status_code == 200
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)
    assert gc.get_freeze_count() > 0
