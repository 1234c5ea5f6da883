"""Datasets: records, loaders, the article split (XQuAD family), LAReQA pools, BEIR, Tatoeba."""
