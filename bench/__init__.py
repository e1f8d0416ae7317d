"""tether's benchmarks, each figure measured beside the peer a user would pick instead."""
