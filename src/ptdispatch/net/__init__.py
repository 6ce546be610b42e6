"""Networking helpers: addresses, relaying, upstream proxies, UDP framing."""
