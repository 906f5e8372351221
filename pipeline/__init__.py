"""The glue every entry script shares: the method contract and the experiment run (fit, predict,
write, score, log), identical for every method family."""
