"""dlsys.distributed: a real parameter server on Ray (optional extra ``dlsys[ray]``)."""
