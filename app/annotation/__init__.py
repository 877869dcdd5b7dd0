"""Annotation: comparisons and their candidates, answers, gold items, the prompt pool, agreement."""
