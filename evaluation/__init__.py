"""Method-agnostic scoring: image metrics, their aggregation and the summary table. Reads
predictions as volumes (from disk in ``evaluate.py``), never a method's internals."""
