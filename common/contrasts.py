"""The four MRI contrasts of a BraTS case, by the names used everywhere (configs, tasks, files)."""

CONTRASTS = ("t1", "t1ce", "t2", "flair")
