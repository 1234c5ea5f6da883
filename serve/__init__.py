"""Lean serving: token-budget batching, padding-free encoding, FAISS retrieval, HTTP API, benchmark."""
