"""nginx from Debian as a CDN stand-in: TLS in front, ``proxy_pass`` to a plain-HTTP origin."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from tests.conftest import need_binary
from tests.peers.dispatcher import stop
from tests.peers.procs import free_port

CONF = """daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {name};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://127.0.0.1:{origin};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_bind {bind};
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"""


@contextlib.asynccontextmanager
async def nginx_front(
    directory: Path, *, origin: int, cert: Path, key: Path, name: str, bind: str = "127.0.0.3"
) -> AsyncIterator[int]:
    """nginx terminating TLS on a loopback port and proxying to ``127.0.0.1:origin`` from ``bind``
    (so the origin's TCP peer differs from the client's address); yields nginx's port."""
    binary = need_binary("nginx")
    directory.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        port = free_port()
        conf = directory / "nginx.conf"
        conf.write_text(CONF.format(dir=directory, port=port, name=name, cert=cert, key=key, origin=origin, bind=bind))
        proc = await asyncio.create_subprocess_exec(
            binary, "-p", str(directory), "-c", str(conf),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            for _ in range(100):
                if proc.returncode is not None:
                    break
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                await asyncio.sleep(0.05)
            if proc.returncode is not None:
                if attempt == 2:
                    err = await proc.stderr.read() if proc.stderr else b""
                    raise RuntimeError(f"nginx did not start: {err.decode(errors='replace')}")
                continue
            yield port
            return
        finally:
            await stop(proc)
