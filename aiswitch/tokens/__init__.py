"""Token usage: the normalised usage model, the ledger, prices and reports."""
