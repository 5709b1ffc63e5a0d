"""Data: manifests, synthetic corpora, tokenization to megatron indexed datasets, blending,
chat rendering, PII filtering and packing for SFT. No megatron import at module level."""
