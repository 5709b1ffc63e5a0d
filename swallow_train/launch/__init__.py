"""Rendered job scripts for ABCI 3.0 (PBS), TSUBAME 4.0 (Grid Engine), Slurm and local runs."""
