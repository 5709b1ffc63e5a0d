"""Serving an export with vLLM: `swallow-train serve runs/<name>/<stage>/hf [--port N]`."""
