"""`python -m swallow_train <command> ...` (what torchrun and mpirun launch)."""

from swallow_train.cli import main

if __name__ == "__main__":  # guarded: the checkpoint writer spawns processes that import this
    raise SystemExit(main())
