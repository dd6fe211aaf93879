-- Reads a whole MySQL table through the text protocol; {columns} and {table} are replaced by
-- back-quoted identifiers checked to be plain names.
SELECT {columns} FROM {table}
