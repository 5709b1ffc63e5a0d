"""Release: AWQ-INT4 of the RL model (`swallow-train quantize`). `config` (typed recipe
sections), `filter` (which generations may calibrate), `generate` (transformers / vLLM
sampling), `calibrate` (the calibration set), `awq` (llm-compressor), `gate` (bf16 vs
quantized), `run` (the steps in the stage directory). llm-compressor, vLLM and transformers
are imported inside functions only."""
