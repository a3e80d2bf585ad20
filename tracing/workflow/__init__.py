"""The trace request workflow: the transition table and the one function that applies a move."""
