"""Test helpers shared by the suite (fakes at the process seam, installers, generators)."""
