"""Traffic capture: the mitmproxy addon, the stream tap, and the embedded proxy server."""
