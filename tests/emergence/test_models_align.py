import pytest
import torch

from ontogeny.emergence.align import alignment, head_scores
from ontogeny.emergence.models import ModelConfig, build_model
from ontogeny.emergence.tasks import LinearMapConfig, make_task


@pytest.mark.parametrize("arch", ["transformer", "mixer"])
def test_models_are_causal_and_deterministic(arch):
    cfg = ModelConfig(arch=arch, n_layers=2, n_heads=2, d_head=4, d_model=16)
    m = build_model(cfg, vocab_size=5, seq_len=12, seed=3)
    assert all(
        torch.equal(a, b) for a, b in zip(m.parameters(), build_model(cfg, 5, 12, seed=3).parameters())
    )
    ids = torch.randint(0, 5, (3, 12))
    ids2 = ids.clone()
    ids2[:, 7:] = (ids2[:, 7:] + 1) % 5
    with torch.no_grad():
        a, pats = m(ids, return_patterns=True)
        b = m(ids2)
    assert torch.allclose(a[:, :7], b[:, :7], atol=1e-6)  # changing the future leaves the past alone
    assert not torch.allclose(a[:, 7:], b[:, 7:])
    for p in pats:
        assert torch.allclose(p.sum(-1), torch.ones(()), atol=1e-5)
        assert (p.triu(1) == 0).all()


def test_strong_bias_puts_attention_on_the_true_parents():
    task = make_task(LinearMapConfig(S=6, s=2))
    smp = task.sample(8, torch.Generator().manual_seed(0))
    m = build_model(ModelConfig(bias_strength=30.0), task.vocab_size, task.seq_len, seed=0)
    with torch.no_grad():
        _, pats = m(smp.ids_BT, smp.parents_BTT, return_patterns=True)
    al = alignment(pats, smp.parents_BTT)
    assert al["parent_mass"] > 0.99 and al["iou"] == pytest.approx(1.0)
    m0 = build_model(ModelConfig(), task.vocab_size, task.seq_len, seed=0)
    with torch.no_grad():
        _, pats0 = m0(smp.ids_BT, smp.parents_BTT, return_patterns=True)
    assert alignment(pats0, smp.parents_BTT)["parent_mass"] < 0.5


def test_alignment_scores_on_planted_patterns():
    T = 6
    parents = torch.zeros(1, T, T, dtype=torch.bool)
    parents[0, 3, [0, 2]] = True
    parents[0, 4, [1, 3]] = True
    # head 0 = exactly the parents (normalised), head 1 = uniform over the causal past
    exact = parents.float() / parents.float().sum(-1, keepdim=True).clamp_min(1)
    exact[0, [0, 1, 2, 5], 0] = 1.0
    uniform = torch.ones(T, T).tril() / torch.arange(1, T + 1)[:, None]
    pattern = torch.stack([exact[0], uniform])[None]  # [1, 2, T, T]
    s = head_scores(pattern, parents)
    assert s["parent_mass"][0] == pytest.approx(1.0)
    assert s["parent_mass"][1] == pytest.approx((2 / 4 + 2 / 5) / 2)  # s / (q + 1), averaged over rows
    assert s["iou"][0] == pytest.approx(1.0)
    assert s["entropy"][0] == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-5)
    # a head attending to one parent of each row: IoU of {1 hit, 1 miss} with 2 parents = 1/3
    half = torch.zeros(T, T)
    half[:, 0] = 1.0
    half[3, :2] = torch.tensor([0.7, 0.3])  # top-2 {0, 1} vs parents {0, 2}
    half[4, :2] = torch.tensor([0.3, 0.7])  # top-2 {1, 0} vs parents {1, 3}
    assert head_scores(half[None, None], parents)["iou"][0] == pytest.approx(1 / 3)
