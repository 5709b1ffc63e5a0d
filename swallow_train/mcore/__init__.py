"""The only part of swallow-train that imports megatron-core (and Transformer Engine when present).

Modules here import megatron lazily at module level; nothing outside this package does.
"""
