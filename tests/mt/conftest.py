"""Fixtures of the MT tests: one warm Apertium backend and router per test session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from workers.mt.backends.apertium import ApertiumTranslator
from workers.mt.router import Router


@pytest.fixture(scope="session")
def apertium() -> Iterator[ApertiumTranslator]:
    if shutil.which("lt-proc") is None:
        pytest.fail("Apertium is not installed: apt-get install apertium apertium-eng-spa apertium-eng-cat ...")
    translator = ApertiumTranslator(timeout_s=20.0)
    for pair in (("en", "es"), ("en", "ca"), ("es", "en")):
        if not translator.supports(*pair):
            pytest.fail(f"Apertium pair {pair[0]}-{pair[1]} is not installed")
    yield translator
    translator.close()


@pytest.fixture(scope="session")
def router(apertium: ApertiumTranslator) -> Router:
    return Router({"apertium": apertium}, "*=apertium", pivots=("es", "en"))
