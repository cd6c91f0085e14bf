"""What each part of the report is: its section, what a figure shows, and what would count as the claim.

One table, read by the page builder: a figure whose name starts with `prefix` goes to `section` with
the two sentences below it. A figure no prefix matches goes to "Other figures" with no claim sentence.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FigureNote:
    prefix: str
    section: str
    shows: str
    claim: str


SECTION_ORDER = [
    ("series", "Training of the series", "The checkpoint series every analysis reads."),
    ("capabilities", "Capability curves and emergence", "Capability probes over the checkpoints and the "
     "step of each probe's largest change point (004, emergence)."),
    ("lifehistory", "Feature life histories", "Per-checkpoint dictionaries matched across checkpoints into "
     "lineages: births, deaths, the carrier scaffold and what removing it costs (000, life history)."),
    ("crosscoder", "Crosscoders through time", "One dictionary over several checkpoints: which latents are "
     "emerging, shared or discontinued (RelDec) and which matter for a task (RelIE) (001)."),
    ("llc", "Local learning coefficient", "SGLD estimates of the LLC λ̂ at chosen checkpoints (002)."),
    ("susceptibility", "Susceptibilities", "How each head's loss responds to shifts in the data distribution, "
     "and the low-rank structure of that response (002)."),
    ("emergence", "Emergence lab (synthetic tasks)", "Seed sweeps on synthetic tasks and the detected "
     "emergence times (004)."),
    ("other", "Other figures", "Figures no section claims."),
]

NOTES = [
    FigureNote("series_training", "series", "Train and held-out loss of the embedded series, and its induction "
               "score (loss on a repeated span's first copy minus its repeat), against the log-spaced step.",
               "An induction circuit forms if the induction score jumps abruptly to well above zero at one step."),
    FigureNote("capability_", "capabilities", "One capability probe at every checkpoint (log step axis) with "
               "its largest change point marked.",
               "Emergence holds for a probe whose jump is abrupt (most of its change within a few checkpoints) "
               "rather than a gradual rise."),
    FigureNote("heads", "capabilities", "The head census: each head's previous-token, induction (i−P+1), "
               "duplicate-token and prefix-matching score over checkpoints, on whole-vocabulary random spans.",
               "A classic circuit forms if a layer-0 head's previous-token score and a later head's induction score "
               "rise abruptly past 0.3 at the step the copy loss drops."),
    FigureNote("dictionaries_quality", "lifehistory", "Each per-checkpoint dictionary on the held-out evaluation "
               "tokens: FVU, L0, dead fraction and CE loss recovered when spliced in, against its checkpoint.",
               "The life history rests on good dictionaries: low FVU, few dead latents and most of the CE loss "
               "recovered at every checkpoint, not only at the last."),
    FigureNote("lifehistory_river", "lifehistory", "Alive lineages at each checkpoint, stacked by birth cohort, "
               "the carriers at the bottom. Open a lineage in the feature browser below.",
               "The paper's picture holds if early cohorts persist (a thick base) while late cohorts are thin."),
    FigureNote("lifehistory_carriers", "lifehistory", "Persistent lineages ranked by reach in the co-activation "
               "hierarchy, with the knee that selects the carriers. Open a carrier in the feature browser below.",
               "Holds if a few early-stable carriers reach most active features (paper: 64% recruitment), "
               "well above random persistent sets of the same size."),
    FigureNote("lifehistory_sensitivity", "lifehistory", "Hierarchy edges, carriers and recruitment over the "
               "hierarchy's thresholds (τ_in × activity threshold); the default is marked.",
               "A finding should not hinge on one threshold: the headline should hold across a band of them."),
    FigureNote("lifehistory_precedence", "lifehistory", "Per lineage, checkpoints between the first match of its "
               "firing and the first match of its decoder direction to its final feature.",
               "Function precedes direction if most lags are positive (sign test against 0.5)."),
    FigureNote("lifehistory_survival", "lifehistory", "Kaplan-Meier survival of lineages: the share still "
               "alive after a number of checkpoints, by group.",
               "Holds if carriers survive longer than other lineages born at the same time."),
    FigureNote("lifehistory_turnover", "lifehistory", "Lineage events (born, died, transformed, split, merged) "
               "per training step at each transition, on log axes, with the band checkpoint spacing alone would give.",
               "Holds if early turnover exceeds the spacing null, not merely the raw 40× (spacing alone gives "
               "tens to hundreds on log-spaced grids)."),
    FigureNote("lifehistory_ablation", "lifehistory", "Loss increase from removing all carriers at every layer "
               "at once, against count-matched random populations (histogram).",
               "Holds if the carriers' loss increase lies far in the right tail of the controls (large z)."),
    FigureNote("crosscoder_reldec", "crosscoder", "Relative decoder norm of each alive latent between the first "
               "and last checkpoint of the crosscoder.",
               "Holds if latents split into emerging (near 1), discontinued (near 0) and shared (middle) groups."),
    FigureNote("crosscoder_relie", "crosscoder", "Latents with the largest indirect effect on each task, by their "
               "relative indirect-effect class.",
               "Holds if task-relevant latents concentrate in the class the paper names for that task."),
    FigureNote("crosscoder_top", "crosscoder", "The top latents of each RelDec class with their top-activating "
               "contexts.", "A qualitative check: each class's latents should read as coherent features."),
    FigureNote("llc_", "llc", "The LLC estimate λ̂ at each chosen checkpoint (× marks a chain that did not "
               "converge).", "Holds if λ̂ changes where capabilities change (plateaus between stage boundaries)."),
    FigureNote("response_", "susceptibility", "Susceptibility χ of each head (columns) to each probe "
               "distribution (rows).", "Holds if the matrix is close to low rank (few components explain it)."),
    FigureNote("pc_scatter", "susceptibility", "Heads placed by their loadings on the response matrix's first "
               "two principal components.", "Holds if induction heads separate from the other heads on a PC."),
    FigureNote("emergence_", "emergence", "Synthetic-task results across seeds and the detected emergence times.",
               "Holds if emergence times cluster and the capability jump is abrupt in each seed."),
]


def note_for(name: str) -> FigureNote | None:
    """The note of a figure (longest matching prefix), or None."""
    hits = [n for n in NOTES if name.startswith(n.prefix)]
    return max(hits, key=lambda n: len(n.prefix)) if hits else None


def section_of(name: str) -> str:
    n = note_for(name)
    if n is not None:
        return n.section
    for key, _, _ in SECTION_ORDER:
        if name.startswith(key[:6]):
            return key
    return "other"
