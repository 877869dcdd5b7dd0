"""The model core: load a checkpoint, encode prompt + completion, score completions, sample, and the DPO losses.

Free of Flask and the database, so the web (sampling, hot-swap), the worker (training, the gate) and the starter
build all share it, and its tests need no app context. Heavy imports (torch, transformers) happen inside functions.
"""
