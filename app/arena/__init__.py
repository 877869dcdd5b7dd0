"""The arena: blind battles between versions, the pairs of versions it compares, and their ratings."""
