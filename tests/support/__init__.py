"""Helpers the tests share: tiny models built on the fly (tiny_models)."""
