"""What a person reads: summaries, the HTML report, the dashboard, diagnose plots.

See ARCHITECTURE.md for what this layer may import.
"""
