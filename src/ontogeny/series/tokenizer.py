"""A byte-level BPE tokenizer trained with `tokenizers` on the embedded corpus, saved with the series.

Byte-level pre-tokenisation (as GPT-2/Pythia) means every string encodes, and a word preceded by a space
encodes the same way wherever it appears, so a repeated span of words is a repeated span of tokens.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from ontogeny.errors import SeriesError
from ontogeny.series.corpus import Corpus

EOS = "<|endoftext|>"
PAD = "<|padding|>"


def train_tokenizer(corpus: Corpus, vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of `vocab_size` tokens on the corpus' train documents."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, PAD], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator((d.text for d in corpus.train), trainer=trainer, length=len(corpus.train))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS,
                                   pad_token=PAD)


def alphabet_token_ids(tokenizer: PreTrainedTokenizerFast, words: list[str]) -> torch.Tensor:
    """Token ids of " word" for each alphabet word that is one token; the synthetic sub-vocabulary."""
    ids = []
    for w in words:
        enc = tokenizer.encode(" " + w, add_special_tokens=False)
        if len(enc) == 1:
            ids.append(enc[0])
    if len(ids) < 8:
        raise SeriesError(f"only {len(ids)} alphabet words are single tokens; raise vocab_size")
    return torch.tensor(ids, dtype=torch.long)


def ordinary_token_ids(tokenizer: PreTrainedTokenizerFast) -> torch.Tensor:
    """All token ids except the special ones, sorted; the whole-vocabulary induction test draws from it."""
    special = set(tokenizer.all_special_ids)
    return torch.tensor(sorted(i for i in tokenizer.get_vocab().values() if i not in special))


def load_tokenizer(folder: str | Path) -> PreTrainedTokenizerFast:
    """Load a saved series tokenizer, naming the folder when it is missing or unreadable."""
    folder = Path(folder)
    if not (folder / "tokenizer.json").is_file():
        raise SeriesError(f"tokenizer folder {folder} has no tokenizer.json")
    try:
        return PreTrainedTokenizerFast.from_pretrained(str(folder))
    except Exception as e:  # tokenizers raises its own exception types on a corrupt file
        raise SeriesError(f"cannot load the tokenizer in {folder}: {e}") from e
