"""Everything about data: NIfTI I/O, dataset layouts, label conventions, splits, masks, the phantom."""
