"""dlsys.reproduce: every result of the homework sheets, regenerated in one report."""
