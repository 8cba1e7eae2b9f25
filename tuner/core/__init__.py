"""The vocabulary every layer shares: errors, registries, option rules, paths, failure
wording, stored keys, the version.

See ARCHITECTURE.md for what this layer may import.
"""
