"""The one config of capability probes (a study's `[capabilities.config]` and the CLI read this model)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class PromptPair(BaseModel):
    """A user prompt with the token that should follow it and one that should not."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str
    correct: str
    incorrect: str


class CapabilityConfig(BaseModel):
    """Which probes to run and on how many random prompts (the same prompts at every checkpoint, by `seed`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    probes: list[str] = Field(
        ["repetition", "digits", "brackets", "pairs"],
        description="registered probes to run (ontogeny.capabilities.probes.PROBES); a probe the tokenizer "
        "cannot express (e.g. no digit tokens) or one without inputs (pairs without `pairs`) is skipped",
    )
    n_prompts: int = Field(32, ge=1, description="random prompts per probe")
    rep_len: int = Field(16, ge=2, description="L: length of the repeated random segment")
    vocab_limit: int | None = Field(None, description="draw random tokens from ids < this (default: all)")
    token_pool: list[int] | None = Field(None, description="draw random tokens from these ids instead "
                                                           "(e.g. the sub-vocabulary a small model learnt to copy)")
    n_digits: int = Field(8, ge=2, description="digits of the paper's repetition prompt")
    bracket_pairs: int = Field(6, ge=1, description="bracket pairs per random balanced string")
    pairs: list[PromptPair] = Field([], description="user prompt pairs for the logit-difference probe")
    seed: int = Field(0, description="seed of the random prompts")

    @field_validator("probes")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        from ontogeny.capabilities.probes import PROBES

        unknown = [n for n in names if n not in PROBES]
        if unknown:
            raise ValueError(f"unknown probe(s) {unknown}; registered: {sorted(PROBES)}")
        return names
