"""dlsys.training."""
