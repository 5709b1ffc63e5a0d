"""RLVR: verifiable math rewards (`reward`, `verify`, `answer`), RL prompt data (`prompts`,
`prompt_rows`; the tiny set is `data/tiny_math`), the slime job (`slime`, its flag table
`slime_flags`, `megatron_args`, the typed job `slime_job`) and the local GRPO backend (`grpo`,
`rollout`, `local`). Nothing here imports slime (it is not installed here); slime imports
`swallow_train.rl.reward` by dotted path on the cluster."""
