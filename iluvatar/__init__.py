"""Iluvatar's offline command line: check and inspect a stack without the Pulumi CLI."""
