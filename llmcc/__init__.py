"""llmcc: a clang wrapper that lets a model choose LLVM pass lists for smaller objects."""

__version__ = "0.2.4"
