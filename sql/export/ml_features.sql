-- Parquet copy of gold.ml_features for the run's days.
SELECT *
FROM gold.ml_features
WHERE as_of_date BETWEEN $start_date AND $end_date
