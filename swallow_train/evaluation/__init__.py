"""Evaluation of a Hugging Face checkpoint with lm-evaluation-harness (`swallow-train eval`):
the offline tiny suite (generated here), the Swallow-leaderboard-style suites, and math answers
scored with the RL reward's verifier (pass@1 of k samples).

    swallow-train eval model=tiny_dense target=sft                 # runs/tiny_dense/sft/eval/tiny/
    swallow-train eval model=qwen3_8b target=cpt eval_suite=swallow_pretrained
"""
