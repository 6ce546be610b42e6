"""The in-process UDP session tests again, on uvloop (which the dispatcher runs on; its UDP error paths
are its own), each in a child process so that pytest's own loop handling stays out of the way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_udp_sessions import BINDING

ON_UVLOOP = [
    "test_replies_go_back_to_the_right_source",
    "test_largest_and_empty_datagrams_arrive_intact",
    "test_idle_timeout_removes_sessions_both_sides",
    "test_server_closing_mid_stream_removes_only_that_session",
    "test_garbage_without_eof_in_stun_mode_closes_at_once",
    "test_stun_mode_carries_channel_data_both_ways",
    "test_unreachable_target_keeps_the_session",
    "test_write_failure_removes_the_session",
    "test_connection_failure_removes_the_waiting_entry",
    "test_flood_of_source_ports_keeps_the_pool_bounded",
    "test_server_session_removed_while_its_client_does_not_read_is_cut",
    "test_server_session_idle_while_its_client_does_not_read_is_cut",
    "test_client_session_removed_while_its_server_does_not_read_is_cut",
    "test_client_session_idle_while_its_server_does_not_read_is_cut",
    "test_server_drops_datagrams_while_its_socket_to_the_target_is_backlogged",
    "test_client_drops_replies_while_its_socket_to_the_applications_is_backlogged",
]


UVLOOP_RUNNER = """
import asyncio, os, sys
import uvloop
from tests.unit import test_udp_sessions as t
args = eval(sys.argv[2])
loop = uvloop.new_event_loop()
loop.run_until_complete(asyncio.wait_for(getattr(t, sys.argv[1])(*args), 60))
print("OK", flush=True)
os._exit(0)  # skip loop.close(): uvloop's close can wait forever on a handle in this harness
"""


def on_uvloop(name: str, *args: object) -> None:
    """Run test ``name`` on uvloop, in a child process (isolated from pytest's own loop handling)."""
    pytest.importorskip("uvloop")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'src'}"}
    done = subprocess.run(
        [sys.executable, "-c", UVLOOP_RUNNER, name, repr(args)],
        capture_output=True, text=True, timeout=90, cwd=root, env=env, check=False,
    )  # fmt: skip
    assert done.stdout.strip() == "OK", done.stdout + done.stderr[-3000:]


@pytest.mark.parametrize("name", ON_UVLOOP)
def test_on_uvloop(name: str) -> None:
    """The same tests on uvloop, which the dispatcher runs on (its UDP error paths are its own)."""
    on_uvloop(name)


def test_bad_stream_on_uvloop() -> None:
    on_uvloop("test_bad_stream_closes_that_session_only", False, b"\x00\x05ab", "inside a frame")
    on_uvloop("test_bad_stream_closes_that_session_only", True, BINDING + b"\xffjunk" * 5, "not a STUN stream")
    on_uvloop("test_bad_stream_closes_that_session_only", True, BINDING + b"junk" * 5, "inside a ChannelData message")


def test_target_name_the_idna_codec_refuses_on_uvloop() -> None:
    """uvloop's getaddrinfo() encodes the name itself (UnicodeError as well)."""
    on_uvloop("test_target_name_the_idna_codec_refuses_ends_the_session", "a" * 64 + ".example")
    on_uvloop("test_target_name_the_idna_codec_refuses_ends_the_session", "a..b")
