"""Test helpers that other projects can import: hypothesis strategies and oracles."""
