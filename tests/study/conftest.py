"""The study tests share `tiny_study` (one tiny study per test session), defined in tests/conftest.py so the
reliability tests reuse the same uninterrupted run."""
