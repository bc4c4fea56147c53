"""State under the home: the one store (atomic writes, locks) and the files built on it."""
