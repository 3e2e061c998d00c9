"""TR-BERT: per-example token reduction learned by reinforcement learning (Ye et al., NAACL 2021)."""
