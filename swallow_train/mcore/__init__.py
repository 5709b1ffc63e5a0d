"""The only part of swallow-train that imports megatron-core (and Transformer Engine when present).

Modules here import megatron lazily at module level; nothing outside this package does.
"""

import warnings as _warnings

# Messages megatron-core and torch.distributed repeat every run (or every step) that ask nothing
# of a user: the CPU fallbacks when TE/Apex are absent (TE is used on GPU nodes that have it),
# deprecations inside megatron-core's own calls, and the `.grad` probe of the CPU runtime.
_NOISE = (
    r"Transformer Engine and Apex are not installed",
    r"Apex is not installed",
    r"full scope is deprecated",
    r"The \.grad attribute of a Tensor that is not a leaf Tensor is being accessed",
    r"Please use DTensor instead and we are deprecating ShardedTensor",
    r"`load_state_dict` is deprecated",
    r"`torch\.distributed\.\w+` is deprecated",
)
for _message in _NOISE:
    _warnings.filterwarnings("ignore", message=_message)
