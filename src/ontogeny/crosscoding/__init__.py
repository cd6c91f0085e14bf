"""Crosscoding through time: RelDec/RelIE, presence classes for any K, latent scaling, the sparsity
diagnostic, activation sources (store or files), planted life histories and the `crosscode` pipeline.

Bayazit, Mueller & Bosselut 2025, "Crosscoding Through Time" (arXiv 2509.05291). The crosscoder model
itself lives in `ontogeny.dictionaries.crosscoder`; indirect effects in `ontogeny.causal.attribution`
(which does not import this package; RelIE is `crosscoding.reldec.rel_ie`).
"""
