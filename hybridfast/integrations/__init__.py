"""Adapters that bring hybridfast's loss, cached step and hybrid sampler into other libraries' training APIs.

Each adapter is its own module and imports its library lazily; nothing in the core imports this package.
`hybridfast.integrations.sentence_transformers`: losses and the hybrid batch sampler for `SentenceTransformerTrainer`.
"""
