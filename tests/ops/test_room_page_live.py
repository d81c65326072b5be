"""The room page in a real browser while a recorded session is captured through the real stack.

`s2st up` runs Redis' workers (tiny.en, Apertium, espeak-ng) and the web page; a capture agent
speaks the bundled English sample at real-time pace; headless Chromium (Debian's, driven by
Playwright) shows the room. The page must show the English and Spanish captions the workers
committed, the speaker's name and a latency, and receive and schedule the Spanish speech. A
screenshot is saved in test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import psutil
import pytest
from ops_helpers import (
    ROOT,
    Output,
    all_gone,
    base_env,
    cpu_stack_config,
    descendants,
    s2st,
    stop_hard,
)

from ops.sample import SAMPLE
from ops.stack import s2st_argv

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "player"))
from room_browser import HAVE_CHROMIUM, room_page

pytestmark = pytest.mark.slow

CONFIG = cpu_stack_config({"live": ["es"]})


@pytest.mark.skipif(not HAVE_CHROMIUM, reason="apt-get install -y chromium")
def test_room_page_follows_a_captured_session(tmp_path: Path, prefix: str, local_url: str) -> None:
    from ops.redis_servers import free_port

    port = free_port()
    config = tmp_path / "stack.toml"
    config.write_text(CONFIG)
    env = base_env(S2ST_REDIS_URL=local_url, S2ST_KEY_PREFIX=prefix)
    stack = s2st("up", "--config", str(config), "--web", str(port),
                 "--state-dir", str(tmp_path / "state"), env=env)
    children: list[psutil.Process] = []
    shot = ROOT / "test-artifacts" / "room-page-live.png"
    shot.parent.mkdir(exist_ok=True)
    try:
        out = Output(stack)
        assert out.wait_for("ready.", 180), out.text()
        children = descendants(stack.pid)
        # the listener link the stack prints (a token signed with a secret made for this run)
        link = re.search(rf"web:     (http://127\.0\.0\.1:{port}/room/live\?lang=es&token=\S+)",
                         out.text())
        assert link, out.text()
        seen = asyncio.run(_watch(link.group(1), env, shot))
        stack.send_signal(signal.SIGINT)
        rest = out.finish(60)
        assert stack.returncode == 0, rest
        assert all_gone(children) == []
    finally:
        stop_hard(stack, children)
    print(f"\nroom page screenshot: {shot}")
    assert seen["errors"] == [] and seen["capture"] == 0, seen
    source = seen["source"].lower()
    assert "good morning" in source and "conference" in source and "library" in source, source
    assert "buenos" in seen["translation"].lower() and "biblioteca" in seen["translation"].lower()
    assert "Ada" in seen["speakers"]
    stats = seen["stats"]
    assert stats["buffersReceived"] >= 3 and stats["buffersScheduled"] == stats["buffersReceived"]
    assert stats["audioState"] == "running"
    assert stats["latencies"] and all(0 < x < 15 for x in stats["latencies"]), stats
    assert "p50" in seen["latency"]
    assert shot.stat().st_size > 10_000


async def _watch(url: str, env: dict[str, str], shot: Path) -> dict[str, object]:
    """Open the page, capture the sample into the room, and read what the page shows once
    the last sentence's translation has been heard."""
    async with room_page(url, timeout_ms=15_000) as (page, errors):
        capture = await asyncio.create_subprocess_exec(
            *s2st_argv("capture", "--room", "live", "--session", "talk", "--lang", "en",
                       "--speaker", "Ada", "--file", str(SAMPLE), "--no-meter"),
            cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        code = await asyncio.wait_for(capture.wait(), 60)
        # the last sentence ("Thank you very much for coming.") translated and heard
        await page.wait_for_function(
            "document.querySelector('#translation').textContent.toLowerCase()"
            ".includes('gracias') && window.s2stStats.buffersReceived >= 3", timeout=60_000)
        await page.wait_for_timeout(1000)
        await page.screenshot(path=str(shot), full_page=True)
        return {
            "errors": errors, "capture": code, "stats": await page.evaluate("window.s2stStats"),
            "source": await page.inner_text("#source"),
            "translation": await page.inner_text("#translation"),
            "speakers": await page.inner_text("#speakers"),
            "latency": await page.inner_text("#latency"),
        }
