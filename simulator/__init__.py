"""dlsys.simulator."""
