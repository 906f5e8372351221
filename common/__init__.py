"""The ground floor: what every package shares (errors, writing files, progress, signals, the contrast
names, option checks, the usable cores). It imports nothing else of the project."""
