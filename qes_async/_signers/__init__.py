"""Asking the human: signers and the terminal prompt."""
