"""Head census: per-head attention scores and ablation effects over a checkpoint series."""
