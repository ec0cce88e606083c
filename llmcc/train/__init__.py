"""Training data, labels and models for llmcc advisors (never imported at compile time)."""
