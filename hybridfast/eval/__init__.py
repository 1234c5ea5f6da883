"""Evaluation: LAReQA mAP and language bias, BEIR, Tatoeba, paired significance tests."""
