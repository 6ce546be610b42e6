"""Debian's prometheus scrapes -metrics (two workers) on loopback and answers a query about it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import need_binary
from tests.peers.dispatcher import obfs4_roundtrip, obfs4_server
from tests.peers.managed import echo_server
from tests.peers.procs import free_port, stop_process

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]


def query(port: int, promql: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


async def test_prometheus_scrapes_and_answers(tmp_path: Path) -> None:
    binary = need_binary("prometheus")
    echo, eport = await echo_server()
    mport, pport = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        f"scrape_configs:\n  - job_name: ptdispatch\n    static_configs:\n      - targets: ['127.0.0.1:{mport}']\n"
    )
    async with obfs4_server(tmp_path, eport, "-workers", "2", "-metrics", f"127.0.0.1:{mport}") as server:
        await asyncio.gather(*(obfs4_roundtrip(server) for _ in range(5)))
        prom = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{pport}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            result: list[dict[str, object]] = []
            for _ in range(120):
                await asyncio.sleep(0.5)
                with contextlib.suppress(OSError):
                    result = await asyncio.to_thread(
                        query, pport, 'sum(ptdispatch_connections_opened_total{transport="obfs4"})'
                    )
                if result:
                    break
            assert result, "prometheus never answered"
            assert float(result[0]["value"][1]) == 5  # type: ignore[index]
            up = await asyncio.to_thread(query, pport, 'up{job="ptdispatch"}')
            assert up and float(up[0]["value"][1]) == 1  # type: ignore[index]
        finally:
            stop_process(prom, timeout=10)
    echo.close()
