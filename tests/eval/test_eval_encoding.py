"""Encoding for evaluation: input order kept, prefixes passed, progress lines in logs, timer."""

from __future__ import annotations

import re

import numpy as np
import pytest

from hybridfast.eval.encoding import EncodeTimer, encode_texts


def test_order_prefix_progress_and_timer(keyword_encoder, capsys):
    texts = [f"text Q{i % 30}" + " pad" * (i % 7) for i in range(25)]
    timer = EncodeTimer()
    out = encode_texts(keyword_encoder, texts, "query", batch_size=4, label="demo", progress=True, timer=timer)
    assert np.array_equal(out, keyword_encoder.encode(texts))
    assert keyword_encoder.calls == [("query", 25), (None, 25)]
    assert timer.texts == 25 and timer.seconds > 0
    # stderr is not a terminal here: plain lines at the first batch and at the end, with texts and tokens per second
    log = capsys.readouterr().err.splitlines()
    assert log[0].startswith("demo: 4/25 texts (16 %), ") and log[-1].startswith("demo: 25/25 texts (100 %), ")
    words = sum(len(text.split()) for text in texts)  # the keyword encoder's tokens
    rates = re.search(r"([\d,.]+) texts/s, ([\d,.]+) tokens/s", log[-1])
    assert rates is not None, log[-1]
    texts_per_s, tokens_per_s = (float(rate.replace(",", "")) for rate in rates.groups())
    assert tokens_per_s / texts_per_s == pytest.approx(words / 25, rel=0.1)


def test_empty_input_and_bad_batch_size(keyword_encoder):
    assert encode_texts(keyword_encoder, [], "passage", progress=False).shape == (0, 64)
    with pytest.raises(ValueError, match="batch size"):
        encode_texts(keyword_encoder, ["a"], "passage", batch_size=0)
