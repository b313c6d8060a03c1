"""Example workflows and the activity handlers they call (see README's first command)."""
