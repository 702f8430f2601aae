"""GPT-style decoder-only language models (Radford et al., 2018, 2019)."""
