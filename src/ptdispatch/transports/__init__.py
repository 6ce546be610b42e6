"""Transports: sans-IO engines that wrap a byte stream, and their option parsers."""
