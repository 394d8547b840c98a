"""The chain-of-thought baseline: a causal language model that writes a solution trace, one step per node.

``trace`` (the format and its vocabulary), ``net`` (the network in plain PyTorch), ``model`` (folders and the
TransformerLens view), ``train`` (next-word loss on traces), ``solve`` (greedy decoding behind ``workbench solve``).
"""
