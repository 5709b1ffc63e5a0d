"""The pipeline's p2p tensor shapes with CP > 1 (and SP): megatron's `get_tensor_shapes` divides
the sequence length it is given by CP itself, so `schedule_seq_length` must hand it the whole
length whether the micro-batch is split over CP already (packed THD) or not (CPT)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from megatron.core.pipeline_parallel.schedules import get_tensor_shapes

from swallow_train.mcore.step import schedule_seq_length


def _group(size: int) -> SimpleNamespace:
    return SimpleNamespace(size=lambda: size)


@pytest.mark.parametrize("tp,cp,sp", [(1, 1, False), (1, 2, False), (2, 2, True), (4, 2, True),
                                      (2, 4, False)])
@pytest.mark.parametrize("packed", [False, True])
def test_p2p_shape_is_what_a_stage_sends(tp: int, cp: int, sp: bool, packed: bool) -> None:
    seq, hidden, mbs = 4096, 64, 1
    if packed:  # data_sft hands the step this rank's CP share of the pack, in THD format
        batch = {"tokens": torch.zeros(mbs, seq // cp, dtype=torch.long),
                 "packed_seq_params": object()}
    else:  # CPT: the whole sequence; forward_step takes the CP share
        batch = {"tokens": torch.zeros(mbs, seq, dtype=torch.long)}
    config = SimpleNamespace(sequence_parallel=sp, hidden_size=hidden)
    shapes = get_tensor_shapes(seq_length=schedule_seq_length(batch, cp), micro_batch_size=mbs,
                               decoder_seq_length=None, config=config, tp_group=_group(tp),
                               cp_group=_group(cp))
    # a stage's hidden states: [s / CP (/ TP with SP), b, h]
    sent = (seq // cp // (tp if sp else 1), mbs, hidden)
    assert shapes == [sent]
