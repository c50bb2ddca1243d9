"""The always-on edge: the tiny relay on the port clients use, in front of the daemon.

Standard library only on its hot path, so it starts fast and stays up while the daemon
(mitmproxy, ledger, API) stops, crashes or is upgraded behind it.
"""

from halton_meter.edge.listener import EdgeSettings, EdgeStartError, run_edge

__all__ = ["EdgeSettings", "EdgeStartError", "run_edge"]
