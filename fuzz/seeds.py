"""Write the seed corpora (``python -m fuzz.seeds``): a few well-formed inputs per target, so that
fuzzing starts from the real formats instead of from nothing.  Deterministic; rerun after a
format changes.  Files are named ``seed-<what>``; libFuzzer adds its own names beside them."""

from __future__ import annotations

import json

from ptdispatch.transports.obfs2 import Obfs2Engine
from ptdispatch.transports.obfs3 import Obfs3Engine

from .darkstar_seeds import darkstar_seeds, meek_seeds
from .engines import _CIPHERS, _CONFIGS, _obfs4_client, _obfs4_server
from .support import Input, det_rng
from .targets import CORPUS, TARGETS

_SOCKS5_CONNECT = b"\x05\x01\x00\x01\x7f\x00\x00\x01\x01\xbb"


def _seeds() -> dict[str, dict[str, bytes]]:
    deep = ("[" * 3000 + "]" * 3000).encode()
    out: dict[str, dict[str, bytes]] = {
        "socks5": {
            "none": b"\x00\x05\x01\x00" + _SOCKS5_CONNECT + b"early",
            "userpass": b"\x05\x05\x01\x02\x01\x07cert=ab\x01\x00\x05\x01\x00\x03\x0bexample.com\x00\x50",
            "json": b"\x01\x05\x01\x09" + (13).to_bytes(4, "big") + b'{"cert":"ab"}' + _SOCKS5_CONNECT,
            "ipv6": b"\x03\x05\x01\x00\x05\x01\x00\x04" + bytes(15) + b"\x01\x00\x50",
        },
        "socks5-json": {
            "object": b"\x00" + json.dumps({"cert": "AAAA", "iat-mode": 0, "nested": {"a": [1, 2.5, None]}}).encode(),
            "deep": b"\x00" + deep,
            "bigint": b"\x00" + b'{"n": ' + b"9" * 5000 + b"}",
        },
        "socks4": {
            "4": b"\x00\x04\x01\x00\x50\x7f\x00\x00\x01user\x00",
            "4a": b"\x01\x04\x01\x01\xbb\x00\x00\x00\x01cert=x;iat-mode=0\x00example.com\x00early",
        },
        "pt3-flags": {
            "client": b"\x00".join(
                b"-ptversion 3.0 -client -transports obfs4,shadow -mode socks5 -proxy socks5://127.0.0.1:9050 "
                b"-proxylistenaddr 127.0.0.1:0 -ipcLogLevel DEBUG -exit-on-stdin-close".split()
            ),
            "server": b"\x00".join(
                b"--server --transport=obfs4 -bindaddr obfs4-127.0.0.1:0 -target 127.0.0.1:9 -state x "
                b"-options {} -extorport 127.0.0.1:1 -authcookie c".split()
            ),
        },
        "pt3-options": {
            "obfs4": b"\x01" + b'{"obfs4": {"cert": "' + b"A" * 70 + b'", "iat-mode": 1}}',
            "shadow": b"\x04" + b'{"password": "pw", "cipherName": "aes-128-gcm", "target": "example.com:80"}',
            "server": b"\x01"
            + b'{"node-id": "'
            + b"00" * 20
            + b'", "private-key": "'
            + b"11" * 32
            + b'", "drbg-seed": "'
            + b"22" * 24
            + b'"}',
            "deep": b"\x00" + deep,
            "bigint": b"\x00" + b'{"iat-mode": ' + b"1" * 5000 + b"}",
        },
        "pt1-env": {
            "client": b"\n".join([b"\x00" + b"1", b"\x01/tmp/state", b"\x03obfs4,obfs3", b"\x04socks5://127.0.0.1:1"]),
            "server": b"\n".join(
                [
                    b"\x00" + b"1",
                    b"\x01/tmp/state",
                    b"\x05obfs4",
                    b"\x06obfs4:iat-mode=1;obfs4:cert=a\\;b",
                    b"\x07obfs4-[::1]:0",
                    b"\x08127.0.0.1:9",
                    b"\x0b10.0.0.1",
                    b"\x0c[::1]",
                ]
            ),
        },
        "pt1-escaping": {"kv": b"cert=a\\;b\\=c;iat-mode=0", "options": b"obfs4:a=b;obfs4:c=d\\:e;;shadow:k=\\\\"},
        "smethod-args": {"cert": b"cert\x00AAAA=,\\\x00iat-mode\x000"},
        "extorport": {
            "flow": b"\x00\x01\x01\x03\x00" + bytes(32) + bytes(range(32)) + b"\x01" + b"\x10\x00\x00\x00OR",
            "deny": b"\x05\x01\x01\x00" + bytes(64) + b"\x01" + b"\x10\x02\x00\x01x\x10\x01\x00\x00",
        },
        "udp-frames": {"frames": b"\x05" + b"\x00\x03abc\x00\x00\xff\xff" + bytes(10)},
        "stun": {
            "binding": b"\x01" + b"\x00\x01\x00\x08\x21\x12\xa4\x42" + bytes(12) + b"\x00\x03\x00\x04\x00\x00\x00\x00",
            "classic": b"\x02" + b"\x01\x01\x00\x00" + bytes(16),
            # TURN ChannelData, padded to 4 as on a stream, around a Binding request
            "channel-data": b"\x05"
            + bytes.fromhex("4000000568656c6c6f000000000100002112a442" + "00" * 12 + "7fff0000"),
        },
    }
    out.update(_engine_seeds())
    out.update(darkstar_seeds())
    out.update(meek_seeds())
    return out


