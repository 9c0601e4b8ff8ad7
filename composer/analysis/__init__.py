"""What a network costs, decided without weights: analytic cost, traced counts, their
cross-check and the training-memory estimate."""
