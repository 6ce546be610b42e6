"""SOCKS server side: SOCKS5 (RFC 1928, RFC 1929, PT 3.0 method 0x09) and SOCKS4/4a.

Each is a sans-IO core (:mod:`.protocol`, :mod:`.socks4`) behind one asyncio frontend (:mod:`.server`).
"""
