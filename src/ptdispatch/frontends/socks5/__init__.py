"""SOCKS5 server side (RFC 1928, RFC 1929, PT 3.0 method 0x09): sans-IO core + asyncio frontend."""
