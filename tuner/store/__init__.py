"""Where studies live: storage URLs and secrets, the resilient RDB storage, artifacts,
stored studies.

See ARCHITECTURE.md for what this layer may import.
"""
