from hypothesis import settings

# Exhaustive-ish brute-force comparisons: deterministic, no deadline (CI machines vary).
settings.register_profile("attnsim", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("attnsim")
