"""Evidence that llmcc is safe to use: checks that run outside the compile path.

`differential` builds random csmith programs with clang's own pipeline and with candidate pass
lists, exactly as the wrapper would, runs them, and compares their output with a plain -O0
build, so a pass list that miscompiles is caught, kept as a reproducer and minimised.
"""
