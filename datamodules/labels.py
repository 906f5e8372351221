"""Segmentation label conventions, explicit and versioned (see docs: evaluation protocol, section 2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.checks import check_choice
from common.errors import InvalidInputError
from datamodules.nifti import Volume


@dataclass(frozen=True)
class LabelConvention:
    """The meaning of a data set's segmentation labels.

    Attributes:
        name: convention name (``brats2019`` or ``brats2023``).
        labels: label value -> structure name (0 is always background).
        regions: evaluation region -> label values it contains (WT, TC, ET).
    """

    name: str
    labels: dict[int, str]
    regions: dict[str, tuple[int, ...]]

    def validate(self, segmentation: Volume) -> None:
        """Raise if the segmentation holds a label this convention does not define."""
        present = {int(v) for v in np.unique(segmentation.data)} - {0}
        unknown = sorted(present - set(self.labels))
        if unknown:
            allowed = ", ".join(str(v) for v in [0, *sorted(self.labels)])
            hint = ""
            for other in LABEL_CONVENTIONS.values():
                if other is not self and present <= set(other.labels):
                    hint = f"; these look like {other.name} labels: set data.label_convention={other.name}"
            raise InvalidInputError(
                segmentation.name,
                f"unknown segmentation labels {unknown} for the {self.name} convention (allowed: {allowed}){hint}",
            )

    def region_mask(self, segmentation: np.ndarray, region: str) -> np.ndarray:
        return np.isin(segmentation, self.regions[region])


BRATS2019 = LabelConvention(
    name="brats2019",
    labels={1: "necrotic / non-enhancing tumour core", 2: "peritumoral oedema", 4: "enhancing tumour"},
    regions={"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)},
)
BRATS2023 = LabelConvention(
    name="brats2023",
    labels={1: "necrotic tumour core", 2: "peritumoral oedema / SNFH", 3: "enhancing tumour"},
    regions={"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)},
)
LABEL_CONVENTIONS: dict[str, LabelConvention] = {c.name: c for c in (BRATS2019, BRATS2023)}


def get_label_convention(name: str) -> LabelConvention:
    check_choice("label_convention", name, sorted(LABEL_CONVENTIONS))
    return LABEL_CONVENTIONS[name]
