"""The non-neural synthesis methods: BrainClustering and the baselines (pure numpy/scipy)."""
