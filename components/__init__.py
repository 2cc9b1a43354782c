"""Components: the Pulumi ComponentResources that turn the typed inventory into resources.

Eä (the network plan) comes first; Ainur, Arda, the edge and GitOps build on its outputs.
Components take one frozen args object built from `stacks` models and never read config.
"""
