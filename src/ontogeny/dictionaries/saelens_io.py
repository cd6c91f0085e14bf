"""Save and load dictionaries in the SAELens layout: `cfg.json` + `sae_weights.safetensors`.

Weights: W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc [d_sae], b_dec [d_in], threshold [d_sae]
(jumprelu; batchtopk is saved as jumprelu with its EMA threshold, as SAELens does). Any input scaling
is already folded into the weights (the trainer folds it), so a saved dictionary takes raw activations
and `normalize_activations` is "none". `cfg.json` carries SAELens's fields plus, under `metadata`,
the checkpoint step, site, hook_name and ontogeny's own config and provenance.
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
from ontogeny.errors import StoreError
from ontogeny.store.run import atomic_path, provenance

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SAELENS_ARCH = {"relu": "standard", "topk": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu"}


def save_dictionary(dictionary: Dictionary, path: str | Path, metadata: dict[str, Any] | None = None,
                    inputs: dict[str, str] | None = None) -> Path:
    """Write `path/` atomically: cfg.json (SAELens fields + metadata + provenance) and the weights."""
    path = Path(path)
    cfg = dictionary.cfg
    meta = dict(metadata or {})
    site = meta.get("site") or meta.get("hook_name")
    if site is not None:
        meta.setdefault("site", site)
        meta.setdefault("hook_name", site)
    meta.setdefault("hook_head_index", None)
    meta["ontogeny_rule"] = cfg.rule
    meta["provenance"] = provenance(cfg.model_dump(mode="json"), inputs)
    arch = SAELENS_ARCH[cfg.rule]
    out: dict[str, Any] = {
        "architecture": arch, "d_in": cfg.d_in, "d_sae": cfg.d_sae, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": cfg.apply_b_dec_to_input, "normalize_activations": "none",
        "reshape_activations": "none", "metadata": meta,
    }
    if arch == "topk":
        out.update(k=cfg.k, rescale_acts_by_decoder_norm=False)
    tensors = {
        "W_enc": dictionary.W_enc_DF.detach().float().cpu().contiguous(),
        "W_dec": dictionary.W_dec_FD.detach().float().cpu().contiguous(),
        "b_enc": dictionary.b_enc_F.detach().float().cpu().contiguous(),
        "b_dec": dictionary.b_dec_D.detach().float().cpu().contiguous(),
    }
    if arch == "jumprelu":
        th = dictionary.threshold_F
        if th is None:  # batchtopk before its EMA started: no threshold learnt yet
            th = torch.zeros(cfg.d_sae)
        tensors["threshold"] = th.detach().float().cpu().contiguous()
    with atomic_path(path) as tmp:
        tmp.mkdir()
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / CFG_FILE).write_text(json.dumps(out, indent=2, sort_keys=True, default=str))
    return path


def read_cfg(path: str | Path) -> dict[str, Any]:
    """The cfg.json of a dictionary folder."""
    f = Path(path) / CFG_FILE
    if not f.exists():
        raise StoreError(f"no dictionary at {path} (missing {CFG_FILE})")
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise StoreError(f"{f} is not valid JSON: {e}") from e


def load_dictionary(path: str | Path, device: str | torch.device = "cpu") -> Dictionary:
    """Load a SAELens-layout folder (written here or by SAELens) as a `Dictionary` in eval mode."""
    path = Path(path)
    raw = read_cfg(path)
    meta = raw.get("metadata") or {}
    arch = raw.get("architecture", "standard")
    for key in ("d_in", "d_sae"):
        if key not in raw:
            raise StoreError(f"{path / CFG_FILE} lacks {key!r}")
    if raw.get("normalize_activations", "none") not in ("none", None):
        raise StoreError(f"{path / CFG_FILE}: normalize_activations={raw['normalize_activations']!r} is not "
                         "supported; fold the normalisation into the weights first")
    if raw.get("rescale_acts_by_decoder_norm"):
        raise StoreError(f"{path / CFG_FILE}: rescale_acts_by_decoder_norm=true is not supported")
    rule = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu", "batchtopk": "batchtopk"}.get(arch)
    if rule is None:
        raise StoreError(f"{path / CFG_FILE}: architecture {arch!r} is not supported "
                         "(standard, topk, jumprelu, batchtopk)")
    if arch == "jumprelu" and meta.get("ontogeny_rule") == "batchtopk":
        rule = "batchtopk"
    ont = (meta.get("provenance") or {}).get("config") or {}
    fields = {k: v for k, v in ont.items() if k in DictionaryConfig.model_fields}
    fields.update(rule=rule, d_in=int(raw["d_in"]), d_sae=int(raw["d_sae"]),
                  apply_b_dec_to_input=bool(raw.get("apply_b_dec_to_input", True)))
    if "k" in raw:
        fields["k"] = int(raw["k"])
    elif rule == "batchtopk" and "k" not in fields:
        fields["k"] = 1
    cfg = DictionaryConfig(**fields)
    try:
        w = load_file(str(path / WEIGHTS_FILE))
    except (SafetensorError, OSError, FileNotFoundError) as e:
        raise StoreError(f"cannot read {path / WEIGHTS_FILE}: {e}") from e
    need = {"W_enc": (cfg.d_in, cfg.d_sae), "W_dec": (cfg.d_sae, cfg.d_in), "b_enc": (cfg.d_sae,),
            "b_dec": (cfg.d_in,)}
    if rule in ("jumprelu", "batchtopk"):
        need["threshold"] = (cfg.d_sae,)
    for key, shape in need.items():
        if key not in w:
            raise StoreError(f"{path / WEIGHTS_FILE} lacks tensor {key!r}")
        if tuple(w[key].shape) != shape:
            raise StoreError(f"{path / WEIGHTS_FILE}: {key} has shape {tuple(w[key].shape)}, expected {shape}")
    d = Dictionary(cfg)
    with torch.no_grad():
        d.W_enc_DF.copy_(w["W_enc"].float())
        d.W_dec_FD.copy_(w["W_dec"].float())
        d.b_enc_F.copy_(w["b_enc"].float())
        d.b_dec_D.copy_(w["b_dec"].float())
        if "threshold" in need:
            d.rule.load_threshold(w["threshold"].float())
    d.metadata = meta  # type: ignore[attr-defined]
    return d.to(device).eval()
