"""Target groups and their backends: balancing policies, session persistence and health."""
