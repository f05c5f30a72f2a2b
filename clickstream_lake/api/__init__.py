"""HTTP components of the read side (mounted by ``clickstream serve``)."""
