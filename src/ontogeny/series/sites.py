"""Hook sites named as in TransformerLens/SAELens, captured or patched with plain forward hooks.

Sites on a GPT-NeoX (Pythia) model from `transformers`:

| site                          | shape      | where                                   |
|-------------------------------|------------|-----------------------------------------|
| `blocks.{L}.hook_resid_pre`   | [B, T, D]  | input of layer L                        |
| `blocks.{L}.hook_resid_post`  | [B, T, D]  | output of layer L                       |
| `blocks.{L}.hook_attn_out`    | [B, T, D]  | attention output (after `dense`)        |
| `blocks.{L}.hook_mlp_out`     | [B, T, D]  | MLP output                              |
| `blocks.{L}.attn.hook_z`      | [B, T, H, d_head] | per-head attention result before `dense` |
| `blocks.{L}.attn.hook_pattern`| [B, H, T, T] | attention probabilities (capture only) |

Capturing is a hook that keeps a reference to a tensor the forward pass computes anyway, so it costs
almost nothing beyond the forward itself; patching replaces that tensor with `fn(tensor)`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ontogeny.errors import SiteError

SITE_KINDS = ("hook_resid_pre", "hook_resid_post", "hook_attn_out", "hook_mlp_out", "attn.hook_z",
              "attn.hook_pattern")
_SITE_RE = re.compile(r"^blocks\.(\d+)\.(" + "|".join(re.escape(k) for k in SITE_KINDS) + r")$")

Patch = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Site:
    """A parsed hook site: layer index and kind (e.g. 1, "hook_resid_post")."""

    layer: int
    kind: str

    @property
    def name(self) -> str:
        return f"blocks.{self.layer}.{self.kind}"


def parse_site(name: str, n_layers: int | None = None) -> Site:
    """Parse `blocks.{L}.<kind>`; raise SiteError naming the site when unknown or out of range."""
    m = _SITE_RE.match(name)
    if not m:
        raise SiteError(f"unknown site {name!r}: expected blocks.<L>.<kind> with kind in {SITE_KINDS}")
    site = Site(int(m.group(1)), m.group(2))
    if n_layers is not None and site.layer >= n_layers:
        raise SiteError(f"site {name!r} asks for layer {site.layer} but the model has {n_layers} layers")
    return site


def layers_of(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks of a GPT-NeoX model (GPTNeoXForCausalLM or GPTNeoXModel)."""
    base = getattr(model, "gpt_neox", model)
    if not hasattr(base, "layers"):
        raise SiteError(f"{type(model).__name__} has no GPT-NeoX layers; sites need a GPT-NeoX model")
    return base.layers


def n_heads_of(model: nn.Module) -> int:
    return int(model.config.num_attention_heads)


def site_width(model: nn.Module, name: str) -> int:
    """Flattened width of one token's activation at a site (d_model, or H*d_head for hook_z)."""
    site = parse_site(name, len(layers_of(model)))
    if site.kind == "attn.hook_pattern":
        raise SiteError(f"site {name!r} is a [B,H,T,T] pattern and has no per-token width")
    return int(model.config.hidden_size)


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _replace_first(out, new):
    return (new, *out[1:]) if isinstance(out, tuple) else new


def _register(model: nn.Module, site: Site, fn: Callable[[torch.Tensor], torch.Tensor | None],
              ) -> torch.utils.hooks.RemovableHandle:
    """Attach `fn` at a site; `fn` sees the site's tensor and may return a replacement (or None)."""
    layer = layers_of(model)[site.layer]
    n_heads = n_heads_of(model)

    if site.kind == "hook_resid_pre":
        def pre(module, args, kwargs):
            if args:
                new = fn(args[0])
                return ((new, *args[1:]), kwargs) if new is not None else None
            new = fn(kwargs["hidden_states"])
            return (args, {**kwargs, "hidden_states": new}) if new is not None else None
        return layer.register_forward_pre_hook(pre, with_kwargs=True)

    if site.kind == "attn.hook_z":
        def pre_z(module, args):
            z = args[0]
            z_BTHd = z.view(*z.shape[:-1], n_heads, z.shape[-1] // n_heads)
            new = fn(z_BTHd)
            return (new.reshape(z.shape), *args[1:]) if new is not None else None
        return layer.attention.dense.register_forward_pre_hook(pre_z)

    module = {"hook_resid_post": layer, "hook_attn_out": layer.attention, "hook_mlp_out": layer.mlp,
              "attn.hook_pattern": layer.attention}[site.kind]
    if site.kind == "attn.hook_pattern":
        def post_pattern(module, args, out):
            if out[1] is None:
                raise SiteError(f"{site.name}: attention weights unavailable; capture with eager attention")
            new = fn(out[1])
            return (out[0], new, *out[2:]) if new is not None else None
        return module.register_forward_hook(post_pattern)

    def post(module, args, out):
        new = fn(_first(out))
        return _replace_first(out, new) if new is not None else None
    return module.register_forward_hook(post)


@contextlib.contextmanager
def _eager_attention(model: nn.Module, needed: bool) -> Iterator[None]:
    """Temporarily switch to eager attention so attention probabilities are materialised."""
    if not needed:
        yield
        return
    cfg = model.config
    old = cfg._attn_implementation
    cfg._attn_implementation = "eager"
    try:
        yield
    finally:
        cfg._attn_implementation = old


@contextlib.contextmanager
def hooks(model: nn.Module, fns: dict[str, Callable[[torch.Tensor], torch.Tensor | None]]) -> Iterator[None]:
    """Attach one function per site for the duration of the block (removed even on error)."""
    n_layers = len(layers_of(model))
    parsed = {name: parse_site(name, n_layers) for name in fns}
    handles = []
    try:
        with _eager_attention(model, any(s.kind == "attn.hook_pattern" for s in parsed.values())):
            for name, fn in fns.items():
                handles.append(_register(model, parsed[name], fn))
            yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def capture(model: nn.Module, input_ids_BT: torch.Tensor, sites: Sequence[str],
            stop_early: bool = True) -> dict[str, torch.Tensor]:
    """Run the model once and return the activation at each site ({site: tensor}).

    With `stop_early`, the forward stops after the last layer any site needs (no unembedding), the
    way SAELens's `stop_at_layer` saves the later layers' cost.
    """
    cache: dict[str, torch.Tensor] = {}
    n_layers = len(layers_of(model))
    last = max(parse_site(s, n_layers).layer for s in sites) if sites else -1

    class _Stop(Exception):
        pass

    def keeper(name: str):
        def keep(t: torch.Tensor) -> None:
            cache[name] = t.detach()
        return keep

    fns = {s: keeper(s) for s in sites}
    with hooks(model, fns):
        stop_handle = None
        if stop_early and last < n_layers - 1:
            def stop(module, args, out):
                raise _Stop
            # registered after the site hooks, so those on the same layer run first
            stop_handle = layers_of(model)[last].register_forward_hook(stop)
        try:
            model(input_ids=input_ids_BT)
        except _Stop:
            pass
        finally:
            if stop_handle is not None:
                stop_handle.remove()
    missing = [s for s in sites if s not in cache]
    if missing:
        raise SiteError(f"sites {missing} were not reached in the forward pass")
    return cache


@contextlib.contextmanager
def patched(model: nn.Module, patches: dict[str, Patch]) -> Iterator[None]:
    """Replace each site's activation by `patch(activation)` within the block (splicing, ablation)."""
    with hooks(model, dict(patches)):
        yield
