"""Crosscoding through time: RelDec/RelIE classes, latent-scaling diagnostic, the `crosscode` pipeline.

Bayazit, Mueller & Bosselut 2025, "Crosscoding Through Time" (arXiv 2509.05291). The crosscoder model
itself lives in `ontogeny.dictionaries.crosscoder`; indirect effects in `ontogeny.causal.attribution`.
"""
