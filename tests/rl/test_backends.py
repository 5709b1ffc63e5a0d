"""The RL recipe's tagged backend union: shared algorithm sections, `backend` picking slime or
local, and each backend refusing (at compose time, naming the field and the fix) the options it
would ignore, including the whole section of the other backend."""

from __future__ import annotations

import pytest

from swallow_train.config import RecipeError, compose
from swallow_train.rl.config import Backend, RLAlgorithm
from swallow_train.rl.slime import SlimeError


def test_the_size_presets_pick_the_backend_and_its_options() -> None:
    tiny = compose("rl", ["model=tiny_dense"])
    assert tiny.backend is Backend.local
    assert tiny.slime == type(tiny.slime)()  # the unused section keeps its defaults
    big = compose("rl", ["model=qwen3_8b"])
    assert big.backend is Backend.slime and big.slime.zero_std_filter
    assert big.slime.over_sampling_batch_size == 96 and big.local == type(big.local)()
    # the tiny model on slime: the local section is at its defaults, so it composes
    assert compose("rl", ["model=tiny_dense", "backend=slime"]).backend is Backend.slime


def test_the_algorithm_is_the_recipes_shared_sections() -> None:
    r = compose("rl", ["model=tiny_dense"])
    algo = r.algorithm
    assert isinstance(algo, RLAlgorithm)
    assert (algo.data, algo.rollout, algo.loss, algo.optim, algo.evaluation, algo.checkpoint,
            algo.reward) == (r.data, r.rollout, r.loss, r.optim, r.evaluation, r.checkpoint,
                             r.reward)


REFUSED = [
    (["model=tiny_dense", "slime.colocate=false"],
     "slime.colocate=false: backend=local ignores it; set slime.colocate=true (its default) "
     "or backend=slime"),
    (["model=tiny_dense", "parallel.tp=2"],
     "parallel.tp=2: backend=local ignores it; set parallel.tp=1 (its default) or "
     "backend=slime"),
    (["model=tiny_dense", "reward.group_rm=true"],
     "reward.group_rm=true: backend=local ignores it; set reward.group_rm=false (its default) "
     "or backend=slime"),
    (["model=qwen3_8b", "backend=local"],
     "slime.max_tokens_per_gpu=26624: backend=local ignores it; set "
     "slime.max_tokens_per_gpu=null (its default) or backend=slime"),
    (["model=qwen3_8b", "local.exit_after=3"],
     "local.exit_after=3: backend=slime ignores it; set local.exit_after=null (its default) "
     "or backend=local"),
    (["model=qwen3_8b", "checkpoint.keep_last=5"],
     "checkpoint.keep_last=5: backend=slime ignores it; set checkpoint.keep_last=2 (its "
     "default) or backend=local"),
]


@pytest.mark.parametrize(("overrides", "message"), REFUSED)
def test_an_option_the_backend_ignores_is_refused(overrides: list[str], message: str) -> None:
    with pytest.raises(RecipeError) as err:
        compose("rl", overrides)
    assert message in str(err.value)


def test_every_ignored_option_is_listed_at_once() -> None:
    with pytest.raises(RecipeError) as err:
        compose("rl", ["model=tiny_dense", "slime.zero_std_filter=true", "parallel.cp=2",
                       "loss.advantage_estimator=gspo"])
    text = str(err.value)
    for field in ("slime.zero_std_filter=true", "parallel.cp=2",
                  "loss.advantage_estimator=gspo: the local backend implements grpo only"):
        assert field in text


def test_a_local_recipe_has_no_slime_job() -> None:
    with pytest.raises(SlimeError, match="backend=local: set backend=slime"):
        compose("rl", ["model=tiny_dense"]).slime_job()
