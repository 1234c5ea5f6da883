"""Helpers shared by the tests of hybridfast.models (a module, so test files can import them)."""

from __future__ import annotations

XQUAD_LANGS = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
TIMINGS: dict[str, float] = {}


def embed(tokenizer, model, texts: list[str]):
    """Mean pooling over the attention mask, then L2 normalization (the multilingual-e5 recipe)."""
    import torch

    batch = tokenizer(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).float().numpy()
