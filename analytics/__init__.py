"""dlsys.analytics."""
