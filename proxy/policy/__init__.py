"""Policy: YAML -> validated models -> compiled immutable chain -> atomic swap."""