def _engine_seeds() -> dict[str, dict[str, bytes]]:
    out: dict[str, dict[str, bytes]] = {}
    for name, cls in (("obfs2", Obfs2Engine), ("obfs3", Obfs3Engine)):
        for role, initiator in (("client", False), ("server", True)):  # the peer of each
            peer = cls(initiator, det_rng(b"peer"))
            peer.initiate()
            out[f"{name}-{role}"] = {"flight": b"\x00" + peer.data_to_send()}
        out[f"{name}-stream"] = {"client": b"\x01\x00\x00\x00\x00", "server": b"\x00\x03\x00\x00\x00\x00\x00"}
    client = _obfs4_client(Input(b"\x00"))
    client.initiate()
    hello = client.data_to_send()
    out["obfs4-server"] = {"hello": b"\x00\x00" + hello, "hello-chunked": b"\x05\x01" + hello}
    server = _obfs4_server(Input(b"\x00"))
    server.receive_data(hello)
    out["obfs4-client"] = {"reply": b"\x00\x00" + server.data_to_send()}
    out["obfs4-handshake"] = {"to-server": b"\x01\x00\x00\x00\x00\x00\x00", "to-client": b"\x00\x00\x00\x00\x00\x00"}
    packet = b"\x00\x00\x05hello" + bytes(10)
    seed_packet = b"\x01\x00\x18" + bytes(range(24))
    out["obfs4-frames"] = {
        "client": b"\x00\x01\x00" + b"\x01" + len(packet).to_bytes(2, "big") + packet
        + b"\x01" + len(seed_packet).to_bytes(2, "big") + seed_packet,
        "server": b"\x03\x00\x00" + b"\x01" + len(packet).to_bytes(2, "big") + packet,
    }  # fmt: skip
    header = b"\x03\x0bexample.com\x01\xbb"
    out["shadow-chunks"] = {
        f"{i}": b"\x00\x00" + bytes([i]) + b"\x03" + len(header).to_bytes(2, "big") + header
        + b"\x03\x00\x05hello"
        for i in range(len(_CIPHERS))
    }  # fmt: skip
    out["shadow-server"] = {
        f"{i}": b"\x00" + bytes([i]) + _CONFIGS[c].cipher.salt_size * b"s" for i, c in enumerate(_CIPHERS)
    }
    out["shadow-client"] = dict(out["shadow-server"])
    return out


def main() -> None:
    seeds = _seeds()
    missing = set(TARGETS) - set(seeds)
    if missing:
        raise SystemExit(f"no seeds for {sorted(missing)}")
    for name, files in seeds.items():
        directory = CORPUS / name
        directory.mkdir(parents=True, exist_ok=True)
        for label, data in files.items():
            (directory / f"seed-{label}").write_bytes(data)
    print(f"wrote seeds for {len(seeds)} targets under {CORPUS}")


if __name__ == "__main__":
    main()
