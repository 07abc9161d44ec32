"""Local, stateful stand-ins for the platforms' HTTP APIs (TikTok Shop, Shopify, Amazon, eBay).

Each speaks its platform's real protocol (paths, envelopes, signing, paging, statuses, error
codes, rate limits) and keeps its state in the `sandbox` tables, so the web server, the q cluster
and CLI commands all see the same "remote" platform. Never enabled in production.
"""
