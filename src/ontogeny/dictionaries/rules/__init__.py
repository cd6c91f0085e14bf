"""The registry of activation rules: every module of this package defines one `Rule` subclass, which
registers itself under its `name` in `RULES`. Adding a rule is adding one module here (see
docs/CONTRIBUTING.md, "Adding a dictionary rule").

| rule                 | codes (training)                        | penalty / extra loss                      |
|----------------------|-----------------------------------------|-------------------------------------------|
| relu                 | ReLU(pre)                               | l1 * sum_i a_i ||d_i||                     |
| topk                 | top-k of ReLU(pre) per token            | aux-k on dead latents                     |
| batchtopk            | top-(k*B) of ReLU(pre) over the batch   | aux-k; inference: a learnt threshold      |
| jumprelu             | pre * H(pre - theta_i), STE on theta    | l0 * sum_i H(pre_i - theta_i)             |
| matryoshka_batchtopk | as batchtopk                            | every prefix reconstructs; aux-k          |
"""

from __future__ import annotations

import importlib
import pkgutil

from ontogeny.dictionaries.rules.base import RULES, Rule, make_rule, rule_for_saelens

for _mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_mod.name}")

from ontogeny.dictionaries.rules.batchtopk import batch_topk_indices  # noqa: E402

__all__ = ["RULES", "Rule", "batch_topk_indices", "make_rule", "rule_for_saelens"]
