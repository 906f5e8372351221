"""Learning-rate schedules, as factors of the initial rate per training iteration (for
``torch.optim.lr_scheduler.LambdaLR``)."""

from __future__ import annotations

from collections.abc import Callable


def linear_decay(constant_iterations: int, decay_iterations: int) -> Callable[[int], float]:
    """The reference's ``linear`` policy per iteration: factor 1 for ``constant_iterations``, then
    1 - (i - constant) / (decay + 1), reaching 0 after the decay."""

    def factor(iteration: int) -> float:
        return max(0.0, 1.0 - max(0, iteration - constant_iterations) / (decay_iterations + 1))

    return factor
