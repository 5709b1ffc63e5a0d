"""`swallow-train doctor`: a preflight of one node before a cluster allocation is spent.

    swallow-train doctor cpt model=qwen3_8b cluster=abci3     # on an allocated GPU node
    swallow-train doctor sft model=tiny_dense                 # the CPU subset (~1 minute)

`swallow_train/check_report.py` holds the result rows, the table and the JSON, and
`swallow_train/spawn.py` runs a function on N local ranks (both core: the megatron-core
self-tests use them too); `checks.py` the environment checks
(versions, GPUs, directories, the shared filesystem, the tokenizer); `bandwidth.py` the NCCL
all-reduce bus bandwidth; `cli.py` the command. The megatron-core self-tests live in
`swallow_train/mcore/selftest*.py` (the only package that imports megatron).
"""
