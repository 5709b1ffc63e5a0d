"""One thin entry point per stage: prepare, cpt, sft, rl, pipeline (`swallow-train <stage>`)."""
