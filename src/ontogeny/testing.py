"""Small, fast fixtures for tests (yours and ours): a tiny random GPT-NeoX checkpoint series on disk."""

from __future__ import annotations

from pathlib import Path

import torch

TINY_TEXTS = [
    "def add(a, b):\n    return a + b\n",
    "The quick brown fox jumps over the lazy dog.",
    "class Foo:\n    \"\"\"A docstring.\"\"\"\n    pass\n",
    "import os\nprint(os.path.join('a', 'b'))\n",
    "Lists are mutable sequences, typically used to store collections of items.",
] * 20


def make_tokenizer(out: Path, vocab_size: int = 300):
    """A small byte-level BPE trained on a few strings, saved as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TINY_TEXTS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    fast.save_pretrained(str(out))
    return fast


def tiny_config(vocab_size: int = 300, **overrides):
    from transformers import GPTNeoXConfig

    kw = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              intermediate_size=64, max_position_embeddings=64, rotary_pct=0.25)
    kw.update(overrides)
    return GPTNeoXConfig(**kw)


def make_tiny_series(root: Path, steps=(0, 1, 4), seed: int = 0, **config_overrides) -> Path:
    """A series of random GPT-NeoX checkpoints (different seeds per step) plus a tokenizer."""
    from transformers import GPTNeoXForCausalLM

    root.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(root / "tokenizer")
    for i, step in enumerate(steps):
        torch.manual_seed(seed + i)
        model = GPTNeoXForCausalLM(tiny_config(len(tok), **config_overrides))
        model.save_pretrained(str(root / f"step_{step:06d}"))
    return root
