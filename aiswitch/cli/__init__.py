"""The command line: parses and prints; the logic lives in the packages below it."""
