"""Model versions: the registry, the store and its files, serving and hot-swap, buffers and the prefetcher."""
