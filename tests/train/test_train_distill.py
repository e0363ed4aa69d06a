"""Knowledge distillation: DeiT hard distillation through the distillation head, and soft (KL) distillation."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from train_helpers import folder_flags

from lsnet.cli.main import main
from lsnet.train.distill import DistillationLoss


class FixedTeacher(nn.Module):
    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits


def test_hard_and_soft_distillation_losses():
    torch.manual_seed(0)
    cls, dist, teacher, y = torch.randn(4, 5), torch.randn(4, 5), torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    hard = DistillationLoss(nn.CrossEntropyLoss(), FixedTeacher(teacher), "hard", alpha=0.5)
    expected = 0.5 * F.cross_entropy(cls, y) + 0.5 * F.cross_entropy(dist, teacher.argmax(1))
    torch.testing.assert_close(hard(torch.zeros(4, 1, 8, 8), (cls, dist), y), expected)
    tau = 2.0
    soft = DistillationLoss(nn.CrossEntropyLoss(), FixedTeacher(teacher), "soft", alpha=0.3, tau=tau)
    p_teacher = F.softmax(teacher / tau, dim=1)
    kl = (p_teacher * (p_teacher.log() - F.log_softmax(dist / tau, dim=1))).sum(1).mean() * tau**2
    torch.testing.assert_close(soft(torch.zeros(4, 1, 8, 8), (cls, dist), y), 0.7 * F.cross_entropy(cls, y) + 0.3 * kl)
    # a model without a distillation head: its one output serves both terms
    expected = 0.5 * F.cross_entropy(cls, y) + 0.5 * F.cross_entropy(cls, teacher.argmax(1))
    torch.testing.assert_close(hard(None, cls, y), expected)


def test_hard_distillation_trains_the_distillation_head(tiny_run, folder_dir, tmp_path, monkeypatch):
    seen = []
    forward = DistillationLoss.forward

    def spy(self, inputs, outputs, targets):
        seen.append(outputs)
        return forward(self, inputs, outputs, targets)

    monkeypatch.setattr(DistillationLoss, "forward", spy)
    flags = [*folder_flags(folder_dir, tmp_path, "hard", epochs=1), "--model-kwargs", "distilled=true",
             "--distillation-type", "hard", "--teacher", str(tiny_run / "best.pth")]
    assert main(["train", *flags]) == 0
    assert seen and all(isinstance(o, tuple) and len(o) == 2 for o in seen)  # (cls, dist) logits in training
    weights = torch.load(tmp_path / "hard" / "last.pth", weights_only=True)["model"]
    assert any(k.startswith("head_dist.") for k in weights)
    # evaluation averages both heads: the run's own eval of the distilled model works from its checkpoint
    assert main(["eval", "--checkpoint", str(tmp_path / "hard" / "best.pth"), "--workers", "0", "--quiet"]) == 0


def test_soft_distillation_from_a_named_teacher_with_weights(tiny_run, folder_dir, tmp_path):
    flags = [*folder_flags(folder_dir, tmp_path, "soft", epochs=1), "--distillation-type", "soft",
             "--distillation-tau", "2", "--teacher", "lsnet_test", "--teacher-checkpoint",
             str(tiny_run / "best.safetensors")]
    assert main(["train", *flags]) == 0
    assert (tmp_path / "soft" / "report.md").is_file()
