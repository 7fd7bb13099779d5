"""Results: certification TSVs (tsv), their rows (rows), published logs (logs), curves and
tables (curves), long resumable runs over a dataset (runs)."""
