"""Timeline — what each scheduler puts in a batch (placeholder, filled below)."""
