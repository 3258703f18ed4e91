"""caas-sim: what the simulators, the reference core and the harness share (a leaf package)."""
