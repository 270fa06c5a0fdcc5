"""Training verifiers and writing their serving exports."""
