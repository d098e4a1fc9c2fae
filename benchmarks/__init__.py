"""Independent benchmark suite: data sets the product's simulators did not make, each run
through the user's path (`stream-app train --data`, then the live scorer over held-out time),
reported beside strong, simple baselines. `python -m benchmarks` (not part of `make test`)."""
