"""Save and load dictionaries in the SAELens layout (`cfg.json` + `sae_weights.safetensors`), and load
EleutherAI sparsify's layout (`cfg.json` + `sae.safetensors`).

Weights: W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc [d_sae], b_dec [d_in], plus what the rule adds
(`threshold` for jumprelu, and for batchtopk kinds, which are saved as SAELens saves them: as jumprelu).
Every rule says what it writes and reads (`rules/base.py`: architecture, cfg fields, tensors, metadata);
this module knows no rule by name. Any input scaling is folded into the weights (the trainer folds it),
so a saved dictionary takes raw activations and `normalize_activations` is "none". `cfg.json` carries
SAELens's fields plus, under `metadata`, the checkpoint step, site, hook_name, ontogeny's own config and
provenance. `write_folder` / `read_folder` are the one writer and reader of the layout; the crosscoder
uses them too.

Foreign folders:
- SAELens TopK with `rescale_acts_by_decoder_norm: true` encodes with pre * ||d_i|| and decodes with
  codes / ||d_i||. That equals a plain TopK dictionary with W_enc' = W_enc n, b_enc' = b_enc n and
  W_dec' = W_dec / n (n_i = ||d_i||); the fold is applied exactly when some row is not of unit norm
  (within 1e-5), and is the identity otherwise.
- sparsify (`encoder.weight` [F, D], `encoder.bias` [F], `W_dec` [F, D], `b_dec` [D]; cfg `k`,
  `num_latents` or `expansion_factor`, `activation`): codes = TopK_k(ReLU((x - b_dec) W^T + b)), i.e.
  ontogeny's topk with W_enc = encoder.weight^T. Transcoders, skip connections and groupmax are refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ontogeny.dictionaries.config import DictionaryConfig
from ontogeny.dictionaries.model import Dictionary
from ontogeny.dictionaries.rules import RULES, rule_for_saelens
from ontogeny.errors import ConfigError, StoreError
from ontogeny.store.layout import CFG_FILE, WEIGHTS_FILE
from ontogeny.store.run import atomic_path, provenance

__all__ = ["CFG_FILE", "WEIGHTS_FILE", "load_dictionary", "load_sparsify", "read_folder", "save_dictionary",
           "write_folder"]
SPARSIFY_WEIGHTS_FILE = "sae.safetensors"
SAELENS_ARCH = {name: rule.saelens_architecture for name, rule in RULES.items()}
UNIT_NORM_TOL = 1e-5


# ---------------------------------------------------------------------- the layout
def write_folder(path: str | Path, cfg: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Path:
    """Write `path/` atomically: `cfg.json` (sorted keys) and `sae_weights.safetensors`."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.mkdir()
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / WEIGHTS_FILE),
                  metadata={"format": "pt"})
        (tmp / CFG_FILE).write_text(json.dumps(cfg, indent=2, sort_keys=True, default=str))
    return path


def read_cfg(path: str | Path) -> dict[str, Any]:
    """The cfg.json of a dictionary folder."""
    f = Path(path) / CFG_FILE
    if not f.exists():
        raise StoreError(f"no dictionary at {path} (missing {CFG_FILE})")
    try:
        raw = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(f"{f} is not valid JSON: {e}") from e
    if not isinstance(raw, dict):
        raise StoreError(f"{f} must hold a JSON object")
    return raw


