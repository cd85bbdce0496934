"""What is audited: the candidate protocol every framework implements (torch, JAX/Flax, numpy),
the registry that picks one, loading a target by name, inferring its kind and eps, and the
worker process that isolates it from normcheck."""
