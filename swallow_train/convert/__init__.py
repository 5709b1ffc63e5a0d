"""Hugging Face <-> megatron-core conversion of Qwen3 / Qwen3-MoE: name tables (`names`), tensor
transforms (`transforms`), safetensors I/O (`shards`, `hf_io`) and `swallow-train export` (`cli`).
Pure torch + safetensors: nothing here imports megatron (that is `swallow_train.mcore.hf_import`
and `swallow_train.mcore.hf_export`).
"""
