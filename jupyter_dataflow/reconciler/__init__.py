"""The reconciler: make stored outputs match the blueprint, emitting typed events."""
