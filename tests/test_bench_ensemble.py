"""bench/ensemble.py: averaging generators, with a mirrored pass, and its refusals."""

import pytest
import torch

from bench.ensemble import Averaged, main


class AddRamp(torch.nn.Module):
    """A 'generator' that is not mirror-symmetric: it adds a ramp along the first spatial axis."""

    def __init__(self, slope: float) -> None:
        super().__init__()
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.slope * torch.arange(x.shape[2], dtype=x.dtype)[:, None]


def test_the_ensemble_is_the_mean_and_the_mirrored_pass_flips_back():
    x = torch.rand(2, 1, 4, 3)
    ramp = torch.arange(4.0)[:, None]
    torch.testing.assert_close(Averaged([AddRamp(1.0), AddRamp(3.0)], mirror=False)(x), x + 2 * ramp)
    mirrored_ramp = (ramp + ramp.flip(0)) / 2  # the ramp, and the ramp of the mirrored input mirrored back
    torch.testing.assert_close(Averaged([AddRamp(1.0)], mirror=True)(x), x + mirrored_ramp)


def test_a_file_that_is_not_a_pix2pix_checkpoint_is_refused_naming_it(tmp_path, capsys):
    bogus = tmp_path / "last.ckpt"
    bogus.write_text("not a checkpoint")
    torch.save({"state_dict": {"segmenter.weight": torch.zeros(1)}}, tmp_path / "other.ckpt")
    for path in (bogus, tmp_path / "other.ckpt"):
        with pytest.raises(SystemExit) as stopped:
            main(["--data", str(tmp_path), "--sources", "t1", "--fold", "0", "--checkpoints", str(path)])
        assert stopped.value.code == 2
        assert str(path) in capsys.readouterr().err
