"""The command line: qes-async, its demo and its doctor."""
