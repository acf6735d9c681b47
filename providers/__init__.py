"""dlscaler providers: one node-pool adapter per cloud, behind ``dlscaler.pool.NodePoolProvider``.

``build_provider(pool)`` picks the adapter; cloud SDKs are imported only when needed.
"""

from providers.factory import build_provider

__all__ = ["build_provider"]
