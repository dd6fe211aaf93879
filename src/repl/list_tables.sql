-- The shell's \dt: every table of the lake, as <layer>.<table>.
SELECT table_schema || '.' || table_name AS table_name, table_type
FROM information_schema.tables
WHERE table_schema NOT IN ('information_schema', 'public')
ORDER BY 1