def read_tensors(file: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file (StoreError naming the file)."""
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, FileNotFoundError, ValueError) as e:
        raise StoreError(f"cannot read {file}: {e}") from e


def read_folder(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(cfg.json, tensors) of a folder written by `write_folder` or by SAELens."""
    path = Path(path)
    return read_cfg(path), read_tensors(path / WEIGHTS_FILE)


def _check_tensors(file: Path, w: dict[str, torch.Tensor], need: dict[str, tuple[int, ...]]) -> None:
    for key, shape in need.items():
        if key not in w:
            raise StoreError(f"{file} lacks tensor {key!r}")
        if tuple(w[key].shape) != shape:
            raise StoreError(f"{file}: {key} has shape {tuple(w[key].shape)}, expected {shape}")


# ---------------------------------------------------------------------- save
def save_dictionary(dictionary: Dictionary, path: str | Path, metadata: dict[str, Any] | None = None,
                    inputs: dict[str, str] | None = None) -> Path:
    """Write `path/` atomically: cfg.json (SAELens fields + metadata + provenance) and the weights."""
    cfg = dictionary.cfg
    rule = dictionary.rule
    meta = dict(metadata or {})
    site = meta.get("site") or meta.get("hook_name")
    if site is not None:
        meta.setdefault("site", site)
        meta.setdefault("hook_name", site)
    meta.setdefault("hook_head_index", None)
    meta["ontogeny_rule"] = cfg.rule
    meta.update(rule.saelens_metadata())
    meta["provenance"] = provenance(cfg.model_dump(mode="json"), inputs)
    out: dict[str, Any] = {
        "architecture": rule.saelens_architecture, "d_in": cfg.d_in, "d_sae": cfg.d_sae, "dtype": "float32",
        "device": "cpu", "apply_b_dec_to_input": cfg.apply_b_dec_to_input, "normalize_activations": "none",
        "reshape_activations": "none", "metadata": meta, **rule.saelens_fields(),
    }
    tensors = {"W_enc": dictionary.W_enc_DF, "W_dec": dictionary.W_dec_FD, "b_enc": dictionary.b_enc_F,
               "b_dec": dictionary.b_dec_D, **rule.saelens_tensors()}
    return write_folder(path, out, {k: v.detach().float() for k, v in tensors.items()})


# ---------------------------------------------------------------------- load
def load_dictionary(path: str | Path, device: str | torch.device = "cpu") -> Dictionary:
    """Load a SAELens-layout folder (written here or by SAELens) or a sparsify folder as a `Dictionary`."""
    path = Path(path)
    if not (path / WEIGHTS_FILE).exists() and (path / SPARSIFY_WEIGHTS_FILE).exists():
        return load_sparsify(path, device)
    raw = read_cfg(path)
    where = path / CFG_FILE
    meta = raw.get("metadata") or {}
    arch = raw.get("architecture", "standard")
    for key in ("d_in", "d_sae"):
        if key not in raw:
            raise StoreError(f"{where} lacks {key!r}")
    if raw.get("normalize_activations", "none") not in ("none", None):
        raise StoreError(f"{where}: normalize_activations={raw['normalize_activations']!r} is not "
                         "supported; fold the normalisation into the weights first")
    rule = rule_for_saelens(arch, meta)
    if rule is None:
        known = sorted({a for r in RULES.values() for a in (r.saelens_architecture, *r.saelens_reads)})
        raise StoreError(f"{where}: architecture {arch!r} is not supported ({', '.join(known)})")
    rescale = bool(raw.get("rescale_acts_by_decoder_norm"))
    if rescale and not rule.ranks_latents:
        raise StoreError(f"{where}: rescale_acts_by_decoder_norm=true is only defined for top-k kinds, "
                         f"not architecture {arch!r}")
    ont = (meta.get("provenance") or {}).get("config") or {}
    fields = {k: v for k, v in ont.items() if k in DictionaryConfig.model_fields}
    fields.update(rule=rule.name, d_in=int(raw["d_in"]), d_sae=int(raw["d_sae"]),
                  apply_b_dec_to_input=bool(raw.get("apply_b_dec_to_input", True)))
    fields.update(rule.config_from_saelens(raw, fields))
    try:
        cfg = DictionaryConfig(**fields)
    except (ValueError, ConfigError) as e:
        raise StoreError(f"{where}: {e}") from e
    w = read_tensors(path / WEIGHTS_FILE)
    need = {"W_enc": (cfg.d_in, cfg.d_sae), "W_dec": (cfg.d_sae, cfg.d_in), "b_enc": (cfg.d_sae,),
            "b_dec": (cfg.d_in,), **rule.saelens_tensor_shapes(cfg)}
    _check_tensors(path / WEIGHTS_FILE, w, need)
    W_enc, W_dec, b_enc = w["W_enc"].float(), w["W_dec"].float(), w["b_enc"].float()
    if rescale:
        W_enc, b_enc, W_dec = fold_decoder_norm(W_enc, b_enc, W_dec)
    d = _build(cfg, W_enc, W_dec, b_enc, w["b_dec"].float())
    d.rule.load_saelens({k: v.float() for k, v in w.items()}, meta)
    d.metadata = meta  # type: ignore[attr-defined]
    return d.to(device).eval()


def fold_decoder_norm(W_enc_DF: torch.Tensor, b_enc_F: torch.Tensor, W_dec_FD: torch.Tensor,
                      tol: float = UNIT_NORM_TOL) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SAELens `rescale_acts_by_decoder_norm` folded into the weights (see module docstring); unchanged
    when every decoder row already has unit norm (within `tol`)."""
    n_F = W_dec_FD.norm(dim=1)
    if bool(((n_F - 1).abs() <= tol).all()):
        return W_enc_DF, b_enc_F, W_dec_FD
    if not bool((n_F > 0).all()):
        raise StoreError("rescale_acts_by_decoder_norm=true with a zero decoder row cannot be folded")
    return W_enc_DF * n_F, b_enc_F * n_F, W_dec_FD / n_F[:, None]


def _build(cfg: DictionaryConfig, W_enc, W_dec, b_enc, b_dec) -> Dictionary:
    d = Dictionary(cfg)
    with torch.no_grad():
        d.W_enc_DF.copy_(W_enc)
        d.W_dec_FD.copy_(W_dec)
        d.b_enc_F.copy_(b_enc)
        d.b_dec_D.copy_(b_dec)
    return d


def load_sparsify(path: str | Path, device: str | torch.device = "cpu") -> Dictionary:
    """Load an EleutherAI sparsify folder (`cfg.json` + `sae.safetensors`) as a topk `Dictionary`."""
    path = Path(path)
    raw = read_cfg(path)
    where, file = path / CFG_FILE, path / SPARSIFY_WEIGHTS_FILE
    if "d_in" not in raw or "k" not in raw:
        raise StoreError(f"{where}: a sparsify cfg.json needs 'd_in' and 'k'")
    for flag in ("transcode", "skip_connection", "embed_skip", "gram_lookup"):
        if raw.get(flag):
            raise StoreError(f"{where}: sparsify {flag}=true is not supported (a plain sparse autoencoder only)")
    if raw.get("activation", "topk") != "topk":
        raise StoreError(f"{where}: sparsify activation={raw['activation']!r} is not supported (topk only)")
    d_in = int(raw["d_in"])
    d_sae = int(raw.get("num_latents") or 0) or d_in * int(raw.get("expansion_factor", 32))
    try:
        cfg = DictionaryConfig(rule="topk", d_in=d_in, d_sae=d_sae, k=int(raw["k"]),
                               decoder_norm="unit" if raw.get("normalize_decoder", True) else "free")
    except (ValueError, ConfigError) as e:
        raise StoreError(f"{where}: {e}") from e
    w = read_tensors(file)
    if "W_skip" in w:
        raise StoreError(f"{file} holds a skip connection (W_skip), which is not supported")
    _check_tensors(file, w, {"encoder.weight": (d_sae, d_in), "encoder.bias": (d_sae,), "W_dec": (d_sae, d_in),
                             "b_dec": (d_in,)})
    d = _build(cfg, w["encoder.weight"].float().t(), w["W_dec"].float(), w["encoder.bias"].float(),
               w["b_dec"].float())
    d.metadata = {"source": "sparsify", "sparsify_config": raw}  # type: ignore[attr-defined]
    return d.to(device).eval()
